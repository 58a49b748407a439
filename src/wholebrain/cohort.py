"""Run one per-subject function over a cohort: skip what is done, shard, parallelise, never stop.

Every command that works subject by subject (``wholebrain partial`` now, ``segment`` later)
describes its work as :class:`WorkItem` s (a subject, its input scan, the files it will write)
and hands them to :func:`run_cohort` with a function that does one item:

* an item whose outputs all exist is **skipped** (unless ``force``), so a rerun after a crash,
  a timeout or new scans only does what is missing;
* ``shard=(i, n)`` keeps every n-th item of the sorted list, starting at the i-th (1-based), so
  a scheduler array (SLURM ``--array=1-n``, a Kubernetes indexed job) splits a cohort with no
  coordination: the n shards cover every item exactly once, whatever is already done;
* ``jobs > 1`` runs items in that many processes (``concurrent.futures``, started with
  ``spawn`` so no thread or lock state is inherited), each limited to its share of the CPU
  cores (BLAS, OpenMP, ITK threads); ``jobs=1`` runs in this process;
* one failing item never stops the others: a :class:`~wholebrain.errors.WholebrainError`
  becomes its message, any other exception its type and message (traceback logged at debug);
* a summary table (TSV: ``subject, input, status, seconds, message``) is written atomically,
  also when the run is interrupted, and the caller exits non-zero if any item failed.

Item functions write every output through :func:`wholebrain.io.atomic_output` (or
:func:`~wholebrain.io.save_volume`, which uses it), so an item that fails or is killed leaves
no half-written file, and they overwrite: an item runs only when its outputs are incomplete
or ``force`` was given.

This module imports only the standard library at load time, so worker processes can limit
their threads before numpy or ITK start theirs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from wholebrain.errors import InputError, WholebrainError

__all__ = [
    "SUMMARY_COLUMNS",
    "CohortReport",
    "ItemFunction",
    "ItemResult",
    "ItemT",
    "Status",
    "WorkItem",
    "check_unique_outputs",
    "folder_lock",
    "format_result",
    "parse_shard",
    "run_cohort",
    "shard_items",
    "summary_path",
]

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]
SUMMARY_COLUMNS = ("subject", "input", "status", "seconds", "message")
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
# Variables that size the thread pools of numpy's BLAS, OpenMP code (torch) and ITK (ANTs).
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


@dataclass(frozen=True)
class WorkItem:
    """One subject's work."""

    subject: str  # subject id: names the outputs and the summary row
    input: Path  # the input scan; items are sharded in sorted input order
    outputs: tuple[Path, ...]  # every file the item writes; all present = already done


ItemT = TypeVar("ItemT", bound=WorkItem)
"""A work item type: :class:`WorkItem` or a subclass that carries what its function needs
(say, the files to import), so the item, not a cohort-sized table, travels to the worker."""

ItemFunction = Callable[[ItemT], str]
"""Does one item and returns a short message for the summary (e.g. volumes, timings).

Must be picklable for ``jobs > 1``: a module-level function, or a ``functools.partial`` of one
with picklable (e.g. frozen dataclass) arguments."""


@dataclass(frozen=True)
class ItemResult:
    """What happened to one item."""

    item: WorkItem  # the item
    status: Status  # done, skipped or failed
    seconds: float  # wall time of the item function (0 when skipped)
    message: str  # the function's message, or the error in one line
    traceback: str = ""  # of an unexpected exception, for --debug; "" otherwise


@dataclass(frozen=True)
class CohortReport:
    """The results of one run, in sharded (sorted input) order."""

    results: tuple[ItemResult, ...]  # one per item of the shard
    summary: Path  # the summary TSV written
    total: int  # items before sharding
    shard: tuple[int, int] | None  # (i, n) or None

    def count(self, status: Status) -> int:
        """Number of items with that status."""
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> tuple[ItemResult, ...]:
        """The failed items."""
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def succeeded(self) -> tuple[ItemResult, ...]:
        """Items whose outputs are complete: done now or skipped as done before."""
        return tuple(r for r in self.results if r.status != "failed")

    def describe(self) -> str:
        """One line, e.g. ``"5 subjects (shard 2/4 of 20): 3 done, 1 skipped, 1 failed"``."""
        where = f" (shard {self.shard[0]}/{self.shard[1]} of {self.total})" if self.shard else ""
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("done", "skipped", "failed"))
        n = len(self.results)
        return f"{n} subject{'s' if n != 1 else ''}{where}: {counts}"


