"""Fixtures for intake against the live service process and the session's database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from shared.db import create_engine, create_sessionmaker
from tests.client import bearer
from tests.conftest import Stack


@dataclass(frozen=True)
class Operator:
    organisation_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def task_body(**overrides: Any) -> dict[str, Any]:
    """A valid task far from the other suites' volunteers, so nobody is dispatched to it."""
    body: dict[str, Any] = {
        "kind": "supply_run",
        "priority": "routine",
        "pickup": {"lat": -45.87, "lon": 170.50, "address": "Depot", "contact_phone": "+64 3 477 0000"},
        "dropoffs": [
            {"lat": -45.88, "lon": 170.51, "recipient_name": "Aroha", "recipient_phone": "+6421000111"},
            {"lat": -45.89, "lon": 170.52, "recipient_email": "ben@example.org", "no_contact": True},
        ],
        "items": [{"name": "masks", "quantity": 500, "weight_kg": 5.0}],
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="session")
async def demo_tokens(stack: Stack) -> dict[str, str]:
    return await admin.bootstrap_demo(stack.settings())


@pytest.fixture
async def operator(stack: Stack) -> Operator:
    """A fresh organisation per test, so listings see only that test's tasks."""
    created = await admin.new_organisation(stack.settings(), f"org-{uuid.uuid4().hex[:8]}")
    return Operator(uuid.UUID(created["id"]), created["operator_token"])


@pytest.fixture
def intake(system: ServiceProcesses) -> str:
    return system.url("intake")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture(scope="session")
async def sessionmaker(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(stack.settings(), pool_size=4)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def submit(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with http.post(
        f"{intake}/v1/tasks",
        json=task_body() if body is None else body,
        headers={**operator.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    ) as response:
        return response.status, await response.json(content_type=None), response.headers
