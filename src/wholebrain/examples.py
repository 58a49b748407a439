"""Example data a fresh install can reach without downloading anything.

The project ships no third-party data. nilearn's wheel carries the ICBM152 2009a
template (T1 plus grey- and white-matter probability maps), so ``pip install nilearn``
gives every user the same real T1 to try the tool on.
"""

from __future__ import annotations

from pathlib import Path

from wholebrain.errors import InputError

_ICBM152 = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def icbm152_path(kind: str = "t1") -> Path:
    """Path of nilearn's bundled ICBM152 2009a image: ``kind`` is ``t1``, ``gm`` or ``wm``.

    Raises:
        InputError: nilearn is not installed, or its wheel lacks the file.
    """
    if kind not in ("t1", "gm", "wm"):
        raise ValueError(f"kind must be 't1', 'gm' or 'wm', not {kind!r}")
    try:
        import nilearn
    except ImportError as error:
        raise InputError(
            "the example", "nilearn installed (it ships the ICBM152 T1)", "no nilearn",
            "pip install nilearn (or the project's [example] extra)",
        ) from error  # fmt: skip
    path = Path(nilearn.__file__).parent / "datasets" / "data" / _ICBM152.format(kind)
    if not path.is_file():
        raise InputError(
            path, "the ICBM152 template inside nilearn's package", "no such file",
            "reinstall nilearn: pip install --force-reinstall nilearn",
        )  # fmt: skip
    return path
