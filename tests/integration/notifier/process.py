"""A notifier process of the tests' own: its own database and consumer group, retries in milliseconds.

The shared services stay as they are; whatever a test does to this process (scripted receivers,
`kill -9`) touches nobody else. Used by the notifier's integration tests and the reliability suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from errands.launcher import ServiceProcesses, service_env
from shared.settings import Settings
from tests.client import until


def notifier_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a notifier on `settings`' database with a consumer group of its own.

    Deliveries may go to local receivers and are retried within a fraction of a second;
    `overrides` (environment variable names) win.
    """
    return service_env(
        {
            "DATABASE_URL": settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "CONSUMER_SESSION_TIMEOUT_MS": str(settings.consumer_session_timeout_ms),
            "CONSUMER_HEARTBEAT_INTERVAL_MS": str(settings.consumer_heartbeat_interval_ms),
            "NOTIFIER_CONSUMER_GROUP": f"notifier-test-{uuid.uuid4().hex[:8]}",
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "WEBHOOK_BACKOFF_BASE_S": "0.05",
            "WEBHOOK_BACKOFF_MAX_S": "0.2",
            "DELIVERY_POLL_S": "0.1",
            "LOG_FORMAT": "json",
            **overrides,
        }
    )


def log_lines(notifier: ServiceProcesses) -> list[dict[str, Any]]:
    """The notifier's JSON log lines so far (a restarted process appends to the same file)."""
    assert notifier.log_dir is not None
    path = notifier.log_dir / "notifier.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def _assignments(log: Path) -> int:
    return log.read_text(errors="replace").count('"consumer.assigned"') if log.exists() else 0


async def start_notifier(notifier: ServiceProcesses, *, join_group: bool = True) -> None:
    """Start it; with `join_group`, wait until its consumer holds partitions (the broker takes a while)."""
    assert notifier.log_dir is not None
    log = notifier.log_dir / "notifier.log"
    before = _assignments(log)
    notifier.start("notifier")
    await asyncio.to_thread(notifier.wait_ready, timeout_s=60, services=("notifier",))
    if join_group:
        await until(
            lambda: _joined(log, before), what="the notifier joined its group", timeout_s=90, every_s=0.1
        )


async def _joined(log: Path, before: int) -> bool:
    return _assignments(log) > before


@contextlib.asynccontextmanager
async def running_notifier(
    settings: Settings, log_dir: Path, *, join_group: bool = True, **env: str
) -> AsyncIterator[ServiceProcesses]:
    """A notifier process (see `notifier_env`), killed on the way out.

    Nothing about its shutdown is under test here, and its consumer may still be joining.
    """
    processes = ServiceProcesses(env=notifier_env(settings, **env), log_dir=log_dir)
    try:
        await start_notifier(processes, join_group=join_group)
        yield processes
    finally:
        processes.stop("notifier", sig=signal.SIGKILL)
