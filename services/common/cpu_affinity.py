"""Pinning a server process to chosen CPUs (`MODELYARD_CPU_AFFINITY`, `--cpu-affinity`).

A call crosses several threads of a server: grpc's poller takes it, a thread of the RPC pool runs
it, and grpc sends the reply. Each hand-off wakes a thread, and when the kernel puts that thread
on another CPU, the wake-up is an inter-processor interrupt (on a VM, an exit to the host too).
Python runs the handlers themselves under one GIL, so a server uses about one core however many
it may run on. Where it shares a few cores with its clients, pinning it to one CPU keeps every
hand-off on that CPU: on the 2-core benchmark machine `log_metric` went from 1,489 to 1,841
calls/s and 8 concurrent callers from 2,206 to 3,423 calls/s (bench/tracking_placement.py).

In Kubernetes, leave this unset and let the kubelet pin the container instead (whole CPUs in a
Guaranteed pod under the static CPU manager policy): CPU numbers chosen here would collide
between pods on a node.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

_EXAMPLES = "such as 0, 0-3 or 0,2-3"


def parse_cpus(text: str) -> frozenset[int]:
    """'0,2-3' -> {0, 2, 3}, checked against the CPUs this process may run on."""
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("pinning to CPUs needs Linux; leave the CPU affinity unset here")
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or int(high or low) < int(low):
            raise ValueError(f"{text!r} is not a list of CPUs {_EXAMPLES}")
        cpus.update(range(int(low), int(high or low) + 1))
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ValueError(
            f"CPUs {format_cpus(cpus - allowed)} are not available to this process; "
            f"choose from {format_cpus(allowed)}"
        )
    return frozenset(cpus)


def format_cpus(cpus: Iterable[int]) -> str:
    """{0, 2, 3} -> '0,2-3'."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def pin_process(cpus: frozenset[int]) -> None:
    """Pin every thread of this process, and so every thread they start later, to `cpus`."""
    pinned: set[int] = set()
    while threads := {int(t.name) for t in Path("/proc/self/task").iterdir()} - pinned:
        for tid in threads:  # a thread started meanwhile shows in the next listing
            with suppress(ProcessLookupError):  # it ended meanwhile
                os.sched_setaffinity(tid, cpus)
        pinned |= threads
