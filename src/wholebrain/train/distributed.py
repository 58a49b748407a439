"""One process or many: the process group torchrun sets up, the device, rank-0-only writing.

Under ``torchrun`` (single node or multi-node) the environment holds ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; :func:`setup` joins the process group from them
(NCCL on GPUs, gloo on CPU) and gives each process its GPU (``cuda:LOCAL_RANK``). Without
them it is a plain single process and every collective here is a no-op.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wholebrain.errors import InputError

__all__ = ["Distributed", "setup"]

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes."""

    rank: int  # global rank, 0..world_size-1
    world_size: int  # processes in all
    local_rank: int  # rank on this node (picks the GPU)
    local_world_size: int  # processes on this node
    device: torch.device  # where this process trains
    initialised: bool  # whether this call joined a process group (and must leave it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (picklable values)."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self.initialised and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise InputError(
            f"environment variable {name}", "an integer (set by torchrun)", repr(value), "unset it"
        ) from None


def _device(name: str, local_rank: int) -> torch.device:
    if name not in DEVICES:
        raise InputError(None, f"a device among {', '.join(DEVICES)}", repr(name), "pick one")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                None, "a CUDA GPU for --device cuda", "none available", "use --device cpu or auto"
            )
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                None,
                f"a GPU per process (local rank {local_rank})",
                f"{torch.cuda.device_count()} GPU(s)",
                "start at most one process per GPU (torchrun --nproc_per_node)",
            )
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "auto", *, timeout_min: float = 60.0, cpu_threads: int = 0) -> Distributed:
    """Join the torchrun process group if there is one, pick the device, set CPU threads.

    Args:
        device: "auto" (a GPU when there is one), "cpu" or "cuda".
        timeout_min: how long a collective may wait (rank 0 builds the cache meanwhile).
        cpu_threads: torch threads on CPU; 0 = the cores shared among this node's processes.

    Raises:
        InputError: an unavailable device, or bad torchrun variables.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    where = _device(device, local_rank)
    if where.type == "cpu" and (cpu_threads or local_world_size > 1):
        # Processes sharing a node share its cores; oversubscribed threads spin and crawl.
        threads = cpu_threads or max(1, (os.cpu_count() or 1) // local_world_size)
        torch.set_num_threads(threads)
    initialised = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if where.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            timeout=datetime.timedelta(minutes=timeout_min),
            device_id=where if where.type == "cuda" else None,
        )
        initialised = True
        log.debug("rank %d of %d joined the %s process group", rank, world_size, backend)
    return Distributed(rank, world_size, local_rank, local_world_size, where, initialised)
