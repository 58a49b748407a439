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

from typing import Any

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

    The value is ``ce_weight * CE + dice_weight * soft_dice_loss(softmax(logits))`` with CE
    the mean over annotated voxels; the gradient is computed in closed form
    (:class:`_DiceCrossEntropy`) in a few passes over the (B, K, X, Y, Z) probabilities
    instead of autograd's dozen, which halves the loss's share of a CPU training step at
    99 classes (benchmarks/train_throughput.py).

    Args:
        logits: ``(B, K, X, Y, Z)``, any float dtype and memory layout (bf16 channels-last
            from a CPU autocast network is fine: the loss works in float32).
        target: ``(B, X, Y, Z)`` class indices in ``0..K-1`` or ``ignore_index``.
    """
    _check_target(logits, target, ignore_index)
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits, target = _voxel_rows(logits, target)
    loss: torch.Tensor = _DiceCrossEntropy.apply(  # type: ignore[no-untyped-call]
        logits, target, ignore_index, float(dice_weight), float(ce_weight)
    )
    return loss


class _DiceCrossEntropy(torch.autograd.Function):
    """Fused soft Dice + cross-entropy with its analytic gradient.

    With p = softmax(z) over classes k, w_v = 1 on annotated voxels (else 0), y_v the class
    of voxel v, N = sum w, and per class P_k = sum_v w p_k, C_k = sum_v w [y=k],
    I_k = sum_v w p_k [y=k], D_k = (2 I_k + s) / (P_k + C_k + s), S the set of classes with
    C_k > 0 or P_k > 0.5 (as in :func:`soft_dice_loss`):

        L = ce_w * (-1/N) sum_v w log p_y + dice_w * (1 - mean_{k in S} D_k)

    dL/dp_k(v) = w (a_k [y=k] + b_k) with a_k = -2 / (|S| den_k), b_k = (2 I_k + s) /
    (|S| den_k^2) for k in S (0 otherwise); through the softmax, g_z = p (g_p - p.g_p), so

        dL/dz_k(v) = w p_k (dice_w (b_k - c_v) + ce_w / N) + w [y=k] (dice_w a_y p_y - ce_w / N)

    with c_v = a_y p_y + sum_k p_k b_k. S is treated as fixed (it is a step function).
    """

    @staticmethod
    def forward(
        ctx: Any,  # torch's FunctionCtx, which the type stubs do not let us add fields to
        logits: torch.Tensor,
        target: torch.Tensor,
        ignore_index: int,
        dice_weight: float,
        ce_weight: float,
    ) -> torch.Tensor:
        smooth = 1e-5
        num_classes = logits.shape[1]
        valid = target != ignore_index
        labels = torch.where(valid, target, torch.zeros_like(target)).long().unsqueeze(1)
        weight = valid.to(torch.float32)
        log_p = F.log_softmax(logits, dim=1, dtype=torch.float32)
        p = log_p.exp()
        count = weight.sum()
        ce = -(log_p.gather(1, labels).squeeze(1) * weight).sum() / count
        del log_p
        p_true = p.gather(1, labels).squeeze(1) * weight  # p of the true class, 0 if unknown
        flat = labels.reshape(-1)
        zeros = torch.zeros(num_classes, dtype=torch.float32, device=p.device)
        predicted = torch.einsum("bk...,b...->k", p, weight)  # no (B, K, ...) temporary
        intersection = zeros.index_add(0, flat, p_true.reshape(-1))
        counts = zeros.index_add(0, flat, weight.reshape(-1))
        den = predicted + counts + smooth
        dice = (2 * intersection + smooth) / den
        present = (counts > 0) | (predicted > 0.5)
        size = present.sum().clamp_min(1).to(torch.float32)
        dice_loss = 1 - (dice * present).sum() / size
        a = torch.where(present, -2 / (size * den), zeros)
        b = torch.where(present, (2 * intersection + smooth) / (size * den**2), zeros)
        ctx.save_for_backward(p, labels, weight, a, b, count)
        ctx.weights = (dice_weight, ce_weight)
        ctx.logits_dtype = logits.dtype
        return ce_weight * ce + dice_weight * dice_loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        p, labels, weight, a, b, count = ctx.saved_tensors
        dice_weight, ce_weight = ctx.weights
        shape = (1, -1) + (1,) * (p.ndim - 2)
        p_true = p.gather(1, labels)  # (B, 1, ...)
        a_true = a[labels]
        c = a_true * p_true + (p * b.view(shape)).sum(1, keepdim=True)
        scale = grad_output * weight.unsqueeze(1)
        grad = p * (dice_weight * (b.view(shape) - c) + ce_weight / count)
        grad.mul_(scale)
        grad.scatter_add_(1, labels, scale * (dice_weight * a_true * p_true - ce_weight / count))
        return grad.to(ctx.logits_dtype), None, None, None, None


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
    _check_shapes(full_logits, target)  # before the rows view hides them; classes below
    full_logits, target = _voxel_rows(full_logits, target)
    probabilities = torch.softmax(full_logits, dim=1, dtype=torch.float32)
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


def _voxel_rows(scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels-last ``(B, K, X, Y, Z)`` scores as voxel-major rows ``(V, K)`` (a free view),
    with the target as ``(V,)``; other layouts unchanged.

    Softmax, gathers and class sums along dim 1 are then passes over contiguous memory in
    either layout. On channels-last scores (the CPU autocast layout) the class-major passes
    each made a strided copy: the loss took 40 % of a CPU training step at 99 classes; rows
    cut its forward and backward from 2.0 to 1.0 s (2 x 64³, 99 classes, 2 cores:
    benchmarks/results/loss.txt). The gradient flows back through the view, so it comes out
    channels-last too.
    """
    if scores.ndim > 2 and scores.stride(1) == 1 and scores.shape[1] > 1:
        return scores.movedim(1, -1).reshape(-1, scores.shape[1]), target.reshape(-1)
    return scores, target


def _check_target(scores: torch.Tensor, target: torch.Tensor, ignore_index: int) -> None:
    _check_shapes(scores, target)
    labelled = target[target != ignore_index]
    if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) >= scores.shape[1]):
        raise ValueError(
            f"target classes must lie in 0..{scores.shape[1] - 1} or be {ignore_index}, "
            f"found {int(labelled.min())}..{int(labelled.max())}"
        )


def _check_shapes(scores: torch.Tensor, target: torch.Tensor) -> None:
    if scores.ndim != target.ndim + 1 or scores.shape[0] != target.shape[0]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match scores {tuple(scores.shape)}: "
            "expected (B, X, Y, Z) against (B, K, X, Y, Z)"
        )
    if scores.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"target size {tuple(target.shape[1:])} differs from scores {tuple(scores.shape[2:])}"
        )
