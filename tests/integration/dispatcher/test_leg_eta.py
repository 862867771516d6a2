"""A leg under way against PostgreSQL: its estimates, their refresh by fixes, and its own escalations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import LegRow, OfferRow, outbox
from services.dispatcher.domain.eta import EtaPolicy
from services.dispatcher.service_layer.changes import Changes
from services.dispatcher.service_layer.deliveries import report_picked_up
from services.dispatcher.service_layer.escalation import (
    escalate_overdue_legs,
    escalate_waiting_legs,
    wait_limits,
)
from services.dispatcher.service_layer.eta import eta_policy
from services.dispatcher.service_layer.legs import assign_by_hand
from services.dispatcher.service_layer.locations import Fix, LocationBuffer, LocationFlusher
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.offers import accept_offer
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.views import assignments
from shared.events import CloudEvent
from shared.geo import haversine_m
from shared.settings import Settings
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import (
    FUTURE,
    ORGANISATION,
    add_volunteer,
    matching_round,
    submit_task,
)

Maker = async_sessionmaker[AsyncSession]
ROSTER = Roster()


async def events_of(sessionmaker: Maker, task_id: uuid.UUID, event_type: str) -> list[CloudEvent]:
    async with sessionmaker() as session:
        payloads = (
            await session.execute(
                select(outbox.c.payload)
                .where(outbox.c.key == str(task_id), outbox.c.event_type == event_type)
                .order_by(outbox.c.id)
            )
        ).scalars()
        return [CloudEvent.from_bytes(p) for p in payloads]


async def leg_row(sessionmaker: Maker, leg_id: uuid.UUID) -> LegRow:
    async with sessionmaker() as session:
        leg = await session.get(LegRow, leg_id)
        assert leg is not None
        return leg


def minutes_by_bicycle(settings: Settings, start: tuple[float, float], end: tuple[float, float]) -> float:
    return haversine_m(*start, *end) * settings.eta_road_factor / (settings.eta_speed_bicycle_kmh / 3.6) / 60


async def assigned_leg(
    sessionmaker: Maker,
    settings: Settings,
    *,
    volunteer_at: tuple[float, float],
    task_at: tuple[float, float],
    deliver_by: datetime | None = None,
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A task's one leg assigned by hand to a bicycle volunteer at `volunteer_at`: task, leg, volunteer."""
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=volunteer_at[0], lon=volunteer_at[1])
        task = await submit_task(session, lat=task_at[0], lon=task_at[1], deliver_by=deliver_by)
    async with sessionmaker() as session, session.begin():
        await assign_by_hand(
            session,
            leg_id=task.legs[0].leg_id,
            volunteer_id=v.id,
            organisation_id=ORGANISATION,
            policy=policy_from(settings),
            eta=eta_policy(settings),
        )
    return task.task_id, task.legs[0].leg_id, v.id