# --- planning -------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: the 2nd of 8 shards (1-based, as SLURM array ids usually are).

    Raises:
        InputError: not two integers ``i/n`` with ``1 <= i <= n``.
    """
    match = _SHARD.fullmatch(text)
    if match is not None:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count:
            return index, count
    raise InputError(
        "--shard",
        "i/n with 1 <= i <= n (the i-th of n parts of the cohort, e.g. 2/8)",
        repr(text),
        "e.g. in a SLURM array job --array=1-8 pass --shard ${SLURM_ARRAY_TASK_ID}/8",
    )


def shard_items(items: Iterable[ItemT], shard: tuple[int, int] | None) -> list[ItemT]:
    """The items of shard ``(i, n)``: every n-th of the sorted items, from the i-th.

    Sorting by input path (then subject) makes the split independent of the order in which
    inputs were listed or found; taking every n-th item rather than a block spreads similar
    (neighbouring) subjects over the shards. ``shard=None`` keeps all items, sorted.
    """
    ordered = sorted(items, key=lambda item: (str(item.input), item.subject))
    if shard is None:
        return ordered
    index, count = shard
    return ordered[index - 1 :: count]


def check_unique_outputs(items: Sequence[WorkItem]) -> None:
    """Check that no two items write the same file.

    Raises:
        InputError: two inputs map to one output (e.g. ``a/t1.nii.gz`` and ``b/t1.nii.gz``
            both give ``t1_...``), naming both.
    """
    owner: dict[Path, WorkItem] = {}
    for item in items:
        for path in item.outputs:
            other = owner.setdefault(path.absolute(), item)
            if other is not item:
                raise InputError(
                    item.input,
                    f"inputs with distinct output names, but it and {other.input} both write "
                    f"{path.name}",
                    f"the subject id {item.subject!r} twice",
                    "rename the files, or list the scans in a manifest CSV with one subject "
                    "id each (wholebrain dataset import) and pass that",
                )


def summary_path(outdir: Path, command: str, shard: tuple[int, int] | None) -> Path:
    """``<outdir>/wholebrain_<command>_summary[_shard-IofN].tsv``: one per shard, so shards
    running at the same time never write the same file."""
    suffix = f"_shard-{shard[0]}of{shard[1]}" if shard else ""
    return outdir / f"wholebrain_{command}_summary{suffix}.tsv"


# --- running ----------------------------------------------------------------------------------


def run_cohort(
    items: Sequence[ItemT],
    function: ItemFunction[ItemT],
    summary: Path,
    *,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    progress: bool = True,
    description: str = "subjects",
    on_result: Callable[[ItemResult], None] | None = None,
) -> CohortReport:
    """Run ``function`` on every item of the shard that is not done yet.

    Args:
        items: the whole cohort (sharding happens here, so every shard sees the same list).
        function: does one item, returns a message; see :data:`ItemFunction`.
        summary: the summary TSV to write (see :func:`summary_path`).
        jobs: number of worker processes; 1 runs in this process.
        shard: ``(i, n)`` from :func:`parse_shard`, or None for all items.
        force: run items whose outputs all exist too.
        progress: show a progress bar on stderr.
        description: the progress bar's label.
        on_result: called in this process with each result as it arrives (e.g. to print it).

    Returns:
        The report; its summary TSV is written. It lists every item of the shard in sorted
        input order; the caller should exit non-zero when ``report.failed`` is not empty.

    Raises:
        InputError: ``jobs`` < 1, two items write the same file, or the summary cannot be
            written.
    """
    from tqdm import tqdm

    if jobs < 1:
        raise InputError("--jobs", "a number of processes >= 1", str(jobs), "pass e.g. --jobs 4")
    check_unique_outputs(items)
    selected = shard_items(items, shard)
    results: dict[int, ItemResult] = {}
    todo: list[int] = []
    for position, item in enumerate(selected):
        if not force and item.outputs and all(p.exists() for p in item.outputs):
            results[position] = ItemResult(item, "skipped", 0.0, "outputs exist (--force redoes)")
        else:
            todo.append(position)

    bar = tqdm(
        total=len(selected),
        initial=len(results),
        desc=description,
        unit="subject",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )

    def record(position: int, result: ItemResult) -> None:
        results[position] = result
        if result.traceback:
            log.debug("%s failed:\n%s", result.item.subject, result.traceback)
        if on_result is not None:
            on_result(result)
        bar.update(1)

    if on_result is not None:
        for position in sorted(results):
            on_result(results[position])
    try:
        with bar:
            if jobs == 1 or len(todo) <= 1:
                for position in todo:
                    record(position, _run_item(function, selected[position]))
            else:
                _run_in_processes(function, selected, todo, jobs, record)
    finally:
        # Also when interrupted: the summary then lists what finished (a rerun does the rest).
        report = CohortReport(
            tuple(results[p] for p in sorted(results)), summary, len(items), shard
        )
        _write_summary(report)
    return report


def _run_in_processes(
    function: ItemFunction[ItemT],
    selected: Sequence[ItemT],
    todo: Sequence[int],
    jobs: int,
    record: Callable[[int, ItemResult], None],
) -> None:
    workers = min(jobs, len(todo))
    threads = max(1, (os.cpu_count() or 1) // workers)
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_limit_threads,
        initargs=(threads,),
    )
    try:
        futures: dict[Future[ItemResult], int] = {
            executor.submit(_run_item, function, selected[p]): p for p in todo
        }
        for future in as_completed(futures):
            position = futures[future]
            try:
                result = future.result()
            except Exception as error:  # the worker died (memory, signal) or pickling failed
                result = ItemResult(
                    selected[position], "failed", 0.0, _one_line(error), traceback.format_exc()
                )
            record(position, result)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _limit_threads(threads: int) -> None:
    """Worker initializer: share the cores among the workers (unless the user chose)."""
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def _run_item(function: ItemFunction[ItemT], item: ItemT) -> ItemResult:
    """Run one item, turning any exception into a failed result (runs in the worker)."""
    start = time.perf_counter()
    try:
        message = function(item)
    except WholebrainError as error:
        return ItemResult(item, "failed", time.perf_counter() - start, _one_line(error))
    except Exception as error:
        return ItemResult(
            item, "failed", time.perf_counter() - start, _one_line(error), traceback.format_exc()
        )
    return ItemResult(item, "done", time.perf_counter() - start, _clean(message))


def _one_line(error: BaseException) -> str:
    text = _clean(str(error))
    if isinstance(error, WholebrainError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _clean(text: str) -> str:
    """One line without tabs: the summary is a TSV."""
    return " ".join(str(text).split())


def format_result(result: ItemResult) -> str:
    """A one-line account of a result, e.g. ``"sub-01: done in 12.3 s (CSF 0.3 L, ...)"``."""
    if result.status == "skipped":
        return f"{result.item.subject}: skipped, {result.message}"
    if result.status == "failed":
        return f"{result.item.subject}: FAILED after {result.seconds:.1f} s: {result.message}"
    detail = f" ({result.message})" if result.message else ""
    return f"{result.item.subject}: done in {result.seconds:.1f} s{detail}"


def _write_summary(report: CohortReport) -> None:
    from wholebrain.io import atomic_output

    lines = ["\t".join(SUMMARY_COLUMNS)]
    for r in report.results:
        cells = (r.item.subject, str(r.item.input), r.status, f"{r.seconds:.2f}", r.message)
        lines.append("\t".join(_clean(c) for c in cells))
    with atomic_output(report.summary, force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while the block runs (no lock file is left behind).

    Serialises the read-modify-write of a file that concurrent shards share (the manifest in
    the output folder). Where the platform or file system has no locks (Windows, some network
    file systems) it logs at debug and runs unlocked; a rerun without ``--shard``, which skips
    every subject, then repairs whatever a race lost.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:
            log.debug("%s: no lock (%s); continuing unlocked", folder, error)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
