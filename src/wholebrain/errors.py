"""The one exception type users see, and how its sentence is built.

Every check on user input raises :class:`InputError`; the CLI prints its message
as a single line and exits with status 1 (a traceback only with ``--debug``).
"""

from __future__ import annotations

from pathlib import Path


class WholebrainError(Exception):
    """Base class of the errors the CLI reports as one sentence without a traceback."""


class InputError(WholebrainError, ValueError):
    """A user-supplied file or value cannot be used.

    The message always names the file, what was expected, what was found and what
    to do, e.g. ``"scan.nii.gz: expected a 3D image, found 4 volumes (shape
    64x64x40x4); pick one with fslroi or nibabel's slicer"``.
    """

    def __init__(self, source: str | Path | None, expected: str, found: str, todo: str) -> None:
        self.source = None if source is None else str(source)
        self.expected = expected
        self.found = found
        self.todo = todo
        where = f"{self.source}: " if self.source is not None else ""
        super().__init__(f"{where}expected {expected}, found {found}; {todo}")


class OutputExistsError(WholebrainError, FileExistsError):
    """An output file exists and overwriting it was not asked for (``--force``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"{path}: expected a free output path, found an existing file; "
            "choose another output or pass --force to overwrite it"
        )
