"""The model shipped inside the package, when there is one (see README, Status).

A shipped model is a ``wholebrain train`` checkpoint reduced to what inference needs
(``train.checkpoint.export_for_inference``: float16 weights, label tables, canvas, training
config), stored here as ``dkt-aseg.pt`` with its model card in docs/model_card.md. None ships
yet: the first CPU-trained attempts were far from usable (README, Status), and a model that
labels every brain as white matter would be worse than none. Until then ``wholebrain
segment`` needs ``--model``.
"""

from __future__ import annotations

from pathlib import Path

from wholebrain.errors import InputError

__all__ = ["SHIPPED_MODEL", "shipped_model_path"]

SHIPPED_MODEL = "dkt-aseg.pt"


def shipped_model_path() -> Path:
    """The shipped checkpoint's path.

    Raises:
        InputError: no model ships with this installation.
    """
    path = Path(__file__).parent / SHIPPED_MODEL
    if not path.is_file():
        raise InputError(
            "--model",
            "a trained model: a checkpoint, or the one shipped with wholebrain",
            "no --model, and this version of wholebrain ships no model yet",
            "train one (wholebrain train CONFIG.toml) and pass --model RUN/best.pt",
        )
    return path
