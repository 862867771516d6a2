"""`errands run` (what `make run` starts): its data outlives a restart, even after a SIGKILL of it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from errands.stack import free_port
from tests.client import bearer
from tests.reliability.load import Operators, fixed

pytestmark = pytest.mark.e2e


def _start(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """`errands run` in a process group of its own, as a terminal runs `make run`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "OUTBOX_RETENTION_S")
    }
    env |= {
        "PYTHONPATH": str(Path(__file__).parents[3]),
        "ERRANDS_DEMO": "0",
        "INTAKE_PORT": str(free_port()),
        "DISPATCHER_PORT": str(free_port()),
        "NOTIFIER_PORT": str(free_port()),
    }
    (cwd / ".errands" / "local.json").unlink(missing_ok=True)
    log = (cwd / "run.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "errands", "run", *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_running(cwd: Path, run: subprocess.Popen[bytes]) -> dict[str, Any]:
    path = cwd / ".errands" / "local.json"
    deadline = time.monotonic() + 240
    while not path.exists():
        assert run.poll() is None, (cwd / "run.log").read_text()[-4000:]
        assert time.monotonic() < deadline, (cwd / "run.log").read_text()[-4000:]
        time.sleep(0.5)
    local: dict[str, Any] = json.loads(path.read_text())
    return local


def _postmaster(cwd: Path) -> int:
    return int((cwd / ".errands" / "data" / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])


def _until_gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False


async def _task_status(local: dict[str, Any], task_id: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{local['intake_url']}/v1/tasks/{task_id}", headers=bearer(local["operator_token"])) as r,
    ):
        return r.status


@pytest.mark.timeout(900)
async def test_a_restart_after_kill_keeps_tasks_and_tokens_and_fresh_starts_empty(tmp_path: Path) -> None:
    run = _start(tmp_path)
    try:
        first = _wait_running(tmp_path, run)
        async with aiohttp.ClientSession() as http:
            task = await Operators(
                http, fixed(first["intake_url"]), first["operator_token"], (29.87, 121.55)
            ).submit()
        postgres = _postmaster(tmp_path)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # `make run`'s whole process group, no handler runs
        run.wait()
    # The servers in sessions of their own went with the launcher.
    assert _until_gone(postgres), "the embedded PostgreSQL outlived its launcher"

    run = _start(tmp_path)
    try:
        second = _wait_running(tmp_path, run)
        assert {
            key: second[key] for key in ("organisation_id", "operator_token", "ops_token", "admin_token")
        } == {key: first[key] for key in ("organisation_id", "operator_token", "ops_token", "admin_token")}, (
            "the demo organisation and its tokens are reused, not made again"
        )
        assert await _task_status(second, task.task_id) == 200
        postgres = _postmaster(tmp_path)
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=90) == 0
    assert _until_gone(postgres, timeout_s=1)
    assert not (tmp_path / ".errands" / "local.json").exists()

    run = _start(tmp_path, "--fresh")
    try:
        fresh = _wait_running(tmp_path, run)
        assert fresh["operator_token"] != first["operator_token"]
        assert await _task_status(fresh, task.task_id) == 404
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=90) == 0
    assert "keys.json" in os.listdir(tmp_path / ".errands"), "the keys stay with the data"
