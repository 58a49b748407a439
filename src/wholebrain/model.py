"""The network: a 3D U-Net trunk shared by all protocols, one 1×1×1 head per protocol.

Dai et al. (MICCAI DART 2019) train one trunk jointly on annotations of several
protocols; each protocol gets its own output layer. The ``marginal`` strategy uses
only the full protocol's head and supervises partial annotations by summing its
probabilities (see :mod:`wholebrain.losses`), so the caller simply asks for one head.

The trunk is MONAI's DynUNet (the nnU-Net architecture) with its output block
removed: it returns ``filters[0]`` feature channels at full resolution, and the
heads are plain 1×1×1 convolutions on those features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the trunk; stored in every checkpoint."""

    filters: tuple[int, ...] = (16, 32, 64, 128, 192)  # channels per resolution level
    in_channels: int = 1  # T1 only
    residual: bool = False  # residual blocks in the trunk (nnU-Net's "ResEnc" flavour)
    norm: str = "instance"  # "instance" or "batch" normalisation in the trunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        values = dict(values)
        values["filters"] = tuple(values["filters"])
        return cls(**values)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (one halving per level below the top)."""
        return int(2 ** (len(self.filters) - 1))


class MultiHeadUNet(nn.Module):
    """A shared 3D U-Net trunk with one 1×1×1 output head per protocol.

    Args:
        config: the trunk's architecture.
        heads: protocol name → number of classes of that protocol's head.

    Input ``(B, C, X, Y, Z)`` with X, Y, Z multiples of ``config.divisor``; output a
    dict protocol → logits ``(B, K_protocol, X, Y, Z)``.
    """

    def __init__(self, config: ModelConfig, heads: Mapping[str, int]) -> None:
        super().__init__()
        from monai.networks.nets.dynunet import DynUNet

        if not heads:
            raise ValueError("the model needs at least one head, got none")
        levels = len(config.filters)
        if levels < 3:  # DynUNet needs at least one level between input and bottleneck
            raise ValueError(f"filters must name at least three levels, not {config.filters}")
        self.config = config
        self.head_classes = dict(heads)
        trunk = DynUNet(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.filters[0],  # unused: the output block is removed below
            kernel_size=[3] * levels,
            strides=[1] + [2] * (levels - 1),
            upsample_kernel_size=[2] * (levels - 1),
            filters=list(config.filters),
            norm_name=("INSTANCE", {"affine": True})
            if config.norm == "instance"
            else ("BATCH", {"affine": True}),
            res_block=config.residual,
        )
        # DynUNet's output block is a 1×1×1 conv; the per-protocol heads take its place.
        trunk.output_block = nn.Identity()
        self.trunk = trunk
        self.heads = nn.ModuleDict(
            {name: nn.Conv3d(config.filters[0], k, kernel_size=1) for name, k in heads.items()}
        )

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Trunk features ``(B, filters[0], X, Y, Z)``."""
        size = image.shape[2:]
        if any(s % self.config.divisor for s in size):
            raise ValueError(
                f"input size {tuple(size)} must be a multiple of {self.config.divisor} per axis"
            )
        features: torch.Tensor = self.trunk(image)
        return features

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(image)
        return {name: head(features) for name, head in self.heads.items()}


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bfloat16 matrix products in hardware (Intel AMX, AVX512-BF16).

    Elsewhere PyTorch emulates bf16 convolutions, far slower than float32: on a 2-core AMD EPYC
    with AVX2 only, one forward and backward pass and AdamW step of the shipped network on two
    64³ patches took more than 120 s in bf16 against 3.2-3.7 s in float32.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
