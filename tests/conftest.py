"""One session-scoped stack for the whole suite.

Explicit `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` win; otherwise testcontainers (Kafka in KRaft
mode and PostgreSQL) when a Docker engine answers; otherwise the embedded stack.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
from shared.settings import Settings


@dataclass
class Stack:
    database_url: str
    kafka_bootstrap: str
    embedded: EmbeddedStack | None = None

    def env(self) -> dict[str, str]:
        """What a service process needs to work against this stack, as environment variables."""
        if self.embedded is not None:
            return self.embedded.settings_env()
        return {"DATABASE_URL": self.database_url, "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap}

    def settings(self, **overrides: object) -> Settings:
        return Settings.model_validate({**{k.lower(): v for k, v in self.env().items()}, **overrides})


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _fresh_database(server_url: str) -> str:
    """A database of our own on a given server, so a shared server's other data is never touched."""
    name = f"errands_test_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if database_url and bootstrap:
        result = Stack(_fresh_database(database_url.replace("+asyncpg", "")), bootstrap)
        prepare(result.settings())
        yield result
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            PostgresContainer("postgres:16-alpine", driver=None) as pg,
            KafkaContainer().with_kraft() as kafka,
        ):
            result = Stack(pg.get_connection_url(), kafka.get_bootstrap_server())
            prepare(result.settings())
            yield result
        return
    embedded = EmbeddedStack(tmp_path_factory.mktemp("stack"))
    embedded.start()
    try:
        result = Stack(embedded.database_url, embedded.kafka_bootstrap, embedded)
        prepare(result.settings())
        yield result
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def system(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcesses]:
    """The three services as separate processes against the session's stack."""
    log_dir = Path(tmp_path_factory.mktemp("service-logs"))
    services = ServiceProcesses(
        env=service_env(
            {
                **stack.env(),
                "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
                "LOG_FORMAT": "json",
                "DISPATCH_BATCH_WINDOW_MS": "200",
                # Legs posted ahead are planned every second, not every 15: their test waits less.
                "DISPATCH_PLAN_EVERY_S": "1",
                # Load tests send thousands of requests on one token; the limiter has unit tests.
                "RATE_LIMIT_PER_S": "5000",
                "RATE_LIMIT_BURST": "5000",
                # Every test logs in from 127.0.0.1, and the contract tests send wrong passwords: the
                # per-address login throttle is tested on a replica of its own (test_staff_accounts).
                "LOGIN_ADDRESS_SLOW_AFTER": "1000000",
                "LOGIN_ADDRESS_LOCK_AFTER": "1000000",
            }
        ),
        log_dir=log_dir,
    )
    # The intake's console calls the dispatcher: it is started first, so the intake knows its address.
    services.start("dispatcher")
    services.start("intake", extra_env={"DISPATCHER_URL": services.url("dispatcher")})
    services.start("notifier")
    try:
        services.wait_ready(timeout_s=90)
        yield services
    finally:
        services.stop_all()
        if os.environ.get("ERRANDS_SHOW_SERVICE_LOGS"):
            for log_file in sorted(log_dir.glob("*.log")):
                print(f"===== {log_file.name}\n{log_file.read_text()[-20000:]}")
