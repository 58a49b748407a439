"""The header every benchmark prints: what ran, when, on which machine, with which versions.

A number without its machine and load is not a result; each script calls :func:`header`
before measuring.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("unknown CPU" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def gpu_name() -> str:
    """The first CUDA device's name, or "none"."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def header(title: str, argv: list[str], versions: dict[str, str] | None = None) -> None:
    """Print the benchmark's title, date, command, machine, load and library versions."""
    import numpy
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    libraries = {"python": platform.python_version(), "numpy": numpy.__version__}
    libraries["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    libraries.update(versions or {})
    print(f"# {title}")
    print(f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"command:  python {' '.join(argv)}")
    print(f"machine:  {cpu_name()}, {cores} cores usable, {platform.system()} {platform.machine()}")
    print(f"gpu:      {gpu_name()}")
    print(f"load:     {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, before the run)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in libraries.items()))
    print()
