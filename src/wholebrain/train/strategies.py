"""Training strategies: which heads the network has, which subjects each step draws, which losses.

The four strategies of the paper's comparison (Dai et al. 2019, plus the marginal loss), as a
config value rather than four trainers:

- ``full-only``: one head (full); full subjects only; Dice+CE of the full head.
- ``pretrain-finetune``: heads full + each partial protocol; phase 1 (``pretrain_steps``)
  trains the partial heads on partial (and synthetic) subjects, phase 2 the full head on
  full subjects (transfer learning).
- ``multitask``: heads full + each partial protocol, trained jointly on mixed batches:
  loss = Σ_p weight_p · Dice+CE(head p, targets p); the partial targets of full subjects are
  their full labels merged (``protocols.map_labels``).
- ``marginal``: one head (full); loss = weight_full · Dice+CE(full head, full targets) +
  Σ_p weight_p · marginal Dice+CE(full head merged to protocol p, targets p).

Every head's output joins the loss (with weight 0 when it has no term) so DDP sees a gradient
for every parameter at every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from wholebrain.losses import IGNORE_INDEX, dice_ce_loss, marginal_dice_ce_loss
from wholebrain.protocols import FULL_PROTOCOL, class_matrix, get_protocol

__all__ = ["Phase", "Strategy"]


@dataclass(frozen=True)
class Phase:
    """A stretch of steps with one sampling and one loss."""

    name: str  # "train", or "pretrain" / "finetune"
    start: int  # first step of the phase
    stop: int  # the step after its last
    shares: dict[str, float]  # pool -> share of batch slots (full, partial, synth)
    heads: tuple[str, ...]  # protocols whose loss terms are optimised


class Strategy:
    """One of :data:`wholebrain.train.config.STRATEGIES` over the protocols of a dataset.

    Args:
        name: the strategy.
        partial_protocols: partial protocols annotated in the training data (synthetic
            ``aseg`` included when synthetic scans are on).
        steps: total steps; pretrain_steps: length of the pretraining phase.
        full_fraction: share of full subjects in mixed batches; synth_fraction: of synthetic.
        loss_weights: protocol -> weight (1 when absent).
    """

    def __init__(
        self,
        name: str,
        partial_protocols: Sequence[str],
        *,
        steps: int,
        pretrain_steps: int = 0,
        full_fraction: float = 0.5,
        synth_fraction: float = 0.0,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.name = name
        self.partials = tuple(p for p in dict.fromkeys(partial_protocols) if p != FULL_PROTOCOL)
        self.weights = {p: 1.0 for p in (FULL_PROTOCOL, *self.partials)}
        self.weights.update(loss_weights or {})
        mixed = {
            "full": full_fraction,
            "partial": 1.0 - full_fraction - synth_fraction,
            "synth": synth_fraction,
        }
        self.phases: tuple[Phase, ...]
        if name == "full-only":
            self.phases = (Phase("train", 0, steps, {"full": 1.0}, (FULL_PROTOCOL,)),)
        elif name == "pretrain-finetune":
            pre = {"partial": 1.0 - synth_fraction, "synth": synth_fraction}
            self.phases = (
                Phase("pretrain", 0, pretrain_steps, pre, self.partials),
                Phase("finetune", pretrain_steps, steps, {"full": 1.0}, (FULL_PROTOCOL,)),
            )
        elif name in ("multitask", "marginal"):
            self.phases = (Phase("train", 0, steps, mixed, (FULL_PROTOCOL, *self.partials)),)
        else:
            raise ValueError(f"unknown strategy {name!r}")
        self._matrices: dict[tuple[str, torch.device], torch.Tensor] = {}

    @property
    def heads(self) -> dict[str, int]:
        """The model's heads: protocol -> number of classes."""
        names = (
            (FULL_PROTOCOL,)
            if self.name in ("full-only", "marginal")
            else (
                FULL_PROTOCOL,
                *self.partials,
            )
        )
        return {p: get_protocol(p).num_classes for p in names}

    @property
    def target_protocols(self) -> tuple[str, ...]:
        """The protocols the data loader gives targets for (one label channel each)."""
        if self.name == "full-only":
            return (FULL_PROTOCOL,)
        return (FULL_PROTOCOL, *self.partials)

    @property
    def derive_targets(self) -> bool:
        """Give partial heads the coarsened full labels of full subjects (multi-task only:
        in ``marginal`` the full loss already says everything the coarsened labels would)."""
        return self.name in ("multitask", "pretrain-finetune")

    def phase(self, step: int) -> Phase:
        for phase in self.phases:
            if phase.start <= step < phase.stop:
                return phase
        return self.phases[-1]

    def loss(
        self,
        logits: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        phase: Phase,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss and each term (detached; terms with no labelled voxel left out).

        Args:
            logits: head -> (B, K, X, Y, Z).
            targets: protocol -> (B, X, Y, Z) class indices or ``IGNORE_INDEX``.
        """
        # DDP needs every parameter in the graph: a zero-weighted term per head, added only
        # under DDP because each one costs a full-size backward pass over that head's logits.
        total = torch.zeros(())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            total = sum((0.0 * v.float().mean() for v in logits.values()), total)
        terms: dict[str, torch.Tensor] = {}
        for protocol in phase.heads:
            target = targets.get(protocol)
            if target is None or not bool((target != IGNORE_INDEX).any()):
                continue
            if protocol in logits:
                term = dice_ce_loss(logits[protocol], target)  # any dtype: computed in float32
            else:  # marginal: the full head, merged to the partial protocol's classes
                full = logits[FULL_PROTOCOL]
                term = marginal_dice_ce_loss(full, target, self._matrix(protocol, full.device))
            total = total + self.weights.get(protocol, 1.0) * term
            terms[protocol] = term.detach()
        return total, terms

    def _matrix(self, protocol: str, device: torch.device) -> torch.Tensor:
        key = (protocol, device)
        if key not in self._matrices:
            self._matrices[key] = torch.from_numpy(class_matrix(protocol)).to(device)
        return self._matrices[key]
