"""What `make run` keeps in its state directory: `local.json` (addresses and tokens) and `keys.json`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The variables `make run` fills from `keys.json` unless the environment sets them.
KEY_VARIABLES = ("ERRANDS_CODE_KEY", "ERRANDS_DATA_KEY")


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


def local_keys(state_dir: Path, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keys for the services `make run` starts: those set in the environment, else the state directory's.

    The state directory's keys are random, made on first use into `keys.json` (readable by its owner
    only) and reused after, so codes handed out and data sealed in one run still check and open in the
    next. A damaged `keys.json` is an error, never silently replaced: that would orphan both.
    """
    environ = os.environ if environ is None else environ
    if all(environ.get(name) for name in KEY_VARIABLES):
        return {name: environ[name] for name in KEY_VARIABLES}
    path = state_dir / "keys.json"
    made = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in KEY_VARIABLES}
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Created with its final mode, and only if absent: keys once made are never overwritten.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = _read_keys(path)
    else:
        with os.fdopen(descriptor, "w") as file:
            json.dump(made, file, indent=2)
        stored = made
    return {name: environ.get(name) or stored[name] for name in KEY_VARIABLES}


def _read_keys(path: Path) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not JSON ({error}); restore it, or delete it to make new keys") from None
    if not isinstance(stored, dict) or not all(isinstance(stored.get(name), str) for name in KEY_VARIABLES):
        raise ValueError(
            f"{path} must hold {' and '.join(KEY_VARIABLES)}; restore it, or delete it to make new keys"
        )
    return {name: stored[name] for name in KEY_VARIABLES}
