"""The cohort runner: skipping, sharding, failures, summary, atomic outputs, processes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from wholebrain.cohort import (
    SUMMARY_COLUMNS,
    ItemResult,
    WorkItem,
    check_unique_outputs,
    folder_lock,
    format_result,
    parse_shard,
    run_cohort,
    shard_items,
    summary_path,
)
from wholebrain.errors import InputError
from wholebrain.io import atomic_output


def _items(folder: Path, names: list[str]) -> list[WorkItem]:
    return [
        WorkItem(name, folder / f"{name}.nii.gz", (folder / "out" / f"{name}.txt",))
        for name in names
    ]


def write_subject(item: WorkItem) -> str:
    """Module level: picklable for the process pool."""
    if item.subject.startswith("bad"):
        raise InputError(item.input, "a good scan", "a bad one", "replace it")
    if item.subject.startswith("bug"):
        raise ZeroDivisionError("division by zero")
    with atomic_output(item.outputs[0], force=True) as tmp:
        tmp.write_text(item.subject)
    return f"wrote {item.subject}"


def _read_summary(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        assert tuple(reader.fieldnames or ()) == SUMMARY_COLUMNS
        return list(reader)


def test_runs_items_then_skips_them_unless_forced(tmp_path: Path) -> None:
    items = _items(tmp_path, ["b", "a", "c"])
    summary = tmp_path / "out" / "summary.tsv"
    report = run_cohort(items, write_subject, summary, progress=False)
    assert [r.item.subject for r in report.results] == ["a", "b", "c"]  # sorted by input
    assert [r.status for r in report.results] == ["done"] * 3
    assert (tmp_path / "out" / "b.txt").read_text() == "b"
    assert report.describe() == "3 subjects: 3 done, 0 skipped, 0 failed"

    (tmp_path / "out" / "c.txt").unlink()
    again = run_cohort(items, write_subject, summary, progress=False)
    assert [r.status for r in again.results] == ["skipped", "skipped", "done"]
    assert [r["status"] for r in _read_summary(summary)] == ["skipped", "skipped", "done"]

    forced = run_cohort(items, write_subject, summary, progress=False, force=True)
    assert forced.count("done") == 3


def test_an_item_with_some_outputs_missing_runs_again(tmp_path: Path) -> None:
    item = WorkItem("a", tmp_path / "a.nii.gz", (tmp_path / "a.txt", tmp_path / "a.tsv"))
    (tmp_path / "a.txt").write_text("stale")
    calls = []

    def function(work: WorkItem) -> str:
        calls.append(work.subject)
        return ""

    report = run_cohort([item], function, tmp_path / "s.tsv", progress=False)
    assert calls == ["a"] and report.count("done") == 1


@pytest.mark.parametrize("count", [1, 2, 3, 7, 12])
def test_shards_cover_every_item_exactly_once(tmp_path: Path, count: int) -> None:
    items = _items(tmp_path, [f"s{k:02d}" for k in range(10)])
    shuffled = items[3:] + items[:3]
    seen = []
    for index in range(1, count + 1):
        part = shard_items(items, (index, count))
        assert part == shard_items(shuffled, (index, count))  # input order does not matter
        seen += [item.subject for item in part]
    assert sorted(seen) == [item.subject for item in items]
    assert len(seen) == len(set(seen))


def test_a_shard_runs_and_reports_only_its_items(tmp_path: Path) -> None:
    items = _items(tmp_path, ["a", "b", "c", "d", "e"])
    out = summary_path(tmp_path / "out", "partial", (2, 2))
    assert out.name == "wholebrain_partial_summary_shard-2of2.tsv"
    report = run_cohort(items, write_subject, out, shard=(2, 2), progress=False)
    assert [r.item.subject for r in report.results] == ["b", "d"]
    assert report.describe() == "2 subjects (shard 2/2 of 5): 2 done, 0 skipped, 0 failed"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.txt")) == ["b.txt", "d.txt"]
    assert summary_path(tmp_path, "partial", None).name == "wholebrain_partial_summary.tsv"


@pytest.mark.parametrize("text", ["1/4", "4/4", " 2 / 8 "])
def test_parse_shard_accepts(text: str) -> None:
    index, count = parse_shard(text)
    assert 1 <= index <= count


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "2/", "a/b", "-1/4", "1/0", "2of4", ""])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(InputError, match=r"--shard: expected i/n with 1 <= i <= n.*SLURM"):
        parse_shard(text)


def test_one_failure_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = _items(tmp_path, ["a", "bad", "bug", "c"])
    summary = tmp_path / "out" / "summary.tsv"
    seen: list[ItemResult] = []
    with caplog.at_level(logging.DEBUG, logger="wholebrain.cohort"):
        report = run_cohort(items, write_subject, summary, progress=False, on_result=seen.append)
    assert [r.status for r in report.results] == ["done", "failed", "failed", "done"]
    assert len(report.failed) == 2 and len(report.succeeded) == 2
    assert [r.item.subject for r in seen] == ["a", "bad", "bug", "c"]
    rows = _read_summary(summary)
    assert [(r["subject"], r["status"]) for r in rows] == [
        ("a", "done"),
        ("bad", "failed"),
        ("bug", "failed"),
        ("c", "done"),
    ]
    assert rows[0]["input"] == str(tmp_path / "a.nii.gz") and rows[0]["message"] == "wrote a"
    assert rows[1]["message"].endswith("expected a good scan, found a bad one; replace it")
    assert rows[2]["message"] == "ZeroDivisionError: division by zero"  # type + message
    assert all(float(r["seconds"]) >= 0 for r in rows)
    # the traceback of the unexpected error is logged at debug, the input error's is not
    tracebacks = [r.message for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1 and "bug failed" in tracebacks[0]
    assert "FAILED after" in format_result(report.results[1])
    assert format_result(report.results[0]).startswith("a: done in ")


def test_nothing_half_written_when_the_item_raises_mid_write(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.txt"

    def crash(item: WorkItem) -> str:
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
        return ""  # pragma: no cover

    item = WorkItem("a", tmp_path / "a.nii.gz", (target,))
    report = run_cohort([item], crash, tmp_path / "out" / "summary.tsv", progress=False)
    assert report.results[0].status == "failed"
    assert report.results[0].message == "OSError: disk full"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.tsv"]


def test_summary_is_written_when_interrupted(tmp_path: Path) -> None:
    def interrupt(item: WorkItem) -> str:
        if item.subject == "b":
            raise KeyboardInterrupt
        return write_subject(item)

    summary = tmp_path / "summary.tsv"
    with pytest.raises(KeyboardInterrupt):
        run_cohort(_items(tmp_path, ["a", "b", "c"]), interrupt, summary, progress=False)
    assert [(r["subject"], r["status"]) for r in _read_summary(summary)] == [("a", "done")]


def test_two_processes(tmp_path: Path) -> None:
    items = _items(tmp_path, ["a", "bad", "c", "d"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "d.txt").write_text("d")
    report = run_cohort(items, write_subject, tmp_path / "out" / "s.tsv", jobs=2, progress=False)
    assert [r.status for r in report.results] == ["done", "failed", "done", "skipped"]
    assert (tmp_path / "out" / "c.txt").read_text() == "c"
    assert "found a bad one" in report.results[1].message


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--jobs: expected a number of processes >= 1"):
        run_cohort(_items(tmp_path, ["a"]), write_subject, tmp_path / "s.tsv", jobs=0)


def test_two_items_writing_one_file_are_refused(tmp_path: Path) -> None:
    items = [
        WorkItem("t1", tmp_path / "x" / "t1.nii.gz", (tmp_path / "out" / "t1.txt",)),
        WorkItem("t1", tmp_path / "y" / "t1.nii.gz", (tmp_path / "out" / "t1.txt",)),
    ]
    with pytest.raises(InputError, match=r"y/t1.nii.gz: expected inputs with distinct output"):
        check_unique_outputs(items)
    with pytest.raises(InputError, match="manifest CSV with one subject id each"):
        run_cohort(items, write_subject, tmp_path / "s.tsv", progress=False)
    assert not (tmp_path / "s.tsv").exists()  # refused before any work


def test_folder_lock_is_reentrant_across_calls(tmp_path: Path) -> None:
    for _ in range(2):
        with folder_lock(tmp_path / "new"):
            (tmp_path / "new" / "f").write_text("x")
    assert list((tmp_path / "new").iterdir()) == [tmp_path / "new" / "f"]  # no lock file left