@pytest.mark.usefixtures("relay_held")
async def test_an_accepted_leg_shows_its_estimates_in_the_volunteers_assignments(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings()
    async with sessionmaker() as session, session.begin():
        # 1.1 km away: within the pickup distance never deferred (other tests' legs wait too).
        v = await add_volunteer(session, lat=lat - 0.01, lon=lon)
        task = await submit_task(session, lat=lat, lon=lon)
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        offer_id = await session.scalar(select(OfferRow.id).where(OfferRow.leg_id == leg_id))
    assert offer_id is not None
    before = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await accept_offer(session, offer_id=offer_id, volunteer_id=v.id, eta=eta_policy(settings))
    async with sessionmaker() as session:
        view = await assignments(session, volunteer_id=v.id, data_key=settings.data_key)
    (leg,) = view["legs"]
    pickup_eta, dropoff_eta = (
        datetime.fromisoformat(leg["pickup_eta"]),
        datetime.fromisoformat(leg["dropoff_eta"]),
    )
    to_pickup = minutes_by_bicycle(settings, (lat - 0.01, lon), (lat, lon))
    onwards = minutes_by_bicycle(settings, (lat, lon), (lat + 0.01, lon + 0.01))
    # Not before the goods are ready (the test's tasks are ready half an hour before `FUTURE`).
    expected_pickup = max(before + timedelta(minutes=to_pickup), FUTURE - timedelta(minutes=30))
    assert abs((pickup_eta - expected_pickup).total_seconds()) < 30
    assert abs((dropoff_eta - pickup_eta).total_seconds() / 60 - onwards) < 0.01
    assert leg["eta_late"] is False
    (announced,) = await events_of(sessionmaker, task.task_id, "leg.eta_updated")
    assert announced.data["leg_status"] == "assigned"
    assert datetime.fromisoformat(announced.data["dropoff_eta"]) == dropoff_eta


@pytest.mark.usefixtures("relay_held")
async def test_a_new_fix_refreshes_the_estimates_and_a_small_move_publishes_nothing(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings()
    task_id, leg_id, volunteer_id = await assigned_leg(
        sessionmaker, settings, volunteer_at=(lat - 0.01, lon), task_at=(lat, lon)
    )
    # Picked up: the drop-off estimate runs from wherever the volunteer is (while assigned, the
    # test's pickups, ready a day ahead, hold the estimates to their ready time).
    async with sessionmaker() as session, session.begin():
        await report_picked_up(session, leg_id=leg_id, volunteer_id=volunteer_id, eta=eta_policy(settings))
    first = await leg_row(sessionmaker, leg_id)
    assert first.dropoff_eta is not None and first.pickup_eta is None
    assert len(await events_of(sessionmaker, task_id, "leg.eta_updated")) == 2
    buffer = LocationBuffer(capacity=10)
    flusher = LocationFlusher(buffer, sessionmaker, interval_s=3600, eta=eta_policy(settings))
    # Ten kilometres further away: about an hour more by bicycle.
    buffer.add(volunteer_id, Fix(lat=lat - 0.1, lon=lon, accuracy_m=5.0, at=FUTURE))
    assert await flusher.flush() == 1
    moved = await leg_row(sessionmaker, leg_id)
    assert moved.dropoff_eta is not None and moved.dropoff_eta - first.dropoff_eta > timedelta(minutes=40)
    assert len(await events_of(sessionmaker, task_id, "leg.eta_updated")) == 3
    async with sessionmaker() as session:
        view = await assignments(session, volunteer_id=volunteer_id, data_key=settings.data_key)
    assert datetime.fromisoformat(view["legs"][0]["dropoff_eta"]) == moved.dropoff_eta
    # Eleven metres: the estimate barely moves, and nothing is published.
    buffer.add(volunteer_id, Fix(lat=lat - 0.1001, lon=lon, accuracy_m=5.0, at=FUTURE + timedelta(seconds=5)))
    assert await flusher.flush() == 1
    assert (await leg_row(sessionmaker, leg_id)).dropoff_eta == moved.dropoff_eta
    assert len(await events_of(sessionmaker, task_id, "leg.eta_updated")) == 3


async def swept(sessionmaker: Maker, sweep: Callable[[AsyncSession], Awaitable[Changes]]) -> list[CloudEvent]:
    """The events of a sweep run until it raises nothing more, as the matcher's rounds run it: each
    looks at a limited number of legs, oldest first, and the shared database holds other tests'."""
    raised: list[CloudEvent] = []
    while True:
        async with sessionmaker() as session, session.begin():
            changes = await sweep(session)
            events = [event for _, event in changes.events]
            await changes.flush(session)
        if not events:
            return raised
        raised += events


async def overdue(sessionmaker: Maker, settings: Settings, now: datetime) -> list[CloudEvent]:
    return await swept(
        sessionmaker,
        lambda session: escalate_overdue_legs(
            session, now=now, wait_limits_s=wait_limits(settings), repeat_s=settings.leg_escalation_repeat_s
        ),
    )


@pytest.mark.usefixtures("relay_held")
async def test_a_leg_waiting_too_long_assigned_then_picked_up_escalates_again_with_the_reason(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings()
    limits = wait_limits(settings)
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat, lon=lon)
        task = await submit_task(session, lat=lat, lon=lon, submitted_at=FUTURE - timedelta(seconds=30))
    leg_id = task.legs[0].leg_id
    first = await swept(
        sessionmaker,
        lambda session: escalate_waiting_legs(
            session,
            now=FUTURE + timedelta(seconds=settings.escalation_wait_s),
            wait_limit_s=settings.escalation_wait_s,
            deadline_margin_s=settings.escalation_deadline_margin_s,
        ),
    )
    assert [e.data["reason"] for e in first if e.subject == str(task.task_id)] == ["waited_too_long"]
    async with sessionmaker() as session, session.begin():
        await assign_by_hand(
            session,
            leg_id=leg_id,
            volunteer_id=v.id,
            organisation_id=ORGANISATION,
            policy=policy_from(settings),
            eta=eta_policy(settings),
        )
    # The leg entered `assigned` no earlier than it was submitted (the test's clock is a day ahead).
    entered = FUTURE - timedelta(seconds=30)

    def mine(events: list[CloudEvent]) -> list[tuple[str, str]]:
        return [(e.data["reason"], e.data["leg_status"]) for e in events if e.subject == str(task.task_id)]

    assigned_limit = timedelta(seconds=limits["assigned"])
    assert mine(await overdue(sessionmaker, settings, entered + assigned_limit - timedelta(seconds=5))) == []
    late = entered + assigned_limit + timedelta(seconds=5)
    raised = await overdue(sessionmaker, settings, late)
    assert mine(raised) == [("waited_too_long_assigned", "assigned")]
    assert [e.data["leg_ids"] for e in raised if e.subject == str(task.task_id)] == [[str(leg_id)]]
    assert mine(await overdue(sessionmaker, settings, late + timedelta(seconds=60))) == [], (
        "once per interval"
    )
    again = late + timedelta(seconds=settings.leg_escalation_repeat_s + 1)
    assert mine(await overdue(sessionmaker, settings, again)) == [("waited_too_long_assigned", "assigned")]

    async with sessionmaker() as session, session.begin():
        await report_picked_up(session, leg_id=leg_id, volunteer_id=v.id, eta=eta_policy(settings))
    picked_up_late = entered + timedelta(seconds=limits["picked_up"] + 5)
    assert mine(await overdue(sessionmaker, settings, picked_up_late)) == [
        ("waited_too_long_picked_up", "picked_up")
    ]
    published = await events_of(sessionmaker, task.task_id, "task.escalated")
    assert [e.data["reason"] for e in published] == [
        "waited_too_long",
        "waited_too_long_assigned",
        "waited_too_long_assigned",
        "waited_too_long_picked_up",
    ]


@pytest.mark.usefixtures("relay_held")
async def test_a_leg_that_will_miss_its_deliver_by_slips_late_and_escalates_once_across_two_replicas(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings()
    deliver_by = datetime.now(UTC) + timedelta(minutes=10)
    # Some 22 km away by bicycle (and the goods ready only a day ahead): far past ten minutes.
    task_id, leg_id, _ = await assigned_leg(
        sessionmaker, settings, volunteer_at=(lat - 0.2, lon), task_at=(lat, lon), deliver_by=deliver_by
    )
    (estimate,) = await events_of(sessionmaker, task_id, "leg.eta_updated")
    assert estimate.data["late"] is True and estimate.data["slipped"] is True and estimate.data["slip"] == 1
    # A running dispatcher's sweep, in the present, may raise it first; the test's clock is a day
    # ahead, past that escalation's repeat interval. Two dispatchers' sweeps at the same moment:
    # the key lets one of them raise it.
    now = FUTURE
    both = await asyncio.gather(overdue(sessionmaker, settings, now), overdue(sessionmaker, settings, now))
    raised = [e for events in both for e in events if e.subject == str(task_id)]
    assert [e.data["reason"] for e in raised] == ["will_miss_deliver_by"]
    assert raised[0].data["leg_ids"] == [str(leg_id)]
    assert datetime.fromisoformat(raised[0].data["dropoff_eta"]) > deliver_by
    assert datetime.fromisoformat(raised[0].data["deliver_by"]) == deliver_by


async def test_estimates_are_made_with_the_configured_speeds(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings().model_copy(update={"eta_speed_bicycle_kmh": 6.0})
    _, leg_id, _ = await assigned_leg(sessionmaker, settings, volunteer_at=(lat, lon), task_at=(lat, lon))
    leg = await leg_row(sessionmaker, leg_id)
    assert leg.pickup_eta is not None and leg.dropoff_eta is not None
    onwards = (leg.dropoff_eta - leg.pickup_eta).total_seconds() / 60
    assert (
        abs(onwards - 2 * minutes_by_bicycle(stack.settings(), (lat, lon), (lat + 0.01, lon + 0.01))) < 0.01
    )


def test_the_policy_follows_the_settings() -> None:
    policy = eta_policy(Settings(eta_speed_car_kmh=40.0, eta_road_factor=1.5, eta_publish_min_change_s=60))
    assert isinstance(policy, EtaPolicy)
    assert policy.speeds.kmh["car"] == 40.0 and policy.speeds.road_factor == 1.5 and policy.min_change_s == 60
