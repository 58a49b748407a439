"""The model shipped inside the package (trained by the project; see docs/model_card.md).

``dkt-aseg.pt`` is a ``wholebrain train`` checkpoint reduced to what inference needs
(weights in float16, label tables, canvas, training config). Its licence is the training
data's, CC BY-NC-SA 3.0 (Mindboggle-101), not the code's: see LICENSE-model.txt beside it.
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
            path,
            "the model shipped with wholebrain",
            "no such file",
            "reinstall wholebrain, or give a checkpoint with --model",
        )
    return path
