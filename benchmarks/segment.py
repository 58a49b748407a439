"""Speed and memory of ``wholebrain segment``: file in -> files out, per scan, fresh process.

    python benchmarks/segment.py                       # shipped model, CPU or the GPU if any
    python benchmarks/segment.py --repeats 3 --no-ants
    python benchmarks/segment.py --model out/runs/shipped-cpu/best.pt --device cpu

Each scan is segmented in its own Python process (so its peak memory is its own): the
process loads the model once (reported apart), then runs ``segment.run.segment_subject``
``--repeats`` times on the scan: read the file, conform, network, back to the scan's grid,
write the four output files (labels, label table, volumes, QC picture). The table reports
the median of the repeats and the stages of the last one; peak RSS is the process's maximum
resident memory (Python, torch and the model included).

For scale, the same run times one ANTs SyN registration (antspyx, its default "SyN"
preset) of a Mindboggle atlas brain to another, plus moving its labels: what multi-atlas
segmentation pays per atlas (joint label fusion needs one per atlas).

Targets (issue 5): <= 20 s per 1 mm 256³ scan on a 2-core CPU with peak RAM <= 4 GB;
<= 2 s on an H100.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCANS = {
    "ixi002 (whole head, 256³ 1 mm LIA, mgz)": DATA / "unlabelled-t1w" / "ixi002_t1w.mgz",
    "brainchop (whole head, 256³ 1 mm LIA)": DATA / "unlabelled-t1w" / "brainchop_t1w.nii.gz",
    "chris (whole head, 188x256x190 0.88 mm)": DATA / "unlabelled-t1w" / "chris_t1w.nii.gz",
    "mindboggle sub-01 (brain, 256x256x160 ASL)": DATA
    / "mindboggle-oasis-trt-20-dev"
    / "sub-01"
    / "t1w_brain.nii.gz",
}


def worker(scan: str, model: str | None, device: str, repeats: int) -> None:
    """Runs in the child: load the model, segment ``scan`` ``repeats`` times, print JSON."""
    import resource

    started = time.perf_counter()
    from wholebrain.data.layouts import output_stem
    from wholebrain.segment import run as job

    options = job.SegmentOptions(model=model, device=device)
    segmenter = job.segmenter(options)
    load = time.perf_counter() - started
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        scans = [(Path(scan), Path(), output_stem(scan))]
        item = job.plan_segment(scans, Path(folder))[0]
        for _ in range(repeats):
            began = time.perf_counter()
            message = job.segment_subject(options, item)
            if segmenter.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - began)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux
    gpu_gb = None
    if segmenter.device.type == "cuda":
        import torch

        gpu_gb = torch.cuda.max_memory_allocated() / 1024**3
    print(
        json.dumps(
            {
                "load_s": load,
                "seconds": seconds,
                "message": message,
                "peak_gb": peak_gb,
                "gpu_gb": gpu_gb,
                "device": str(segmenter.device),
                "precision": str(segmenter.dtype or "float32"),
            }
        )
    )


def ants_syn_seconds() -> tuple[float, str]:
    """One SyN registration of Mindboggle sub-02 onto sub-01 (+ moving its labels)."""
    import ants

    atlas = DATA / "mindboggle-oasis-trt-20-dev"
    fixed = ants.image_read(str(atlas / "sub-01" / "t1w_brain.nii.gz"))
    moving = ants.image_read(str(atlas / "sub-02" / "t1w_brain.nii.gz"))
    labels = ants.image_read(str(atlas / "sub-02" / "labels_dkt31_aseg.nii.gz"))
    started = time.perf_counter()
    registration = ants.registration(fixed, moving, type_of_transform="SyN")
    ants.apply_transforms(fixed, labels, registration["fwdtransforms"], interpolator="genericLabel")
    return time.perf_counter() - started, f"antspyx {ants.__version__}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=2, help="segmentations per scan")
    parser.add_argument("--no-ants", action="store_true", help="skip the SyN registration")
    parser.add_argument("--worker", nargs=1, metavar="SCAN", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.model, args.device, args.repeats)
        return 0

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import header

    header(
        "wholebrain segment benchmark (file in -> 4 files out)", ["benchmarks/segment.py", *argv]
    )
    scans = dict(SCANS)
    from wholebrain.errors import InputError
    from wholebrain.examples import icbm152_path

    try:  # the README's example (segment --example): nilearn's ICBM152 T1
        scans["icbm152 (README example, 197x233x189 1 mm)"] = icbm152_path("t1")
    except InputError as error:  # nilearn not installed, or its copy lacks the template
        print(f"skipped the README example: {error}")
    missing = [name for name, path in scans.items() if not path.is_file()]
    if missing:
        print(f"skipped (not in {DATA}): {', '.join(missing)}")
    print(
        f"{'scan':44} {'model load':>10} {'segment':>9} {'peak RSS':>9}  "
        f"{'device':8} stages of the last repeat"
    )
    for name, path in scans.items():
        if not path.is_file():
            continue
        command = [sys.executable, __file__, "--worker", str(path), "--device", args.device]
        command += ["--repeats", str(args.repeats)]
        if args.model:
            command += ["--model", args.model]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{name:44} FAILED: {done.stderr.strip().splitlines()[-1:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        median = statistics.median(result["seconds"])
        stages = result["message"].rsplit("(", 1)[-1].rstrip(")")
        memory = f"{result['peak_gb']:.2f} GB"
        if result["gpu_gb"] is not None:
            memory += f" (GPU {result['gpu_gb']:.2f} GB)"
        print(
            f"{name:44} {result['load_s']:9.1f}s {median:8.1f}s {memory:>9}  "
            f"{result['device']:8} {stages}; {result['precision']}"
        )
    print(f"(segment = median of {args.repeats} runs in one process after the model load)")
    if not args.no_ants:
        seconds, version = ants_syn_seconds()
        print()
        print(
            f"for scale: ANTs SyN, one atlas (Mindboggle sub-02 -> sub-01 brains + labels), "
            f"{version}: {seconds:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
