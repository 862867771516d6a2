"""What `make run` wrote to `.errands/local.json`: addresses and tokens for the local system."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def local_state(
    *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[dict[str, Any], Path] | None:
    """The nearest `.errands/local.json` from the working directory upwards, with its path."""
    environ = os.environ if environ is None else environ
    state_dir = environ.get("ERRANDS_STATE_DIR", ".errands")
    start = (cwd or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        path = directory / state_dir / "local.json"
        if path.is_file():
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(path.read_text())
                if isinstance(state, dict):
                    return state, path
    return None
