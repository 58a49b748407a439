"""File names: the supported suffixes and the messages about paths and file-system errors.

Shared by loading (:mod:`wholebrain.io.load`), saving (:mod:`wholebrain.io.save`) and
inspection (:mod:`wholebrain.io.report`), which all pick the format from the suffix.
"""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
_COMPRESSED_SUFFIXES = (".nii.gz", ".mgz")


def _image_suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (".nii.gz", ".nii", ".mgz", ".mgh"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def _split_suffix(name: str) -> tuple[str, str]:
    """``"a.b.nii.gz"`` -> ``("a.b", ".nii.gz")``; compression suffixes stay with the one before."""
    stem, dot, last = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    if last.lower() in ("gz", "bz2", "xz", "zst"):
        inner_stem, inner_dot, inner = stem.rpartition(".")
        if inner_dot and inner_stem:
            return inner_stem, f".{inner}.{last}"
    return stem, f".{last}"


def _suffix_list() -> str:
    return ", ".join(SUFFIXES[:-1]) + " or " + SUFFIXES[-1]


def _describe_suffix(path: Path) -> str:
    _, suffix = _split_suffix(path.name)
    return f"the suffix '{suffix}'" if suffix else "no suffix"


def _describe_missing(source: Path) -> str:
    if not source.parent.exists():
        return f"no such file (the folder {source.parent} does not exist either)"
    suffix = _image_suffix(source)
    stem = source.name[: -len(suffix)] if suffix else _split_suffix(source.name)[0]
    for other in SUFFIXES:
        candidate = source.with_name(stem + other)
        if candidate != source and candidate.is_file():
            return f"no such file (but there is {candidate.name})"
    return "no such file"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."
