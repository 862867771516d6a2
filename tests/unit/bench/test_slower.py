"""The slower-machine emulation: a process confined to a CPU quota, with its children."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.slower import confine, machine_busy_s

CHILD = """
import sys
from bench.slower import confine
try:
    group = confine(0.5, name="errands-bench-test")
except RuntimeError as exc:
    print("refused", exc)
    sys.exit(3)
print(group)
print(open("/proc/self/cgroup").read())
"""


def test_a_confined_process_is_in_its_group_with_the_quota() -> None:
    run = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=False)
    if run.returncode == 3:
        pytest.skip(f"this machine allows no CPU control group: {run.stdout.strip()}")
    assert run.returncode == 0, run.stderr
    group, membership = run.stdout.split("\n", 1)
    assert "errands-bench-test" in membership
    v2 = Path(group, "cpu.max")
    if v2.exists():
        assert v2.read_text().split() == ["5000", "10000"]
    else:
        assert Path(group, "cpu.cfs_quota_us").read_text().strip() == "5000"
        assert Path(group, "cpu.cfs_period_us").read_text().strip() == "10000"


def test_no_quota_below_nothing() -> None:
    with pytest.raises(ValueError, match="positive"):
        confine(0)


def test_the_machine_busy_time_only_grows() -> None:
    before = machine_busy_s()
    sum(i * i for i in range(200_000))
    assert machine_busy_s() >= before > 0
