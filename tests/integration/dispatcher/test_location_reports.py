"""Location reports on the running system: buffered, then written and published in batches."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.tables import VolunteerRow
from services.dispatcher.service_layer.locations import Fix, LocationBuffer, LocationFlusher
from shared.events import VOLUNTEERS_TOPIC, CloudEvent
from shared.runtime import background_task
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, somewhere
from tests.integration.dispatcher.conftest import add_volunteer

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def _stored(sessionmaker: Maker, volunteer_id: str) -> VolunteerRow:
    async with sessionmaker() as session:
        row = await session.get(VolunteerRow, uuid.UUID(volunteer_id))
        assert row is not None
        return row


async def _location_events(bootstrap: str, volunteer_id: str, *, want_lat: float) -> list[CloudEvent]:
    """This volunteer's location events on the topic, read until one at `want_lat` is seen and a bit more."""
    consumer = AIOKafkaConsumer(
        VOLUNTEERS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        deadline = time.monotonic() + 20
        seen_at: float | None = None
        while time.monotonic() < deadline and (seen_at is None or time.monotonic() < seen_at + 1.5):
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    if event.subject == volunteer_id and event.type == "volunteer.location_reported":
                        found.append(event)
                        if event.data["lat"] == want_lat and seen_at is None:
                            seen_at = time.monotonic()
    finally:
        await consumer.stop()
    return found


@pytest.mark.e2e
async def test_a_report_answered_202_reaches_the_volunteer_row_and_the_topic_and_an_older_one_does_not(
    client: Client, stack: Stack, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    volunteer_id, token = await client.volunteer(operator, place)
    new_lat, new_lon = place[0] + 0.01, place[1] + 0.01
    at = datetime.now(UTC)  # after the fix `volunteer()` reported
    url = f"{client.dispatcher}/v1/me/location"
    status, _ = await client.call(
        "POST", url, token, json={"lat": new_lat, "lon": new_lon, "accuracy_m": 7, "at": at.isoformat()}
    )
    assert status == 202
    for _ in range(100):
        row = await _stored(sessionmaker, volunteer_id)
        if row.lat == new_lat:
            break
        await asyncio.sleep(0.05)
    assert (row.lat, row.lon, row.location_at) == (new_lat, new_lon, at)

    older = (at - timedelta(seconds=30)).isoformat()
    status, _ = await client.call(
        "POST", url, token, json={"lat": place[0] - 1, "lon": place[1], "at": older}
    )
    assert status == 202
    await asyncio.sleep(0.5)  # ten flush intervals
    row = await _stored(sessionmaker, volunteer_id)
    assert (row.lat, row.location_at) == (new_lat, at), "an older fix never overwrites a newer one"

    events = await _location_events(stack.kafka_bootstrap, volunteer_id, want_lat=new_lat)
    reported = [event.data for event in events]
    assert {"volunteer_id": volunteer_id, "lat": new_lat, "lon": new_lon, "accuracy_m": 7.0} in [
        {k: v for k, v in data.items() if k != "at"} for data in reported
    ]
    assert all(data["lat"] != place[0] - 1 for data in reported), "the stale fix is not published"


@pytest.mark.e2e
async def test_bad_reports_are_refused_before_anything_is_buffered(client: Client) -> None:
    operator = await client.organisation()
    _, token = await client.volunteer(operator, somewhere())
    url = f"{client.dispatcher}/v1/me/location"
    assert (await client.call("POST", url, token, json={"lat": 91, "lon": 0}))[0] == 422
    assert (await client.call("POST", url, token, json={"lat": 1, "lon": 0, "at": "2026-01-01T00:00:00"}))[
        0
    ] == 422
    for at in ("0001-01-01T00:00:00+23:59", (datetime.now(UTC) - timedelta(days=2)).isoformat()):
        status, problem = await client.call("POST", url, token, json={"lat": 1, "lon": 0, "at": at})
        assert (status, [e["field"] for e in problem["errors"]]) == (422, ["$.at"])
    assert (await client.call("POST", url, "erk_vol_nonsense", json={"lat": 1, "lon": 0}))[0] == 401


async def test_buffered_reports_are_written_when_the_process_stops(
    sessionmaker: Maker, place: tuple[float, float]
) -> None:
    """The shutdown path SIGTERM takes: the flusher's background task is asked to stop, and writes first."""
    async with sessionmaker() as session, session.begin():
        volunteer = await add_volunteer(session, lat=place[0], lon=place[1], location_at=None)
    buffer = LocationBuffer(capacity=100)
    # An interval no test waits out: only the stop can write the report.
    flusher = LocationFlusher(buffer, sessionmaker, interval_s=3600)
    context = background_task("location-flusher", flusher.run, on_stop=buffer.close)(None)  # type: ignore[arg-type]
    await anext(context)
    at = datetime.now(UTC).replace(microsecond=0)
    buffer.add(volunteer.id, Fix(lat=place[0] + 0.5, lon=place[1], accuracy_m=None, at=at))
    await asyncio.sleep(0.2)
    assert (await _stored(sessionmaker, str(volunteer.id))).location_at is None, "nothing written yet"
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    row = await _stored(sessionmaker, str(volunteer.id))
    assert (row.lat, row.location_at) == (place[0] + 0.5, at)


async def test_a_fix_the_database_cannot_store_is_dropped_and_the_others_are_still_written(
    sessionmaker: Maker, place: tuple[float, float]
) -> None:
    async with sessionmaker() as session, session.begin():
        good = await add_volunteer(session, lat=place[0], lon=place[1], location_at=None)
        bad = await add_volunteer(session, lat=place[0], lon=place[1], location_at=None)
    buffer = LocationBuffer(capacity=100)
    flusher = LocationFlusher(buffer, sessionmaker)
    at = datetime.now(UTC).replace(microsecond=0)
    unstorable = datetime.fromisoformat("0001-01-01T00:00:00+23:59")
    buffer.add(good.id, Fix(lat=place[0] + 0.5, lon=place[1], accuracy_m=None, at=at))
    buffer.add(bad.id, Fix(lat=place[0] + 0.5, lon=place[1], accuracy_m=None, at=unstorable))
    dropped_before = REGISTRY.get_sample_value("errands_location_fixes_dropped_total") or 0.0
    assert await flusher.flush() == 1
    assert REGISTRY.get_sample_value("errands_location_fixes_dropped_total") == dropped_before + 1
    assert len(buffer) == 0, "the unstorable fix is not put back to fail every later flush"
    row = await _stored(sessionmaker, str(good.id))
    assert (row.lat, row.location_at) == (place[0] + 0.5, at)
    assert (await _stored(sessionmaker, str(bad.id))).location_at is None

    # Later fixes, the refused volunteer's included, are written as ever.
    buffer.add(bad.id, Fix(lat=place[0] + 0.7, lon=place[1], accuracy_m=None, at=at))
    assert await flusher.flush() == 1
    assert (await _stored(sessionmaker, str(bad.id))).location_at == at
