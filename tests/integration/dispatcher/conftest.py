"""Service-layer tests against the session's PostgreSQL.

Other tests' dispatcher processes may be running on the same database, so every test here lives at a
time `FUTURE` a day ahead (legs ready then, locations fixed then) and in a far-off place of its own:
the live matcher, which works in the present, never touches these legs. Their outbox relay does
publish and delete every committed event, so a test reading committed events holds `relay_held`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import VolunteerRow, outbox
from services.dispatcher.service_layer.legs import take_in_task
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.offers import offer_batch, prepare_pool
from services.dispatcher.service_layer.roster import Roster
from shared.db import create_engine, create_sessionmaker
from shared.events import TaskSubmitted, build_event
from shared.outbox import relay_lock_key
from tests.conftest import Stack

FUTURE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
OFFER_TTL = timedelta(seconds=60)
# Volunteers and tasks belong to this organisation unless a test says otherwise: legs are only
# offered within their own organisation.
ORGANISATION = uuid.uuid4()


@pytest.fixture(scope="session")
async def sessionmaker(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(stack.settings(), pool_size=4)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def relay_held(stack: Stack) -> AsyncIterator[None]:
    """Holds the dispatcher outbox relay's lock for the test: a running dispatcher's relay publishes
    nothing meanwhile, so the events the test commits stay in the outbox for it to read."""
    holder = await asyncpg.connect(stack.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", relay_lock_key(outbox))
        yield
    finally:
        await holder.execute("SELECT pg_advisory_unlock_all()")
        await holder.close()


@pytest.fixture
def place() -> tuple[float, float]:
    """A spot on the globe no other test uses."""
    rng = random.Random()
    return rng.uniform(-50, 50), rng.uniform(-170, 170)


async def add_volunteer(
    session: AsyncSession, *, lat: float, lon: float, organisation_id: uuid.UUID | None = None, **fields: Any
) -> VolunteerRow:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "organisation_id": organisation_id or ORGANISATION,
        "name": "Test Volunteer",
        "phone": None,
        "languages": ["zh", "en"],
        "skills": [],
        "vehicle": "bicycle",
        "capacity_kg": 20.0,
        "insured": True,
        "max_active_legs": 2,
        "on_duty": True,
        "duty_started_at": FUTURE - timedelta(hours=1),
        "lat": lat,
        "lon": lon,
        "location_at": FUTURE - timedelta(minutes=1),
        "active_legs": 0,
        "legs_done_today": 0,
        **fields,
    }
    row = VolunteerRow(**values)
    session.add(row)
    await session.flush()
    return row


async def submit_task(
    session: AsyncSession,
    *,
    lat: float,
    lon: float,
    legs: int = 1,
    kind: str = "errand",
    organisation_id: uuid.UUID | None = None,
    submitted_at: datetime | None = None,
    weight_kg: float = 1.0,
    deliver_by: datetime | None = None,
    vehicle: str | None = None,
    priority: str = "routine",
    vulnerable: bool = False,
    ready_at: datetime | None = None,
) -> TaskSubmitted:
    data = TaskSubmitted.model_validate(
        {
            "task_id": uuid.uuid4(),
            "organisation_id": organisation_id or ORGANISATION,
            "kind": kind,
            "priority": priority,
            "pickup": {
                "lat": lat,
                "lon": lon,
                "ready_at": (ready_at or FUTURE - timedelta(minutes=30)).isoformat(),
            },
            "legs": [
                {
                    "leg_id": uuid.uuid4(),
                    "index": i,
                    "dropoff": {
                        "lat": lat + 0.01,
                        "lon": lon + 0.01,
                        "language": "zh",
                        "vulnerable": vulnerable,
                    },
                    "code_hash": "0" * 64,
                }
                for i in range(legs)
            ],
            "items": [{"name": "rice", "quantity": 1, "weight_kg": weight_kg}],
            "requirements": {"vehicle": vehicle},
            "deliver_by": deliver_by.isoformat() if deliver_by else None,
        }
    )
    _, event = build_event(data, source="/intake", subject=data.task_id)
    event.time = submitted_at or FUTURE - timedelta(seconds=5)
    await take_in_task(session, event)
    return data


async def outbox_types(session: AsyncSession, subject: uuid.UUID) -> list[str]:
    """Event types queued in this (uncommitted) transaction for a task, in order."""
    rows = await session.execute(
        select(outbox.c.event_type).where(outbox.c.key == str(subject)).order_by(outbox.c.id)
    )
    return list(rows.scalars())


async def matching_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    stack: Stack,
    roster: Roster,
    *,
    at: timedelta = timedelta(0),
    limit: int | None = None,
    planned_for: timedelta = timedelta(0),
) -> set[uuid.UUID]:
    """One matching round at `FUTURE + at` through `roster`, as the matcher runs it: the pool, then
    the offers (`OFFER_TTL` to answer) for at most `limit` legs (default: the offer handler's).
    Returns the volunteers offered a leg."""
    now, policy = FUTURE + at, policy_from(stack.settings())
    async with sessionmaker() as session, session.begin():
        pool = await prepare_pool(session, roster, now=now, policy=policy, planned_for=planned_for)
    if pool is None:
        return set()
    async with sessionmaker() as session, session.begin():
        limits: dict[str, Any] = {} if limit is None else {"limit": limit}
        changes = await offer_batch(
            session, now=now, policy=policy, offer_ttl=OFFER_TTL, pool=pool, planned_for=planned_for, **limits
        )
        offered = set(changes.volunteers)
        await changes.flush(session)
    return offered
