"""The embedded stack's servers: never left running by a killed launcher, and a kept data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from errands.stack import EmbeddedPostgres

# A launcher in miniature: start the stack in a kept directory, write the servers' PIDs, wait.
LAUNCHER = """
import sys, time
from pathlib import Path
from errands.stack import EmbeddedStack
stack = EmbeddedStack(Path(sys.argv[1]), die_with_parent=sys.argv[2] == "1")
stack.start()
Path(sys.argv[1], "pids").write_text(f"{stack.postgres.process.pid} {stack.kafka.process.pid}")
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0: read its state.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _launch_and_kill(base: Path, *, die_with_parent: bool) -> tuple[int, int]:
    """Start the stack from a process of its own and SIGKILL that process; the servers' PIDs."""
    launcher = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", LAUNCHER, str(base), "1" if die_with_parent else "0"],
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    try:
        deadline = time.monotonic() + 90
        while not (base / "pids").exists():
            assert launcher.poll() is None, "the launcher died starting the stack"
            assert time.monotonic() < deadline, "the stack did not start"
            time.sleep(0.2)
        postgres, kafka = (int(pid) for pid in (base / "pids").read_text().split())
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    return postgres, kafka


def _until_gone(*pids: int, timeout_s: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def test_servers_stop_when_the_launcher_that_started_them_is_killed(tmp_path: Path) -> None:
    postgres, kafka = _launch_and_kill(tmp_path, die_with_parent=True)
    assert _until_gone(postgres, kafka) == []
    # A fast shutdown, not a crash: the server wrote its shutdown checkpoint.
    assert "database system is shut down" in (tmp_path / "postgres" / "postgres.log").read_text()


async def test_a_server_left_running_on_the_data_directory_is_stopped_and_its_data_kept(
    tmp_path: Path,
) -> None:
    postgres, kafka = _launch_and_kill(tmp_path, die_with_parent=False)
    try:
        server = EmbeddedPostgres(tmp_path / "postgres")
        assert server.running_server() == postgres
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{_port(server)}/errands")
        await connection.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('before')")
        await connection.close()
        server.start()
        try:
            assert _until_gone(postgres, timeout_s=1) == []
            assert server.running_server() == server.process.pid  # type: ignore[union-attr]
            connection = await asyncpg.connect(server.url)
            assert await connection.fetchval("SELECT note FROM kept") == "before"
            await connection.close()
        finally:
            server.stop()
        assert server.running_server() is None
    finally:
        for pid in (postgres, kafka):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _port(server: EmbeddedPostgres) -> int:
    # postmaster.pid: PID, data directory, start time, port, ...
    return int((server.pgdata / "postmaster.pid").read_text().split("\n")[3])
