"""The network on one scan: conform, run the trunk once, read the heads slab by slab, go back.

:class:`Segmenter` loads a checkpoint once and segments any number of volumes. For each:

0. a whole-head scan (``wholebrain info``'s skull-stripping guess says so) is skull-stripped
   first (:func:`head_brain_mask`: deepbet's brain mask, 2 mm wider, on the scan's own grid;
   no label is written outside it).
   Why: the full head learns from the manual labels, and those come with skull-stripped
   scans; on whole heads, before this step, it labelled the scalp's bright fat as white
   matter (brain volumes of ~1750 mL on the three unlabelled scans; 1100-1420 mL with it);
1. ``conform`` puts the scan on the model's RAS canvas (the checkpoint stores it), and by
   default on a second one offset by half a voxel (``canvases``), for steps 2-3 each; a model
   whose calibration holds its training scans' brain pitch (``wholebrain calibrate``) gets
   canvases turned about the left-right axis so that this scan's brain lies at that pitch
   (``pose``: the network segments a brain best in the pose it was trained in; a whole head
   left unstripped keeps the world axes, as its long axis is the head's, not the brain's);
2. the trunk runs once over the whole canvas (one forward pass: far fewer convolutions than
   overlapping windows) and its ``filters[0]`` feature channels are kept;
3. each head reads those features in slabs along the first axis, so the 99-channel logits of
   the full head never exist for the whole canvas at once (99 x 9.6 M float32 voxels would
   be 3.8 GB); with ``tta`` the trunk also runs on the left-right mirrored canvas and each
   slab averages the two passes' probabilities (mirrored labels swapped back); a model with a
   calibration (``wholebrain calibrate``, :mod:`wholebrain.segment.calibrate`) multiplies them
   by its class weights, fitted so the structure volumes of its training scans come out right;
4. the brain is cleaned (:func:`keep_largest_brain_component`: islands of labels in the
   skull or the neck of whole-head scans are dropped) and the labels go back to the input's
   own grid through ``Conformed.to_native``: where the canvas neighbours of a scan voxel
   disagree, the label whose probability interpolates highest there wins (``boundaries=
   "probabilities"``, the default) rather than the label most of them hold (``"labels"``);
   where the canvases then disagree, the summed interpolated probabilities decide
   (``conform.labels_from_canvases``);
5. with ``refine`` (the default) the cortical ribbon is sharpened on the scan's grid with the
   scan's own intensities (:mod:`wholebrain.segment.refine`: no cortex where the scan has no
   signal; grey or white by a local intensity threshold 1 mm deep along the grey/white
   interface: one voxel at 1 mm, two passes at 0.7 mm).

On CPUs with bf16 matrix units (Intel AMX / AVX512-BF16) the trunk runs in bfloat16 with
channels-last tensors, about twice as fast as float32 (benchmarks/segment.py); elsewhere in
float32. On CUDA it runs in bf16 where supported, else fp16.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from wholebrain.conform import (
    Conformed,
    conform,
    conform_shifted,
    labels_from_canvases,
    measure_pitch_deg,
)
from wholebrain.io import Volume
from wholebrain.model import cpu_has_bf16_units
from wholebrain.protocols import Protocol, flip_permutation
from wholebrain.segment.options import BOUNDARIES, CANVAS_SHIFTS, DEVICES, SKULL_STRIP
from wholebrain.segment.refine import cortex_white_matter_pairs, refine_cortex
from wholebrain.train.checkpoint import CheckpointInfo, load_checkpoint

__all__ = [
    "Segmentation",
    "Segmenter",
    "head_brain_mask",
    "keep_largest_brain_component",
    "resolve_device",
    "strip_skull",
]

log = logging.getLogger(__name__)

_MASK_MARGIN_MM = 2  # deepbet's masks are tight: keep the outer cortex and its CSF
_MIN_MASK_L = 0.4  # smaller than any adult brain: deepbet found (almost) nothing
_SLAB_VOX = 16  # head slabs along the first canvas axis: 16 x 224 x 224 x 99 float32 = 320 MB


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU if there is one, else the CPU.

    Raises:
        ValueError: an unknown name, or ``cuda`` on a machine without a usable GPU.
    """
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU here")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _fast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision worth using on ``device``, None for float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_has_bf16_units():
        return torch.bfloat16
    return None


