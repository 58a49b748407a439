"""Validation Dice of the full head on held-out full-annotation subjects.

Each validation subject is segmented on the whole canvas (``mode = "whole"``) or with MONAI's
sliding-window inference over windows of the training patch size (``"sliding"``, Gaussian
blending), and scored with :func:`wholebrain.evaluate.dice_per_class`, the project's one Dice.
The score of a subject is the mean Dice over the foreground classes present in its reference
or prediction; the run's score is the mean over subjects. Under DDP the subjects are shared
among the processes and the scores gathered, so every process gets the same number.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wholebrain.data.dataset import TrainingSubject
from wholebrain.evaluate import dice_per_class
from wholebrain.model import MultiHeadUNet
from wholebrain.protocols import FULL_PROTOCOL, get_protocol
from wholebrain.train.distributed import Distributed

__all__ = ["predict_full", "validate"]


@torch.no_grad()
def predict_full(
    model: MultiHeadUNet,
    image: torch.Tensor,
    *,
    mode: str,
    patch_size_vox: Sequence[int],
    overlap: float,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> torch.Tensor:
    """Class indices of the full head, (X, Y, Z) int64 on the image's device.

    Args:
        image: (1, 1, X, Y, Z) float32 on the model's device.
        mode: "whole" (the canvas padded to the model's divisor) or "sliding".
        autocast: makes the mixed-precision context (a fresh one per forward pass).
    """
    divisor = model.config.divisor

    def full_head(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            logits: torch.Tensor = model(x)[FULL_PROTOCOL]
        return logits.float()

    if mode == "whole":
        shape = image.shape[2:]
        padded = [math.ceil(n / divisor) * divisor for n in shape]
        pad = [
            p for n, m in zip(reversed(shape), reversed(padded), strict=True) for p in (0, m - n)
        ]
        logits = full_head(F.pad(image, pad))[..., : shape[0], : shape[1], : shape[2]]
    else:
        from monai.inferers.utils import sliding_window_inference

        windows = sliding_window_inference(
            image,
            roi_size=list(patch_size_vox),
            sw_batch_size=1,
            predictor=full_head,
            overlap=overlap,
            mode="gaussian",
        )
        assert isinstance(windows, torch.Tensor)  # one tensor from a one-tensor predictor
        logits = windows
    return logits.argmax(1)[0]


def validate(
    model: MultiHeadUNet,
    subjects: Sequence[TrainingSubject],
    dist: Distributed,
    *,
    mode: str,
    patch_size_vox: Sequence[int],
    overlap: float,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> float:
    """Mean over subjects of the mean foreground Dice of the full head (NaN: no subject)."""
    classes = np.arange(1, get_protocol(FULL_PROTOCOL).num_classes)
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for subject in subjects[dist.rank :: dist.world_size]:
            image = torch.from_numpy(np.asarray(subject.cached.image(), dtype=np.float32))
            image = image[None, None].to(dist.device)
            predicted = predict_full(
                model,
                image,
                mode=mode,
                patch_size_vox=patch_size_vox,
                overlap=overlap,
                autocast=autocast,
            )
            reference = subject.labels(FULL_PROTOCOL, derive=False)
            dice = dice_per_class(predicted.cpu().numpy(), np.asarray(reference), classes)
            scores.append(float(np.nanmean(dice)) if np.isfinite(dice).any() else 0.0)
    finally:
        model.train(was_training)
    gathered = [s for part in dist.gather(scores) for s in part]
    return float(np.mean(gathered)) if gathered else float("nan")
