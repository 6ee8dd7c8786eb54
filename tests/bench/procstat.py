"""Where the CPU went: per-process CPU time from /proc, between two snapshots.

Everything (load generator, five services, baseline, PostgreSQL, Redis) shares
the same cores, so a scenario's CPU bill per request says more than its req/s.
Linux only; elsewhere the snapshots are empty and the report says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Processes we did not start but whose CPU belongs to the bill, found by command name.
COMM_GROUPS: Mapping[str, str] = {"postgres": "postgres", "redis-server": "redis"}
# Everything else that ran meanwhile: other work on a shared machine, kernel threads.
OTHER_PROCESSES = "other processes"


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    # After the command name: state is field 3 (index 0 here); utime, stime are fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (tells a reused pid apart)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(raw.rpartition(")")[2].split()[19])


def _system_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    try:
        first = (_PROC / "stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    idle = values[3] + values[4]
    return (total - idle) / _TICK, total / _TICK


def _all_processes() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds (one pass over /proc)."""
    found: dict[int, tuple[str, float]] = {}
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, tail = raw.rpartition(")")
        fields = tail.split()
        found[int(entry.name)] = (head.partition("(")[2], (int(fields[11]) + int(fields[12])) / _TICK)
    return found


@dataclass(frozen=True)
class Snapshot:
    at: float
    per_pid: dict[int, tuple[str, float]]
    busy: float
    total: float


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds per group of processes over a wall-clock window."""

    wall: float
    groups: dict[str, float]
    machine_busy: float
    cores: int

    @property
    def unattributed(self) -> float:
        """Busy time charged to no process: interrupts and softirq (loopback TCP lands there)."""
        return max(0.0, self.machine_busy - sum(self.groups.values()))

    def share_of_one_core(self, group: str) -> float:
        return self.groups.get(group, 0.0) / self.wall if self.wall > 0 else 0.0

    def share_of_busy(self, group: str) -> float:
        return self.groups.get(group, 0.0) / self.machine_busy if self.machine_busy > 0 else 0.0

    @property
    def machine_utilisation(self) -> float:
        return self.machine_busy / (self.wall * self.cores) if self.wall > 0 and self.cores else 0.0


class CpuMeter:
    """Snapshots of the CPU time of every process: ours by pid (the services, the
    baseline, the load generator), PostgreSQL and Redis by command name, the rest
    as "other processes"."""

    def __init__(self) -> None:
        self.named: dict[int, str] = {}

    def track(self, group: str, pid: int) -> None:
        self.named[pid] = group

    def snapshot(self) -> Snapshot:
        per_pid: dict[int, tuple[str, float]] = {}
        for pid, (comm, seconds) in _all_processes().items():
            group = self.named.get(pid) or COMM_GROUPS.get(comm) or OTHER_PROCESSES
            per_pid[pid] = (group, seconds)
        busy, total = _system_times()
        return Snapshot(time.perf_counter(), per_pid, busy, total)

    @staticmethod
    def usage(start: Snapshot, end: Snapshot) -> CpuUsage:
        groups: dict[str, float] = {}
        for pid, (group, seconds) in end.per_pid.items():
            before = start.per_pid.get(pid, (group, 0.0))[1]  # a process born in the window counts whole
            groups[group] = groups.get(group, 0.0) + max(0.0, seconds - before)
        return CpuUsage(end.at - start.at, groups, max(0.0, end.busy - start.busy), os.cpu_count() or 1)


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a process since it started, in MiB."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
