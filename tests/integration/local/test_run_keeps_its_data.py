"""`errands run` (what `make run` starts): its data outlives a restart, even after a SIGKILL of it all.

Each start also shows the demo's people: a one-time enrolment link into the volunteer app, made afresh,
and a coordinator's console login, the same from one start to the next.
"""

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


def _printed(cwd: Path) -> str:
    """What `errands run` printed, once the lines after its start are there."""
    deadline = time.monotonic() + 30
    while "Ctrl-C stops everything." not in (text := (cwd / "run.log").read_text()):
        assert time.monotonic() < deadline, text[-4000:]
        time.sleep(0.2)
    return text


def _enrolment_secret(local: dict[str, Any]) -> str:
    """The link opens the volunteer app with its secret in the fragment."""
    assert local["app_url"] == f"{local['dispatcher_url']}/app"
    prefix = f"{local['app_url']}#token="
    assert local["app_enrol_url"].startswith(prefix), local["app_enrol_url"]
    return str(local["app_enrol_url"][len(prefix) :])


async def _enrol(http: aiohttp.ClientSession, local: dict[str, Any]) -> str:
    """Spend the start's enrolment link as the app does: once, for a device token; the demo volunteer's id."""
    exchange = f"{local['dispatcher_url']}/v1/enrolments/{_enrolment_secret(local)}"
    async with http.post(exchange) as r:
        assert r.status == 201, await r.text()
        device = await r.json()
    async with http.get(f"{local['dispatcher_url']}/v1/me", headers=bearer(device["volunteer_token"])) as r:
        assert r.status == 200, await r.text()
        me = await r.json()
    assert me["id"] == device["volunteer_id"]
    async with http.post(exchange) as r:
        assert r.status == 410, "an enrolment link works once"
    return str(device["volunteer_id"])


async def _log_in(http: aiohttp.ClientSession, local: dict[str, Any]) -> dict[str, Any]:
    """The console's login works, for a coordinator (operator) of the demo organisation."""
    assert local["console_url"] == f"{local['intake_url']}/console"
    credentials = {"email": local["console_email"], "password": local["console_password"]}
    async with http.post(f"{local['intake_url']}/v1/sessions", json=credentials) as r:
        assert r.status == 201, await r.text()
        body: dict[str, Any] = await r.json()
    assert body["person"]["role"] == "operator"
    assert body["person"]["organisation_id"] == local["organisation_id"]
    return body


async def _the_coordinator_sees(http: aiohttp.ClientSession, local: dict[str, Any], task_id: str) -> bool:
    """Whether the coordinator's console session lists the task (made with the operator token)."""
    async with http.get(f"{local['intake_url']}/v1/tasks?limit=200") as r:
        assert r.status == 200, await r.text()
        return task_id in {item["id"] for item in (await r.json())["items"]}


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
        printed = _printed(tmp_path)
        for line in (
            f"  app         {first['app_url']}",
            f"              enrol a demo volunteer (the link works once): {first['app_enrol_url']}",
            f"  console     {first['console_url']}",
            f"              log in as {first['console_email']}, password {first['console_password']}",
        ):
            assert line in printed.splitlines(), printed[-3000:]
        async with aiohttp.ClientSession() as http:
            task = await Operators(
                http, fixed(first["intake_url"]), first["operator_token"], (29.87, 121.55)
            ).submit()
            demo_volunteer = await _enrol(http, first)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            person = (await _log_in(browser, first))["person"]
            assert await _the_coordinator_sees(browser, first, task.task_id)
        # The services' set-password links open the console's page for it.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{first['intake_url']}/v1/people/{person['id']}/password-setup",
                headers=bearer(first["admin_token"]),
            ) as r,
        ):
            assert r.status == 201, await r.text()
            assert (await r.json())["setup"]["url"].startswith(f"{first['intake_url']}/password-setup#token=")
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
        assert (second["console_email"], second["console_password"]) == (
            first["console_email"],
            first["console_password"],
        ), "the coordinator's login is kept"
        assert second["app_enrol_url"] != first["app_enrol_url"], "each start makes a new enrolment link"
        async with aiohttp.ClientSession() as http:
            assert await _enrol(http, second) == demo_volunteer, "the same demo volunteer, one more device"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            await _log_in(browser, second)
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
        # A new organisation, its own coordinator (the kept password again) and demo volunteer.
        assert fresh["console_password"] == first["console_password"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            await _log_in(browser, fresh)
        async with aiohttp.ClientSession() as http:
            assert await _enrol(http, fresh) != demo_volunteer
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=90) == 0
    assert "keys.json" in os.listdir(tmp_path / ".errands"), "the keys stay with the data"
