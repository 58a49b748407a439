"""Dice + CE with ignore, and the marginal loss (wholebrain.losses)."""

from __future__ import annotations

import pytest
import torch

from wholebrain.losses import IGNORE_INDEX, dice_ce_loss, marginal_dice_ce_loss, soft_dice_loss


def _random_case(seed: int = 0, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 6, 5, 4, generator=g, requires_grad=True)
    target = torch.randint(0, classes, (2, 6, 5, 4), generator=g)
    return logits, target


def test_perfect_prediction_has_near_zero_loss() -> None:
    target = torch.randint(0, 3, (1, 8, 8, 8), generator=torch.Generator().manual_seed(1))
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 30
    assert dice_ce_loss(logits, target).item() < 1e-4
    assert dice_ce_loss(-logits, target).item() > 1.0


def test_ignored_voxels_get_exactly_zero_gradient() -> None:
    logits, target = _random_case()
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[:, :3] = True
    target = torch.where(ignored, torch.full_like(target, IGNORE_INDEX), target)
    dice_ce_loss(logits, target).backward()
    grad = logits.grad
    assert grad is not None
    assert torch.all(grad.movedim(1, -1)[ignored] == 0)  # exactly zero, not just small
    assert torch.all(grad.movedim(1, -1)[~ignored].abs().sum(-1) > 0)


def test_ignored_voxels_do_not_change_the_loss() -> None:
    logits, target = _random_case(2)
    masked = target.clone()
    masked[:, :2] = IGNORE_INDEX
    other_logits = logits.detach().clone()
    other_logits[:, :, :2] = torch.randn_like(other_logits[:, :, :2]) * 10
    a = dice_ce_loss(logits.detach(), masked)
    b = dice_ce_loss(other_logits, masked)
    assert torch.allclose(a, b)


def test_all_ignored_is_zero_loss_with_zero_gradient() -> None:
    logits, target = _random_case(3)
    loss = dice_ce_loss(logits, torch.full_like(target, IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None and torch.all(logits.grad == 0)


def test_marginal_loss_equals_plain_loss_for_the_identity_map() -> None:
    logits, target = _random_case(4)
    plain = dice_ce_loss(logits, target)
    marginal = marginal_dice_ce_loss(logits, target, torch.eye(4))
    assert torch.allclose(plain, marginal, atol=1e-5)


def test_marginal_loss_merges_full_classes() -> None:
    # full classes 0..3, partial classes {0}, {1, 2}, {3}
    matrix = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    target = torch.ones(1, 4, 4, 4, dtype=torch.long)  # everything is partial class 1
    as_one = torch.zeros(1, 4, 4, 4, 4)
    as_one[:, 1] = 30  # the full head says full class 1
    as_two = torch.zeros(1, 4, 4, 4, 4)
    as_two[:, 2] = 30  # ... or full class 2: both are right for partial class 1
    wrong = torch.zeros(1, 4, 4, 4, 4)
    wrong[:, 3] = 30
    assert marginal_dice_ce_loss(as_one, target, matrix).item() < 1e-4
    assert marginal_dice_ce_loss(as_two, target, matrix).item() < 1e-4
    assert marginal_dice_ce_loss(wrong, target, matrix).item() > 1.0


def test_marginal_ignore_gives_zero_gradient() -> None:
    matrix = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    logits, _ = _random_case(5)
    target = torch.randint(0, 3, (2, 6, 5, 4), generator=torch.Generator().manual_seed(6))
    target[:, 4:] = IGNORE_INDEX
    marginal_dice_ce_loss(logits, target, matrix).backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[:, :, 4:] == 0)


def test_soft_dice_counts_only_present_classes() -> None:
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    probabilities = torch.zeros(1, 5, 4, 4, 4)
    probabilities[:, 0] = 1
    # classes 1..4 absent from both: left out, so a perfect background gives Dice 1
    assert soft_dice_loss(probabilities, target).item() < 1e-6


@pytest.mark.parametrize(
    ("target_shape", "message"),
    [((2, 6, 5), "does not match"), ((2, 6, 5, 3), "differs from scores")],
)
def test_shape_errors(target_shape: tuple[int, ...], message: str) -> None:
    logits, _ = _random_case()
    with pytest.raises(ValueError, match=message):
        dice_ce_loss(logits, torch.zeros(target_shape, dtype=torch.long))


def test_class_range_and_matrix_errors() -> None:
    logits, target = _random_case()
    with pytest.raises(ValueError, match=r"must lie in 0\.\.3"):
        dice_ce_loss(logits, target + 10)
    with pytest.raises(ValueError, match="class_matrix has 3 full classes"):
        marginal_dice_ce_loss(logits, target, torch.ones(2, 3))


def _autograd_dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The definition, through autograd: CE + soft_dice_loss(softmax)."""
    log_p = torch.log_softmax(logits, dim=1)
    ce = torch.nn.functional.nll_loss(log_p, target.long(), ignore_index=IGNORE_INDEX)
    return ce + soft_dice_loss(log_p.exp(), target)


@pytest.mark.parametrize("num_classes", [2, 5, 99])
def test_fused_gradient_matches_autograd(num_classes: int) -> None:
    torch.manual_seed(num_classes)
    logits = (3 * torch.randn(2, num_classes, 7, 6, 5, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, num_classes, (2, 7, 6, 5))
    target[0, :3] = IGNORE_INDEX  # unknown voxels: no gradient
    target[target == num_classes - 1] = 0  # a class absent from the target
    expected = _autograd_dice_ce(logits, target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    value = dice_ce_loss(logits, target, dice_weight=0.7, ce_weight=1.3)
    weighted = 1.3 * torch.nn.functional.nll_loss(
        torch.log_softmax(logits, 1), target.long(), ignore_index=IGNORE_INDEX
    ) + 0.7 * soft_dice_loss(torch.softmax(logits, 1), target)
    (grad,) = torch.autograd.grad(value, logits)
    (weighted_grad,) = torch.autograd.grad(weighted, logits)
    assert value.item() == pytest.approx(weighted.item(), rel=1e-5)
    torch.testing.assert_close(grad, weighted_grad, rtol=1e-4, atol=1e-7)
    unit = dice_ce_loss(logits, target)
    (unit_grad,) = torch.autograd.grad(unit, logits)
    assert unit.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(unit_grad, expected_grad, rtol=1e-4, atol=1e-7)
    assert unit_grad[0, :, :3].abs().max() == 0  # ignored voxels


def test_fused_loss_takes_bf16_channels_last_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 8, 8, 8).to(torch.bfloat16)
    logits = logits.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    target = torch.randint(0, 6, (2, 8, 8, 8))
    loss = dice_ce_loss(logits, target)
    loss.backward()
    assert logits.grad is not None and logits.grad.dtype == torch.bfloat16
    reference = logits.detach().float().requires_grad_()
    _autograd_dice_ce(reference, target).backward()
    assert reference.grad is not None
    torch.testing.assert_close(logits.grad.float(), reference.grad, rtol=0.02, atol=1e-4)
