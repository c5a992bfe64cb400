"""Where each chunk of the ensemble launcher trains: the devices and the placement rule.

The devices are ``hydra.launcher.devices``: null (one device: the CPU, or ``cuda:0`` with
``trainer=gpu`` when CUDA is there), a count N (the first N CUDA devices with ``trainer=gpu``,
else N workers on the CPU) or a list of names (``[cuda:0, cuda:2]``, ``[cpu, cpu]``).  Each
device has a memory budget: ``hydra.launcher.memory_budget_mb``, and on a CUDA device at most
90 % of its free memory (``torch.cuda.mem_get_info``); chunks are sized for the smallest.

The rule (``plan``): longest processing time first.  Chunks are taken by estimated cost,
largest first (ties: in sweep order), each going to the device with the least cost placed so
far (ties: the first device).  Deterministic, and within 4/3 of the best makespan.  Each
device's worker then trains its chunks in the order they were placed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FREE_FRACTION = 0.9  # of a CUDA device's free memory, at most, for one chunk


@dataclass(frozen=True)
class Device:
    name: str           # a torch device name: "cpu", "cuda:1"
    budget_bytes: int   # memory for one chunk on it


def device_names(spec, accelerator: str, cuda_count: int) -> list[str]:
    """``hydra.launcher.devices`` (None, a count or a list of names) as device names."""
    gpu = accelerator in ("gpu", "cuda", "auto") and cuda_count > 0
    if spec is None:
        return ["cuda:0" if gpu else "cpu"]
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ValueError(f"a device count must be at least 1, not {spec}")
        if not gpu:
            return ["cpu"] * spec
        if spec > cuda_count:
            raise ValueError(f"{spec} CUDA devices asked for, {cuda_count} visible")
        return [f"cuda:{i}" for i in range(spec)]
    names = [str(n) for n in spec]
    if not names:
        raise ValueError("an empty list of devices")
    for n in names:
        kind, _, index = n.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
            raise ValueError(f"device {n!r}: cpu, cuda or cuda:<index> is expected")
        if kind == "cuda" and int(index or 0) >= cuda_count:
            raise ValueError(f"device {n!r}: {cuda_count} CUDA device(s) visible")
    return names


def budgets(names: Sequence[str], budget_mb: float, free_bytes=None) -> list[Device]:
    """Each device with its budget; ``free_bytes(name)`` gives a CUDA device's free memory
    (``torch.cuda.mem_get_info`` by default), None where it cannot tell."""
    if free_bytes is None:
        free_bytes = cuda_free_bytes
    out = []
    for n in names:
        budget = int(budget_mb * 2**20)
        free = free_bytes(n) if n.startswith("cuda") else None
        if free is not None:
            budget = min(budget, int(FREE_FRACTION * free))
        out.append(Device(n, max(budget, 1)))
    return out


def cuda_free_bytes(name: str) -> int | None:
    import torch

    try:
        return int(torch.cuda.mem_get_info(torch.device(name))[0])
    except (RuntimeError, AssertionError, ValueError):  # no CUDA, or not initialisable
        return None


def plan(costs: Sequence[float], n_devices: int) -> list[list[int]]:
    """Chunk indices per device, longest processing time first (module docstring)."""
    if n_devices < 1:
        raise ValueError("no device to place chunks on")
    loads = [0.0] * n_devices
    placed: list[list[int]] = [[] for _ in range(n_devices)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        d = min(range(n_devices), key=lambda d: (loads[d], d))
        placed[d].append(i)
        loads[d] += costs[i]
    return placed


def chunk_cost(members: int, member_bytes: int, steps: int) -> float:
    """A chunk's estimated cost: its bytes touched per step (members x the memory estimate,
    which grows with parameters and activations as the arithmetic does) x its steps."""
    return float(members) * float(member_bytes) * float(max(steps, 1))


# ---- worker processes on the CPU ------------------------------------------------------------
# devices=null on the CPU: one worker process per this many stacked members of a batch (at most
# one per core).  Measured (2-core VM): 8 S4 nets cost a process 0.9 ms a step against 1.1 ms
# for 16, and a member's records are about 0.2 s of Python; below 16 members a second process
# (its imports, ~6 s of a core) does not pay for itself.
MEMBERS_PER_WORKER = 8


def usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_workers(spec, members: int, cores: int) -> int:
    """How many processes train a batch's ``members`` stacked members on the CPU: with
    ``devices`` null one per core, but at most one per ``MEMBERS_PER_WORKER`` members; with a
    count N (or a list of N names) N; never more than there are members."""
    if spec is None:
        wanted = min(cores, members // MEMBERS_PER_WORKER)
    elif isinstance(spec, int) and not isinstance(spec, bool):
        wanted = spec
    else:
        wanted = len(list(spec))
    return max(1, min(wanted, members))


def split_groups(sizes: Sequence[int], workers: int) -> list[tuple[int, int, int]]:
    """Each group (of ``sizes[g]`` members) cut into parts for ``workers`` processes:
    ``(group, start, stop)`` slices of about ``sum(sizes) / workers`` members, a group's
    members in equal shares (a 60-member group over 2 workers: 30 and 30)."""
    total = sum(sizes)
    target = max(1, -(-total // max(1, workers)))
    parts = []
    for g, n in enumerate(sizes):
        pieces = max(1, -(-n // target))
        bounds = [round(k * n / pieces) for k in range(pieces + 1)]
        parts += [(g, a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    return parts
