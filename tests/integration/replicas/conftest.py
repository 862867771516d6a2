"""A stack of the replicas tests' own: two dispatchers and two notifiers in one consumer group each.

These tests kill processes with SIGKILL, so they run on a private embedded stack with their own
services, never on the session's shared `system`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
from tests.conftest import Stack


@dataclass
class Replicas:
    """Replica `a` runs intake, a dispatcher and a notifier; replica `b` a second dispatcher and notifier."""

    stack: Stack
    a: ServiceProcesses
    b: ServiceProcesses

    def log(self, replica: str, service: str) -> list[dict[str, Any]]:
        """The JSON log lines one process has written so far."""
        processes = self.a if replica == "a" else self.b
        assert processes.log_dir is not None
        path = processes.log_dir / f"{service}.log"
        lines = []
        for line in path.read_text().splitlines():
            # A process killed mid-write can leave its last line cut short.
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return [line for line in lines if isinstance(line, dict)]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    base = Path(tmp_path_factory.mktemp("replicas"))
    embedded = EmbeddedStack(base / "stack")
    embedded.start()
    stack = Stack(embedded.database_url, embedded.kafka_bootstrap, embedded)
    env = service_env(
        {
            **stack.env(),
            "LOG_FORMAT": "json",
            "DISPATCH_BATCH_WINDOW_MS": "200",
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "RATE_LIMIT_PER_S": "5000",
            "RATE_LIMIT_BURST": "5000",
            # Fewer connections per process: five processes share one small embedded server.
            "DATABASE_POOL_SIZE": "5",
        }
    )
    a = ServiceProcesses(env=env, log_dir=base / "logs-a")
    b = ServiceProcesses(env=env, log_dir=base / "logs-b")
    try:
        prepare(stack.settings())
        a.start_all()
        b.start("dispatcher")
        b.start("notifier")
        a.wait_ready(timeout_s=90)
        b.wait_ready(timeout_s=90, services=("dispatcher", "notifier"))
        yield Replicas(stack, a, b)
    finally:
        b.stop_all()
        a.stop_all()
        embedded.stop()