@dataclass(frozen=True, eq=False)
class Segmentation:
    """One scan segmented.

    Attributes:
        labels: label ids of the full protocol on the input's grid, int16 (ids reach 2035).
        canvas_labels: the same on the canvas, int16.
        conformed: the scan on the canvas (its image feeds the QC picture).
        probabilities: with ``posteriors``: (X, Y, Z, K) uint8 class probabilities x 255 on
            the canvas, class order of the protocol (classes last, as NIfTI vectors); else
            None.
        flip_agreement: with ``tta``: label id -> Dice between the labels of the plain and
            the mirrored pass (1 = the structure does not depend on the side it is seen
            from; low values flag uncertain structures); else None.
        tissue_canvas: class indices of the ``tissue`` head on the canvas (0 background, 1
            CSF, 2 GM, 3 WM) when the model has that head, else None.
        skull_stripped: True when step 0 masked a whole-head scan before the network.
        picture: the scan (unmasked) conformed at 1 mm when step 0 made it, else None; the QC
            picture reuses it.
        seconds: wall time per stage (skull-strip, conform, network, native).
    """

    labels: np.ndarray
    canvas_labels: np.ndarray
    conformed: Conformed
    probabilities: np.ndarray | None = None
    flip_agreement: dict[int, float] | None = None
    tissue_canvas: np.ndarray | None = None
    skull_stripped: bool = False
    picture: Conformed | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A trained model, loaded once, that segments volumes.

    Args:
        model_path: a checkpoint written by ``wholebrain train`` (``best.pt``/``last.pt``) or
            the shipped model (None).
        device: ``auto``, ``cpu`` or ``cuda``.
        tta: also segment the left-right mirrored scan and average (about twice the network
            stage; the default: on held-out Mindboggle subjects mean Dice 0.637 -> 0.652 and
            HD95 6.7 -> 5.4 mm with the step-5400 model, benchmarks/results/cpu_model_eval.txt).
        canvases: segment the scan on this many canvases offset by half a voxel (1, 2 or 4,
            ``CANVAS_SHIFTS``) and combine them on the scan's grid (``labels_from_canvases``);
            each costs one more network stage.
        skull_strip: ``auto`` (whole-head scans are skull-stripped first, step 0) or ``off``.
        boundaries: how scan voxels between canvas voxels of different labels are labelled:
            ``probabilities`` (the neighbours' labels compete with their interpolated
            probabilities) or ``labels`` (with their interpolated one-hot votes).
        precision: ``auto`` (bf16/fp16 where the device has fast units for it) or ``float32``.
        refine: sharpen the cortical ribbon with the scan's intensities (step 5; ~1 s; on
            held-out Mindboggle subjects with the shipped model mean Dice 0.746 -> 0.775,
            cortical 0.728 -> 0.772).
        calibrate: weight the full head's probabilities by the checkpoint's calibration when
            it has one (the shipped model's, fitted on its 8 training subjects: 0.768 ->
            0.775 on the held-out ones); False: the network's own probabilities.
        pose: turn the canvases so the brain's long axis lies at the pitch of the training
            scans, when the checkpoint's calibration measured it
            (``ConformConfig.brain_pitch_deg``; the shipped model's: 20.0 deg, 0.769 -> 0.775
            on the held-out subjects); False: canvases on the world axes.

    Raises:
        InputError: the checkpoint cannot be read (see ``train.load_checkpoint``).
        ValueError: a bad device, precision, skull_strip, boundaries or canvases.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str = "auto",
        tta: bool = True,
        skull_strip: str = "auto",
        precision: str = "auto",
        boundaries: str = "probabilities",
        canvases: int = 2,
        refine: bool = True,
        calibrate: bool = True,
        pose: bool = True,
    ) -> None:
        if precision not in ("auto", "float32"):
            raise ValueError(f"precision must be 'auto' or 'float32', not {precision!r}")
        if skull_strip not in SKULL_STRIP:
            raise ValueError(f"skull_strip must be one of {SKULL_STRIP}, not {skull_strip!r}")
        self.skull_strip = skull_strip
        if boundaries not in BOUNDARIES:
            raise ValueError(f"boundaries must be one of {BOUNDARIES}, not {boundaries!r}")
        self.boundaries = boundaries
        if canvases not in CANVAS_SHIFTS:
            raise ValueError(f"canvases must be one of {tuple(CANVAS_SHIFTS)}, not {canvases!r}")
        if canvases > 1 and boundaries != "probabilities":
            raise ValueError("canvases > 1 combine probabilities: use boundaries='probabilities'")
        self.canvases = canvases
        self.refine = refine
        if model_path is None:
            from wholebrain.models import shipped_model_path

            model_path = shipped_model_path()
        self.device = resolve_device(device)
        started = time.perf_counter()
        self.model, self.info = load_checkpoint(model_path, self.device)
        self.tta = tta
        self.dtype = _fast_dtype(self.device) if precision == "auto" else None
        self.channels_last = self.dtype is not None and self.device.type == "cpu"
        if self.channels_last:  # oneDNN's bf16 convolutions want channels-last tensors
            self.model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.load_seconds = time.perf_counter() - started
        self._log_weights: torch.Tensor | None = None
        calibration = self.info.calibration or {}
        if calibrate and "log_weights" in calibration:
            weights = calibration["log_weights"]
            self._log_weights = torch.tensor(weights, dtype=torch.float32, device=self.device)
        # The canvas the scans are put on: the training one, turned to the training pose.
        self.conform_config = self.info.conform
        pitch = calibration.get("brain_pitch_deg")
        if pose and pitch is not None and self.conform_config.brain_pitch_deg is None:
            self.conform_config = replace(self.conform_config, brain_pitch_deg=float(pitch))

    @property
    def calibrated(self) -> bool:
        """Whether the full head's probabilities are reweighted by the model's calibration."""
        return self._log_weights is not None

    @property
    def pose_pitch_deg(self) -> float | None:
        """The brain pitch the canvases are turned to, None when they are not turned."""
        return self.conform_config.brain_pitch_deg

    @property
    def protocol(self) -> Protocol:
        """The label table of the full head: what :meth:`segment` writes."""
        return self.info.protocols[self.info.full_protocol]

    @property
    def checkpoint(self) -> CheckpointInfo:
        return self.info

    @functools.cached_property
    def _cortex_pairs(self) -> dict[int, int]:
        """Cortical label -> its hemisphere's white matter, for the refinement (step 5)."""
        return cortex_white_matter_pairs(self.protocol)

    def segment(self, volume: Volume, *, posteriors: bool = False) -> Segmentation:
        """Segment one loaded scan (see the module docstring for the steps)."""
        seconds: dict[str, float] = {}
        volume, brain, picture, brain_only = self._strip(volume, seconds)
        started = time.perf_counter()
        canvases = self._conform(volume, brain_only)
        conformed = canvases[0]
        seconds["conform"] = time.perf_counter() - started

        started = time.perf_counter()
        scored = self.boundaries == "probabilities"
        protocol = self.protocol
        classes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for index, canvas in enumerate(canvases):
            # The flip agreement and the tissue map are reported for the first canvas only.
            found, probabilities, found_agreement, found_tissue = self._predict(
                canvas.image, posteriors or scored, extras=index == 0
            )
            found_labels = protocol.from_index(found).astype(np.int16)
            keep_largest_brain_component(found_labels)
            if scored and probabilities is not None:
                # Dropped islands are background for sure: they must not grow back between
                # canvas voxels on the strength of their probabilities.
                dropped = (found_labels == 0) & (found != 0)
                found[dropped] = 0
                probabilities[dropped] = 0
                probabilities[dropped, 0] = 255
            if index == 0:  # the first canvas's maps are what the outputs show
                canvas_labels, posterior_map = found_labels, probabilities
                agreement, tissue = found_agreement, found_tissue
            classes.append(found)
            if probabilities is not None:
                scores.append(probabilities)
        seconds["network"] = time.perf_counter() - started

        started = time.perf_counter()
        if scored:
            native_classes = labels_from_canvases(canvases, classes, scores)
            labels = protocol.from_index(native_classes).astype(np.int16)
        else:
            labels = conformed.to_native(canvas_labels)
        if brain is not None:  # nothing outside the brain mask, whatever the network says
            labels[~brain] = 0
        seconds["native"] = time.perf_counter() - started
        if self.refine:
            started = time.perf_counter()
            # The stripped scan: zero outside the brain mask, as the labels are.
            refine_cortex(labels, volume.data, volume.spacing_mm, self._cortex_pairs)
            seconds["refine"] = time.perf_counter() - started
        flip_agreement = None
        if agreement is not None:
            flip_agreement = {
                int(i): float(d) for i, d in zip(protocol.ids, agreement, strict=True)
            }
        return Segmentation(
            labels=labels,
            canvas_labels=canvas_labels,
            conformed=conformed,
            probabilities=posterior_map if posteriors else None,
            flip_agreement=flip_agreement,
            tissue_canvas=tissue,
            skull_stripped=brain is not None,
            picture=picture,
            seconds=seconds,
        )

    def conformed_canvases(self, volume: Volume) -> list[Conformed]:
        """The canvases :meth:`segment` would run the network on (after step 0)."""
        stripped, _, _, brain_only = self._strip(volume, {})
        return self._conform(stripped, brain_only)

    def brain_pitch_deg(self, volume: Volume) -> float | None:
        """The pitch of the scan's brain (after step 0) as the pose step measures it
        (``conform.measure_pitch_deg``), whether or not this segmenter turns canvases; None
        for a whole head left unstripped (its pitch would be the head's, neck included)."""
        stripped, _, _, brain_only = self._strip(volume, {})
        return measure_pitch_deg(stripped, self.conform_config) if brain_only else None

    def _conform(self, volume: Volume, brain_only: bool) -> list[Conformed]:
        """Step 1: the canvases; turned to the pose only when ``volume`` is a brain alone."""
        config = self.conform_config
        if config.brain_pitch_deg is not None and not brain_only:
            log.info(
                "%s: a whole head, not skull-stripped: canvases not turned to the brain pose "
                "(the head's long axis is not the brain's)",
                volume.name,
            )
            config = replace(config, brain_pitch_deg=None)
        return conform_shifted(volume, config, CANVAS_SHIFTS[self.canvases])

    def canvas_probabilities(self, canvas: Conformed, *, calibrated: bool = False) -> np.ndarray:
        """The full head's class-last probabilities x 255 (uint8) on one canvas, with the
        flip TTA if on; not reweighted by the calibration unless ``calibrated``."""
        _, probabilities, _, _ = self._predict(
            canvas.image, True, extras=False, calibrated=calibrated
        )
        assert probabilities is not None  # asked for
        return probabilities

    def _strip(
        self, volume: Volume, seconds: dict[str, float]
    ) -> tuple[Volume, np.ndarray | None, Conformed | None, bool]:
        """Step 0: (the scan, skull-stripped if it is a whole head; its brain mask or None;
        the unmasked scan conformed for the QC picture or None; whether the scan returned is
        a brain alone: skull-stripped here or before, or not known to be a whole head)."""
        from wholebrain.partial.brainmask import looks_skull_stripped

        started = time.perf_counter()
        whole_head = looks_skull_stripped(volume) is False  # 0.03-0.06 s
        if self.skull_strip != "auto" or not whole_head:
            return volume, None, None, not whole_head
        brain, picture = head_brain_mask(volume)
        if brain is not None:
            volume = strip_skull(volume, brain)
        seconds["skull-strip"] = time.perf_counter() - started
        return volume, brain, picture, brain is not None

    # --- the network ---------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def _features(self, canvas: np.ndarray, mirrored: bool) -> torch.Tensor:
        """Trunk features (1, F, X, Y, Z) of the canvas image (mirrored along X if asked)."""
        image = torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32))
        image = image.to(self.device)[None, None]
        if mirrored:
            image = image.flip(2)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        with self._autocast():
            features = self.model.features(image)
        return features.flip(2) if mirrored else features

    @torch.inference_mode()
    def _predict(
        self, canvas: np.ndarray, posteriors: bool, *, extras: bool = True, calibrated: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Class indices (uint8), class-last probabilities x 255 (uint8) if ``posteriors``
        else None, per-class flip Dice or None, tissue-head classes or None; on the canvas.

        ``extras=False`` skips the flip Dice and the tissue map (None), which cost two more
        argmaxes and the tissue head per slab: for canvases whose extras nobody reads.
        ``calibrated``: the (averaged) probabilities are multiplied by the calibration's class
        weights and normalised again, when the model has one (the flip Dice compares the two
        passes' own labels either way)."""
        log_weights = self._log_weights if calibrated else None
        full = self.info.full_protocol
        num_classes = self.info.heads[full]
        passes = [(self._features(canvas, mirrored=False), self._head(full))]
        if self.tta:
            passes.append((self._features(canvas, mirrored=True), self._mirrored_full_head))
        shape = canvas.shape
        classes = np.empty(shape, np.uint8)
        probabilities = np.empty((*shape, num_classes), np.uint8) if posteriors else None
        tissue = np.empty(shape, np.uint8) if extras and "tissue" in self.info.heads else None
        # Per-class intersection and sizes of the two passes' labels, summed over slabs.
        overlap = torch.zeros((3, num_classes), dtype=torch.float64, device=self.device)
        for part in _slabs(shape[0], _SLAB_VOX):
            logits = [
                _class_last(head, features[:, :, part], self._autocast) for features, head in passes
            ]
            if len(logits) == 1 and probabilities is None:
                # The argmax of the logits is that of the probabilities: no softmax needed
                # (and weighting the probabilities is adding the log weights to the logits).
                first = logits[0] if log_weights is None else logits[0] + log_weights
                best = first.argmax(-1)
            else:
                total = torch.softmax(logits[0], dim=-1)
                for more in logits[1:]:
                    total.add_(torch.softmax(more, dim=-1))
                if log_weights is not None:  # p_k w_k / sum_j p_j w_j, kept summing to the passes
                    total.mul_(log_weights.exp())
                    total.mul_(len(logits) / total.sum(-1, keepdim=True))
                best = total.argmax(-1)  # of the sum: the same as of the mean
                if probabilities is not None:
                    scaled = (total[0] * (255 / len(logits))).round_().to(torch.uint8)
                    probabilities[part] = scaled.cpu().numpy()
            classes[part] = best[0].to(torch.uint8).cpu().numpy()
            if extras and len(logits) == 2:
                a, b = logits[0].argmax(-1).flatten(), logits[1].argmax(-1).flatten()
                ones = torch.ones_like(a, dtype=torch.float64)
                overlap[0].index_add_(0, a[a == b], ones[a == b])
                overlap[1].index_add_(0, a, ones)
                overlap[2].index_add_(0, b, ones)
            if tissue is not None:
                tissue_head = self._head("tissue")
                tissue_logits = _class_last(tissue_head, passes[0][0][:, :, part], self._autocast)
                tissue[part] = tissue_logits.argmax(-1)[0].to(torch.uint8).cpu().numpy()
        agreement = None
        if extras and self.tta:
            sizes = overlap[1] + overlap[2]
            dice = torch.where(sizes > 0, 2 * overlap[0] / sizes.clamp_min(1), torch.nan)
            agreement = dice.cpu().numpy()
        return classes, probabilities, agreement, tissue

    def _head(self, name: str) -> torch.nn.Conv3d:
        head = self.model.heads[name]
        assert isinstance(head, torch.nn.Conv3d)  # MultiHeadUNet's heads: 1x1x1 convolutions
        return head

    @functools.cached_property
    def _mirrored_full_head(self) -> torch.nn.Conv3d:
        """The full head with its output channels swapped left <-> right (built once).

        On the mirrored pass's features (flipped back) it gives the logits in the plain pass's
        class order: Left-X's channel holds what the plain head calls Right-X. The heads are
        1x1x1 convolutions, so permuting their weight rows once replaces a gather over the 99
        channels of every voxel (0.3 s of the 2 mm canvas on 2 cores).
        """
        name = self.info.full_protocol
        head = self._head(name)
        swap = torch.as_tensor(flip_permutation(name), device=self.device)
        mirrored = copy.deepcopy(head)
        with torch.no_grad():
            for own, source in zip(mirrored.parameters(), head.parameters(), strict=True):
                own.copy_(source[swap])
        return mirrored


def _class_last(
    head: torch.nn.Conv3d,
    features: torch.Tensor,
    autocast: Callable[[], contextlib.AbstractContextManager[object]],
) -> torch.Tensor:
    """Float32 logits (1, X, Y, Z, K) of one head on a slab of trunk features (1, F, X, Y, Z).

    Classes last: softmax and argmax over the contiguous last axis are 2-5x faster on a CPU
    than over the channel axis (one 16x112x112 slab, 99 classes, 1 thread: softmax 0.11 s
    against 0.57 s, argmax 0.09 s against 0.18 s). The head is a 1x1x1 convolution, i.e. a
    matrix product over the F feature channels: done as one on the features' class-last view,
    it writes the logits classes-last, where the convolution wrote them channels-first and
    the 99 channels had to be copied over (float32, 2 AVX2 cores, the whole 96x112x112
    canvas in slabs: 0.32 s against 0.83 s, four times per scan with TTA on two canvases).
    """
    weight = head.weight.flatten(1)  # (K, F, 1, 1, 1) -> (K, F)
    with autocast():
        logits = torch.nn.functional.linear(features.movedim(1, -1), weight, head.bias)
    return logits.float()


def _slabs(size: int, step: int) -> Iterator[slice]:
    for start in range(0, size, step):
        yield slice(start, min(start + step, size))


def head_brain_mask(volume: Volume) -> tuple[np.ndarray | None, Conformed]:
    """The brain of a whole-head scan, on the scan's own grid, and the scan at 1 mm.

    The brain is deepbet's mask (``partial.brainmask.deepbet_mask``, on the scan conformed to
    a 1 mm RAS canvas, where deepbet works), widened by 2 mm and brought back to the scan's
    grid. A mask no adult brain could have (outside 0.4-2.2 L: deepbet found nothing, or
    everything) is not used: None, with a warning, and the scan is segmented as given.

    Returns:
        (the mask, ``volume.shape`` bool, or None; the scan on the 1 mm canvas).

    Raises:
        InputError: deepbet is not installed.
    """
    from scipy import ndimage

    from wholebrain.conform import ConformConfig
    from wholebrain.io.report import BRAIN_VOLUME_L
    from wholebrain.partial.brainmask import deepbet_mask

    fine = conform(volume, ConformConfig())
    brain = deepbet_mask(fine.image, source=volume.name)
    litres = float(brain.sum()) * fine.config.spacing_mm**3 / 1e6
    if not _MIN_MASK_L <= litres <= BRAIN_VOLUME_L[1]:
        log.warning(
            "%s: looks like a whole head, but its brain mask (deepbet) holds %.2f L, which no "
            "adult brain does; segmenting the scan as given (use --skull-strip off to skip)",
            volume.name,
            litres,
        )
        return None, fine
    margin_vox = max(1, round(_MASK_MARGIN_MM / fine.config.spacing_mm))
    brain = ndimage.binary_dilation(brain, iterations=margin_vox)
    native: np.ndarray = fine.to_native(brain.astype(np.uint8)) > 0
    log.debug("%s: skull-stripped: brain mask %.2f L (deepbet)", volume.name, litres)
    return native, fine


def strip_skull(volume: Volume, brain: np.ndarray) -> Volume:
    """``volume`` with every voxel outside ``brain`` set to 0 (``conform`` then normalises
    intensities on the brain alone, as for a scan the user skull-stripped)."""
    data = np.where(brain, volume.data, 0).astype(volume.data.dtype, copy=False)
    return replace(volume, data=data)


def keep_largest_brain_component(labels: np.ndarray) -> int:
    """Zero every labelled voxel outside the largest 26-connected labelled component, in place.

    A brain is one connected piece; labels the network puts in the skull, the eyes or the
    neck of a whole-head scan are islands apart from it. Returns the voxels removed.
    """
    from scipy import ndimage

    brain = labels > 0
    components, count = ndimage.label(brain, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return 0
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    islands = brain & (components != int(sizes.argmax()))
    removed = int(islands.sum())
    labels[islands] = 0
    if removed:
        log.debug("removed %d labelled voxels in %d islands outside the brain", removed, count - 1)
    return removed
