"""Each reliability module runs on a private stack of its own: see `rig.py`."""

from tests.reliability.rig import pytest_runtest_makereport, rig

__all__ = ["pytest_runtest_makereport", "rig"]
