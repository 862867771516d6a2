"""Intake's ops read models against the database: the volunteer projection, timing percentiles, histograms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.domain.dashboard import NINGBO
from services.intake.service_layer.dashboard import dispatch_timings, ops_snapshot
from services.intake.service_layer.progress import apply_progress
from services.intake.service_layer.volunteers import VOLUNTEER_HANDLERS
from shared.events import (
    CloudEvent,
    EventData,
    LegAssigned,
    LegConfirmed,
    LegOffered,
    LegOfferExpired,
    VolunteerDutyChanged,
    VolunteerLocationReported,
    VolunteerRegistered,
    build_event,
)
from tests.integration.intake.test_service_layer import submit


async def apply_volunteer(
    sessionmaker: async_sessionmaker[AsyncSession], data: EventData, *, time: datetime | None = None
) -> None:
    _, event = build_event(data, source="/dispatcher", subject=str(data.volunteer_id))  # type: ignore[attr-defined]
    if time is not None:
        event = event.model_copy(update={"time": time})
    async with sessionmaker() as session, session.begin():
        await VOLUNTEER_HANDLERS[event.type](session, event)


async def point_of(sessionmaker: async_sessionmaker[AsyncSession], volunteer_id: uuid.UUID) -> Any:
    async with sessionmaker() as session:
        snapshot = await ops_snapshot(session=session)
    return next((p for p in snapshot["volunteers"]["points"] if p["id"] == str(volunteer_id)), None), snapshot


async def test_a_volunteer_on_duty_is_drawn_where_they_last_reported(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    vid, now = uuid.uuid4(), datetime.now(UTC)
    await apply_volunteer(
        sessionmaker,
        VolunteerRegistered(
            volunteer_id=vid, organisation_id=uuid.uuid4(), vehicle="ebike", name_masked="C*"
        ),
    )
    await apply_volunteer(
        sessionmaker, VolunteerLocationReported(volunteer_id=vid, lat=29.93, lon=121.53, at=now)
    )
    point, _ = await point_of(sessionmaker, vid)
    assert point is None, "not on duty yet"

    await apply_volunteer(sessionmaker, VolunteerDutyChanged(volunteer_id=vid, on_duty=True))
    point, _ = await point_of(sessionmaker, vid)
    assert point is not None
    assert (point["x"], point["y"]) == NINGBO.project(29.93, 121.53)
    assert (point["vehicle"], point["name_masked"], point["stale"]) == ("ebike", "C*", False)

    # A report taken earlier but arriving later does not move them back.
    await apply_volunteer(
        sessionmaker,
        VolunteerLocationReported(volunteer_id=vid, lat=29.29, lon=121.43, at=now - timedelta(minutes=5)),
    )
    point, _ = await point_of(sessionmaker, vid)
    assert (point["lat"], point["lon"]) == (29.93, 121.53)
    await apply_volunteer(
        sessionmaker,
        VolunteerLocationReported(volunteer_id=vid, lat=29.96, lon=121.68, at=now + timedelta(seconds=30)),
    )
    point, _ = await point_of(sessionmaker, vid)
    assert (point["lat"], point["lon"]) == (29.96, 121.68)

    # Off duty: gone from the map, and an older "on duty" replayed afterwards changes nothing.
    await apply_volunteer(sessionmaker, VolunteerDutyChanged(volunteer_id=vid, on_duty=False))
    await apply_volunteer(
        sessionmaker,
        VolunteerDutyChanged(volunteer_id=vid, on_duty=True),
        time=datetime.now(UTC) - timedelta(minutes=1),
    )
    point, _ = await point_of(sessionmaker, vid)
    assert point is None


async def test_volunteers_outside_ningbo_or_long_silent_are_told_apart(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    far, silent = uuid.uuid4(), uuid.uuid4()
    _, before = await point_of(sessionmaker, far)
    now = datetime.now(UTC)
    for vid, lat, lon, at in ((far, -45.87, 170.5, now), (silent, 29.87, 121.50, now - timedelta(hours=1))):
        await apply_volunteer(sessionmaker, VolunteerDutyChanged(volunteer_id=vid, on_duty=True))
        await apply_volunteer(
            sessionmaker, VolunteerLocationReported(volunteer_id=vid, lat=lat, lon=lon, at=at)
        )
    point, after = await point_of(sessionmaker, far)
    assert point is None
    assert after["volunteers"]["outside_map"] == before["volunteers"]["outside_map"] + 1
    assert after["volunteers"]["on_duty"] == before["volunteers"]["on_duty"] + 2
    silent_point, _ = await point_of(sessionmaker, silent)
    assert silent_point is not None and silent_point["stale"] is True
    for vid in (far, silent):
        await apply_volunteer(sessionmaker, VolunteerDutyChanged(volunteer_id=vid, on_duty=False))


def histogram_count(name: str, priority: str) -> float:
    return REGISTRY.get_sample_value(f"errands_dispatch_{name}_seconds_count", {"priority": priority}) or 0.0


async def progress_at(
    sessionmaker: async_sessionmaker[AsyncSession], task_id: str, data: EventData, time: datetime
) -> CloudEvent:
    _, event = build_event(data, source="/dispatcher", subject=task_id)
    event = event.model_copy(update={"time": time})
    async with sessionmaker() as session, session.begin():
        await apply_progress(session, event)
    return event


async def test_timing_percentiles_and_histograms_follow_the_legs_transitions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = uuid.uuid4()
    task = await submit(sessionmaker, org, priority="critical")
    tid, legs = task["id"], [leg["id"] for leg in task["legs"]]
    t0 = datetime.fromisoformat(task["created_at"])
    names = ("submission_to_offer", "offer_to_assignment", "assignment_to_confirmation")
    counted_before = {name: histogram_count(name, "critical") for name in names}
    alice = uuid.uuid4()
    # leg 0: offered +10 s, assigned +20 s, confirmed +80 s; leg 1: +30 s, +70 s, +370 s.
    for leg, (offered, assigned, confirmed) in zip(legs, ((10, 20, 80), (30, 70, 370)), strict=True):
        offer = uuid.uuid4()
        expires = t0 + timedelta(minutes=5)
        await progress_at(
            sessionmaker,
            tid,
            LegOffered(task_id=tid, leg_id=leg, offer_id=offer, volunteer_id=alice, expires_at=expires),
            t0 + timedelta(seconds=offered),
        )
        await progress_at(
            sessionmaker,
            tid,
            LegAssigned(task_id=tid, leg_id=leg, volunteer_id=alice, offer_id=offer),
            t0 + timedelta(seconds=assigned),
        )
        await progress_at(
            sessionmaker,
            tid,
            LegConfirmed(task_id=tid, leg_id=leg, volunteer_id=alice, method="code"),
            t0 + timedelta(seconds=confirmed),
        )
    async with sessionmaker() as session:
        timings = {t["name"]: t for t in await dispatch_timings(session=session, organisation_id=org)}
    assert {name: (t["legs"], t["p50_s"], t["p90_s"]) for name, t in timings.items()} == {
        "submission_to_offer": (2, pytest.approx(20), pytest.approx(28)),
        "offer_to_assignment": (2, pytest.approx(25), pytest.approx(37)),
        "assignment_to_confirmation": (2, pytest.approx(180), pytest.approx(276)),
    }
    assert (timings["assignment_to_confirmation"]["p50"], timings["assignment_to_confirmation"]["p90"]) == (
        "3 min 00 s",
        "4 min 36 s",
    )
    assert {
        name: histogram_count(name, "critical") - counted_before[name] for name in names
    } == dict.fromkeys(names, 2.0)


async def test_a_second_offer_or_a_rolled_back_transaction_observes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    task = await submit(sessionmaker, uuid.uuid4(), priority="urgent")
    tid, leg = task["id"], task["legs"][0]["id"]
    t0 = datetime.fromisoformat(task["created_at"])
    bob, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    expires = t0 + timedelta(minutes=5)
    before = histogram_count("submission_to_offer", "urgent")

    first_offer = LegOffered(task_id=tid, leg_id=leg, offer_id=first, volunteer_id=bob, expires_at=expires)
    _, offered = build_event(first_offer, source="/dispatcher", subject=tid)
    async with sessionmaker() as session:
        await session.begin()
        await apply_progress(session, offered)
        await session.rollback()  # as when a handler fails and the consumer retries it
    assert histogram_count("submission_to_offer", "urgent") == before, "a rolled-back attempt counts nothing"

    await progress_at(sessionmaker, tid, first_offer, t0 + timedelta(seconds=5))
    assert histogram_count("submission_to_offer", "urgent") == before + 1
    await progress_at(
        sessionmaker,
        tid,
        LegOfferExpired(task_id=tid, leg_id=leg, offer_id=first, volunteer_id=bob),
        t0 + timedelta(seconds=65),
    )
    await progress_at(
        sessionmaker,
        tid,
        LegOffered(task_id=tid, leg_id=leg, offer_id=second, volunteer_id=uuid.uuid4(), expires_at=expires),
        t0 + timedelta(seconds=66),
    )
    assert histogram_count("submission_to_offer", "urgent") == before + 1, "only the first offer counts"
