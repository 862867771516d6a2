"""A slower machine, emulated: this process and everything it starts confined to a share of the CPUs.

A Linux CPU control group with a quota of `cores` CPUs' worth of time per 10 ms period: every
process of the benchmark (the embedded stack, the services, the load generator) shares that much,
so the system has less CPU per second as on a slower machine of the same kind, and a process that
has used the group's share waits at most one short period. (A busy loop pinned to each core, tried
before, halves what each process gets but makes every wake-up wait for the loop's time slice too,
which no slower machine does.)

Needs root and a writable cgroup file system (v2 `cpu.max` or v1 `cpu.cfs_quota_us`); where there
is none the benchmark says so and stops, rather than measuring the machine as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

PERIOD_US = 10_000
_ROOT = Path("/sys/fs/cgroup")


def confine(cores: float, *, name: str = "errands-bench") -> Path:
    """Move this process into a control group limited to `cores` CPUs; returns the group's directory.

    Children started afterwards inherit the group. Raises RuntimeError where it cannot be done.
    """
    if cores <= 0:
        raise ValueError("cores must be positive")
    quota = max(1000, round(cores * PERIOD_US))
    try:
        if (_ROOT / "cgroup.controllers").exists():  # v2, one hierarchy
            group = _ROOT / name
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:  # v1: the cpu controller's own hierarchy
            group = _ROOT / "cpu" / name
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise RuntimeError(f"cannot confine the benchmark to {cores} CPUs here: {exc}") from exc
    return group


def machine_busy_s() -> float:
    """CPU time the machine has spent busy so far, all CPUs together, in seconds (from /proc/stat).

    Its difference over a run is what the whole system under test used, on a machine doing nothing
    else: the room a slower machine would have is what is left of its CPUs at that pace.
    """
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
