"""The example data a fresh install can reach (nilearn's bundled ICBM152)."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from wholebrain.cli import main
from wholebrain.errors import InputError
from wholebrain.examples import icbm152_path
from wholebrain.io import load_image

pytest.importorskip("nilearn", reason="the example data ship inside nilearn")


def test_icbm152_is_a_valid_t1() -> None:
    volume = load_image(icbm152_path("t1"))
    assert volume.shape == (197, 233, 189)
    assert volume.orientation == "RAS"
    assert icbm152_path("gm").is_file() and icbm152_path("wm").is_file()
    with pytest.raises(ValueError, match="kind must be"):
        icbm152_path("csf")


def test_missing_nilearn_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_nilearn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "nilearn":
            raise ImportError("No module named 'nilearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nilearn)
    with pytest.raises(InputError, match="pip install nilearn"):
        icbm152_path()


def test_info_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--example"]) == 0
    out = capsys.readouterr().out
    assert "mni_icbm152_t1" in out and "verdict         ok" in out
    assert main(["info"]) == 2
    assert "at least one FILE or --example" in capsys.readouterr().err
