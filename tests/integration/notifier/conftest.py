"""A database of the notifier tests' own on the session's server, so running services never touch it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands.migrate import upgrade
from shared.auth import Organisation, Role, issue_token
from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings
from tests.client import bearer
from tests.conftest import Stack


def _fresh_database(server_url: str) -> str:
    name = f"errands_notifier_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    base, _, _ = server_url.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def notifier_settings(stack: Stack) -> Settings:
    """Settings on a migrated private database, with retries measured in milliseconds."""
    settings = stack.settings(
        database_url=_fresh_database(stack.database_url),
        webhook_allow_private_urls=True,
        webhook_timeout_s=1.0,
        webhook_backoff_base_s=0.01,
        webhook_backoff_max_s=0.05,
        webhook_max_attempts=3,
        notification_max_attempts=2,
        delivery_poll_s=0.05,
        confirmation_max_failures=3,
    )
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
async def sessionmaker(notifier_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(notifier_settings, pool_size=5)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@dataclass
class Operator:
    organisation_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


async def new_operator(sessionmaker: async_sessionmaker[AsyncSession]) -> Operator:
    async with sessionmaker() as session, session.begin():
        organisation = Organisation(id=uuid.uuid4(), name="Test organisation")
        session.add(organisation)
        await session.flush()
        _, token = await issue_token(session, role=Role.OPERATOR, organisation_id=organisation.id)
    return Operator(organisation.id, token)


async def cross_organisation_headers(
    sessionmaker: async_sessionmaker[AsyncSession], role: Role
) -> dict[str, str]:
    """A bearer header for a role that spans organisations (ops or admin)."""
    async with sessionmaker() as session, session.begin():
        _, token = await issue_token(session, role=role)
    return bearer(token)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when it arrived
    status: int = 0  # what the receiver answered


@dataclass
class Receiver:
    """A local HTTP server that records what it is sent and answers with scripted statuses."""

    server: TestServer
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    answers_by_path: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    delay_s: float = 0.0

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    holder: list[Receiver] = []

    async def handle(request: web.Request) -> web.Response:
        this = holder[0]
        received = Received(request.path, dict(request.headers), await request.read())
        this.requests.append(received)
        if this.delay_s:
            await asyncio.sleep(this.delay_s)
        scripted = this.answers_by_path.get(request.path) or this.answers
        status, headers = scripted.pop(0) if scripted else (204, {})
        received.status = status
        return web.Response(status=status, headers=headers)

    app.router.add_post("/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    holder.append(Receiver(server))
    try:
        yield holder[0]
    finally:
        await server.close()
