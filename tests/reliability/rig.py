"""A private system per test module: its own embedded stack and its own service processes.

Reliability tests kill processes, freeze the broker and crash the database, so nothing here is ever
shared with another module (or with the session's `system`). The pieces a test needs to break and
watch things are on `Rig`: the processes, the stack, direct database and topic reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
from shared.events import CloudEvent
from tests.client import until
from tests.conftest import Stack

SERVICES = ("intake", "dispatcher", "notifier")
GROUPS = (
    ("intake", "intake-read-model"),
    ("intake", "intake-volunteers"),
    ("dispatcher", "dispatcher"),
    ("notifier", "notifier"),
)


@dataclass
class Rig:
    base: Path
    embedded: EmbeddedStack
    stack: Stack
    env: dict[str, str]
    services: ServiceProcesses
    tokens: dict[str, str]
    # Extra dispatcher processes, each in a ServiceProcesses of its own (processes are keyed by service).
    extra_dispatchers: list[ServiceProcesses] = field(default_factory=list)

    # --- processes ---------------------------------------------------------------------------------

    def pid(self, service: str) -> int:
        return self.services.processes[service].pid

    def kill(self, service: str) -> None:
        """SIGKILL: no handler runs, nothing is flushed or committed."""
        self.services.stop(service, sig=signal.SIGKILL)

    async def restart(self, service: str) -> None:
        """Start it again and go on once it serves HTTP: it catches up (and turns ready) under the load."""
        self.services.start(service)
        await asyncio.to_thread(
            self.services.wait_ready, services=(service,), timeout_s=120, probe="/healthz"
        )

    async def terminate(self, service: str) -> tuple[int | None, float]:
        """SIGTERM and wait for the exit: (exit code, seconds it took)."""
        process = self.services.processes.pop(service)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
            code = None
        return code, time.monotonic() - started

    def kill_everything(self) -> None:
        """SIGKILL every service and both servers at once, as a power cut does; the broker's log is lost."""
        for process in self.services.processes.values():
            process.kill()
        self.embedded.kill()
        for service in list(self.services.processes):
            self.services.stop(service, sig=signal.SIGKILL)

    async def start_everything(self) -> int:
        """Start it all again on the kept data, as `errands run` does; returns how many events are resent."""
        await asyncio.to_thread(self.embedded.start)
        settings = self.stack.settings(outbox_retention_s=self.env.get("OUTBOX_RETENTION_S", "0"))
        resent = await asyncio.to_thread(prepare, settings, broker_is_new=True)
        self.services.start_all()
        await asyncio.to_thread(self.services.wait_ready, timeout_s=180)
        return resent

    async def add_dispatcher(self) -> ServiceProcesses:
        extra = ServiceProcesses(
            env=self.env, log_dir=self.base / f"logs-dispatcher-{len(self.extra_dispatchers) + 2}"
        )
        extra.start("dispatcher")
        self.extra_dispatchers.append(extra)
        await asyncio.to_thread(extra.wait_ready, services=("dispatcher",), timeout_s=120)
        return extra

    async def remove_dispatcher(self) -> tuple[int | None, float]:
        """SIGTERM the newest extra dispatcher, as a scale-down does."""
        extra = self.extra_dispatchers.pop()
        started = time.monotonic()
        code = await asyncio.to_thread(extra.stop, "dispatcher", timeout_s=60)
        return code, time.monotonic() - started

    def dispatcher_urls(self) -> list[str]:
        # The first dispatcher's address stays listed while it is down: clients see it refuse, as they would.
        return [self.services.url("dispatcher")] + [
            extra.url("dispatcher") for extra in self.extra_dispatchers
        ]

    def intake_urls(self) -> list[str]:
        return [self.services.url("intake")]

    async def ready(self, service: str) -> int:
        """The status of the service's /readyz, 0 when nothing answers."""
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{self.services.url(service)}/readyz", timeout=aiohttp.ClientTimeout(total=3)) as r,
            ):
                return r.status
        except (TimeoutError, aiohttp.ClientError):
            return 0

    async def wait_assigned(
        self, service: str, group: str, *, more_than: int = 0, timeout_s: float = 180
    ) -> None:
        """Until `group` in `service` has been given partitions (more than `more_than` times so far)."""

        async def assigned() -> bool:
            return self.assignments(service, group) > more_than

        await until(assigned, what=f"{group} assigned partitions", timeout_s=timeout_s, every_s=0.5)

    def assignments(self, service: str, group: str) -> int:
        return sum(
            1
            for line in self.log_lines(service)
            if line.get("event") == "consumer.assigned" and line.get("group") == group
        )

    # --- logs --------------------------------------------------------------------------------------

    def log_files(self) -> list[Path]:
        return [*sorted(self.base.glob("logs*/*.log")), self.base / "stack" / "kafka.log"]

    def log_tails(self, chars: int = 6000) -> str:
        parts = []
        for path in self.log_files():
            if path.exists():
                parts.append(f"===== {path}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def log_lines(self, service: str) -> list[dict[str, Any]]:
        """JSON log lines of every process of `service` so far (restarts append to the same file)."""
        lines = []
        for path in sorted(self.base.glob(f"logs*/{service}.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        lines.append(json.loads(line))
        return lines

    # --- database and topics -----------------------------------------------------------------------

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.stack.database_url)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            return rows
        finally:
            await connection.close()

    async def value(self, query: str, *args: Any) -> Any:
        return (await self.fetch(query, *args))[0][0]

    async def organisation(self) -> str:
        """A fresh organisation's operator token: each test counts only its own tasks and volunteers."""
        created = await admin.new_organisation(self.stack.settings(), f"reliability {uuid.uuid4()}")
        return str(created["operator_token"])

    async def records(self, topic: str, *, idle_s: float = 3.0, timeout_s: float = 120.0) -> list[CloudEvent]:
        """Every record on `topic` from the beginning, read until nothing new arrives for `idle_s`."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.kafka_bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                await consumer.force_metadata_update()
                partitions = [
                    TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            found: list[CloudEvent] = []
            deadline = time.monotonic() + timeout_s
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for record in records:
                        with contextlib.suppress(ValueError, TypeError):
                            found.append(CloudEvent.from_bytes(record.value))
                if batches:
                    quiet_since = time.monotonic()
            return found
        finally:
            await consumer.stop()


def per_subject(
    events: Sequence[CloudEvent], event_type: str, key: str = "subject"
) -> dict[str, Counter[str]]:
    """For each subject (or `data[key]`), how often each event id of `event_type` was published."""
    seen: dict[str, Counter[str]] = {}
    for event in events:
        if event.type != event_type:
            continue
        subject = str(event.subject) if key == "subject" else str(event.data.get(key))
        seen.setdefault(subject, Counter())[str(event.id)] += 1
    return seen


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Rig]:
    overrides: dict[str, str] = getattr(request.module, "SERVICE_ENV", {})
    base = Path(tmp_path_factory.mktemp("reliability"))
    embedded = EmbeddedStack(base / "stack")
    embedded.start()
    stack = Stack(embedded.database_url, embedded.kafka_bootstrap, embedded)
    env = service_env(
        {
            "DATABASE_URL": stack.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "LOG_FORMAT": "json",
            "DISPATCH_BATCH_WINDOW_MS": "200",
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            # Load on one token: the rate limiter has tests of its own.
            "RATE_LIMIT_PER_S": "100000",
            "RATE_LIMIT_BURST": "100000",
            # Offers left unanswered come back soon and go to someone else.
            "OFFER_TTL_S": "5",
            # Up to five processes share one small embedded server.
            "DATABASE_POOL_SIZE": "8",
            # A small crew carries thousands of legs in minutes here: the daily cap on a volunteer's
            # legs (a welfare rule with tests of its own) would stop the load long before its end.
            "DAILY_MAX_LEGS": "1000000",
            # A killed member's partitions move on after 6 s instead of 30 s: the drains stay short.
            "CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
            **overrides,
        }
    )
    services = ServiceProcesses(env=env, log_dir=base / "logs")
    rig: Rig | None = None
    try:
        prepare(stack.settings())
        services.start_all()
        services.wait_ready(timeout_s=120)
        tokens = asyncio.run(admin.bootstrap_demo(stack.settings()))
        rig = Rig(base, embedded, stack, env, services, tokens)
        # A new consumer group takes a while to form on the embedded broker: tests start once all have.
        for service, group in GROUPS:
            asyncio.run(rig.wait_assigned(service, group))
        yield rig
    finally:
        if rig is not None:
            for extra in rig.extra_dispatchers:
                extra.stop_all()
        services.stop_all()
        embedded.kafka.resume()  # never leave a frozen broker behind
        embedded.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the tails of its services' logs (they live in the module's tmp dir)."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        rig = getattr(item, "funcargs", {}).get("rig")
        if isinstance(rig, Rig):
            report.sections.append(("service logs (tails)", rig.log_tails()))


@contextlib.asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http
