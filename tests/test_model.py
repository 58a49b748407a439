"""The multi-head U-Net (wholebrain.model)."""

from __future__ import annotations

import pytest
import torch

from wholebrain.model import ModelConfig, MultiHeadUNet

TINY = ModelConfig(filters=(4, 8, 16))


def test_one_head_per_protocol_with_its_classes() -> None:
    model = MultiHeadUNet(TINY, {"dkt-aseg": 99, "tissue": 4})
    out = model(torch.zeros(2, 1, 16, 12, 8))
    assert set(out) == {"dkt-aseg", "tissue"}
    assert out["dkt-aseg"].shape == (2, 99, 16, 12, 8)
    assert out["tissue"].shape == (2, 4, 16, 12, 8)


def test_heads_share_the_trunk() -> None:
    model = MultiHeadUNet(TINY, {"a": 3, "b": 2})
    trunk = {id(p) for p in model.trunk.parameters()}
    heads = {name: {id(p) for p in head.parameters()} for name, head in model.heads.items()}
    assert trunk and not (trunk & heads["a"]) and not (heads["a"] & heads["b"])
    # a loss on head "b" alone moves the trunk: that is how partial annotations transfer
    out = model(torch.randn(1, 1, 8, 8, 8))
    out["b"].sum().backward()
    assert all(p.grad is None for p in model.heads["a"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())


def test_bad_configurations_and_sizes() -> None:
    with pytest.raises(ValueError, match="at least one head"):
        MultiHeadUNet(TINY, {})
    with pytest.raises(ValueError, match="at least three levels"):
        MultiHeadUNet(ModelConfig(filters=(4, 8)), {"a": 2})
    model = MultiHeadUNet(TINY, {"a": 2})
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.zeros(1, 1, 10, 8, 8))


def test_config_round_trips_through_a_dict() -> None:
    config = ModelConfig(filters=(8, 16, 32), residual=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.divisor == 4
