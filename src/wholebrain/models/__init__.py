"""The model shipped inside the package: ``dkt-aseg.pt`` and its licence.

A shipped model is a ``wholebrain train`` checkpoint reduced to what inference needs
(``train.checkpoint.export_for_inference``: float16 weights, label tables, canvas, training
config). How it was trained and how accurate it is on subjects it never saw: docs/model_card.md
(written by benchmarks/model_card.py from measurements). Its weights are a work derived from
Mindboggle-101 and carry that data's licence, CC BY-NC-SA 3.0 (``LICENSE-model.txt`` here).
"""

from __future__ import annotations

from pathlib import Path

from wholebrain.errors import InputError

__all__ = ["SHIPPED_MODEL", "shipped_model_path"]

SHIPPED_MODEL = "dkt-aseg.pt"


def shipped_model_path() -> Path:
    """The shipped checkpoint's path.

    Raises:
        InputError: the file is missing from this installation.
    """
    path = Path(__file__).parent / SHIPPED_MODEL
    if not path.is_file():
        raise InputError(
            "--model",
            "a trained model: a checkpoint, or the one shipped with wholebrain",
            f"no --model, and the shipped model {path} is missing from this installation",
            "reinstall wholebrain, or pass --model RUN/best.pt",
        )
    return path
