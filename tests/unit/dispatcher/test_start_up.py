"""What a starting dispatcher waits for before it joins its consumer group."""

from __future__ import annotations

import subprocess
import sys

from services.dispatcher.domain import matching


def test_the_dispatcher_imports_without_scipy_which_the_matcher_loads_beside_the_group_join() -> None:
    # A fresh interpreter, as `errands serve dispatcher` starts: everything the service imports
    # before it starts, and SciPy is not among it.
    code = (
        "import sys\n"
        "import errands.cli\n"
        "import services.dispatcher.bootstrap\n"
        "import shared.runtime\n"
        "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')))\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_loading_the_solvers_makes_scipy_importable_for_a_round() -> None:
    matching.load_solvers()
    assert "scipy.sparse.csgraph" in sys.modules and "scipy.spatial" in sys.modules
