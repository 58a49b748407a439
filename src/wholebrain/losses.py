"""Losses per head: soft Dice + cross-entropy with an ignore value, and the marginal loss.

Targets are class indices ``(B, X, Y, Z)`` of the head's protocol (as stored in the
dataset cache); voxels equal to ``ignore_index`` (unknown in a partial annotation, or
padding) contribute nothing: their gradient is exactly zero.

The marginal (label-set) loss (Shi et al., MedIA 2021; Fidon et al., MICCAI 2021)
supervises a partial annotation through the full head: the probability of a partial
class is the sum of the full head's probabilities of the full classes it merges
(``protocols.class_matrix``), so any protocol with a map from the full one trains the
same head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255  # class index meaning "no annotation here" (fits the uint8 cache)
_EPS = 1e-6


def _valid_mask(target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return (target != ignore_index).unsqueeze(1)


def soft_dice_loss(
    probabilities: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in the target or the prediction.

    Args:
        probabilities: ``(B, K, X, Y, Z)`` class probabilities (summing to 1 over K).
        target: ``(B, X, Y, Z)`` integer class indices, ``ignore_index`` where unknown.

    Sums run over the batch and space together (batch Dice), which keeps rare
    structures of one patch from dominating; classes absent from both target and
    prediction in the whole batch are left out of the mean rather than counted as 1.

    No one-hot target is built: the intersection of class k is the sum of the
    probability of the true class over the voxels labelled k (a gather and a per-class
    sum), which at 99 classes is several times faster than one-hot products.
    """
    num_classes = probabilities.shape[1]
    valid = target != ignore_index
    labels = torch.where(valid, target, torch.zeros_like(target)).long()
    weight = valid.to(probabilities.dtype)
    dims = (0, *range(2, probabilities.ndim))
    # Sum of p_k over the annotated voxels, per class k.
    predicted = (probabilities * weight.unsqueeze(1)).sum(dims)
    true_class_p = probabilities.gather(1, labels.unsqueeze(1)).squeeze(1) * weight
    intersection = torch.zeros(
        num_classes, dtype=probabilities.dtype, device=probabilities.device
    ).index_add(0, labels.reshape(-1), true_class_p.reshape(-1))
    counts = torch.zeros(num_classes, dtype=probabilities.dtype, device=probabilities.device)
    counts = counts.index_add(0, labels.reshape(-1), weight.reshape(-1))
    dice = (2 * intersection + smooth) / (predicted + counts + smooth)
    present = (counts > 0) | (predicted.detach() > 0.5)
    if not bool(present.any()):
        return probabilities.sum() * 0.0  # nothing annotated: zero loss, zero gradient
    return 1 - dice[present].mean()


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """Soft Dice + cross-entropy of one head against its own protocol's classes.

    Args:
        logits: ``(B, K, X, Y, Z)``.
        target: ``(B, X, Y, Z)`` class indices in ``0..K-1`` or ``ignore_index``.
    """
    _check_target(logits, target, ignore_index)
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    # One log-softmax serves both terms; float32 and channels-first whatever the network
    # produced (bf16 autocast, channels_last), so the class axis reductions stay fast.
    log_p = F.log_softmax(logits.float().contiguous(), dim=1)
    ce = F.nll_loss(log_p, target.long(), ignore_index=ignore_index)
    dice = soft_dice_loss(log_p.exp(), target, ignore_index=ignore_index)
    return ce_weight * ce + dice_weight * dice


def marginal_dice_ce_loss(
    full_logits: torch.Tensor,
    target: torch.Tensor,
    class_matrix: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """Dice + cross-entropy of a partial annotation through the full head.

    Args:
        full_logits: ``(B, K_full, X, Y, Z)`` logits of the full head.
        target: ``(B, X, Y, Z)`` class indices of the partial protocol, or ``ignore_index``.
        class_matrix: ``(K_partial, K_full)`` 0/1, row c marks the full classes merged
            into partial class c (``protocols.class_matrix``); columns sum to 1.
    """
    if class_matrix.shape[1] != full_logits.shape[1]:
        raise ValueError(
            f"class_matrix has {class_matrix.shape[1]} full classes, logits have "
            f"{full_logits.shape[1]}"
        )
    probabilities = torch.softmax(full_logits.float().contiguous(), dim=1)
    merged = torch.einsum("bk...,ck->bc...", probabilities, class_matrix.to(probabilities))
    _check_target(merged, target, ignore_index)
    valid = target != ignore_index
    if not bool(valid.any()):
        return full_logits.sum() * 0.0
    # Summed probabilities are exact; their log is clamped so a class with zero
    # probability gives a large finite loss rather than inf.
    log_merged = torch.log(merged.clamp_min(_EPS))
    ce = F.nll_loss(log_merged, target.long(), ignore_index=ignore_index)
    dice = soft_dice_loss(merged, target, ignore_index=ignore_index)
    return ce_weight * ce + dice_weight * dice


def _check_target(scores: torch.Tensor, target: torch.Tensor, ignore_index: int) -> None:
    if scores.ndim != target.ndim + 1 or scores.shape[0] != target.shape[0]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match scores {tuple(scores.shape)}: "
            "expected (B, X, Y, Z) against (B, K, X, Y, Z)"
        )
    if scores.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"target size {tuple(target.shape[1:])} differs from scores {tuple(scores.shape[2:])}"
        )
    labelled = target[target != ignore_index]
    if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) >= scores.shape[1]):
        raise ValueError(
            f"target classes must lie in 0..{scores.shape[1] - 1} or be {ignore_index}, "
            f"found {int(labelled.min())}..{int(labelled.max())}"
        )
