"""Hand assignment, moves and releases against PostgreSQL: refusals, overrides, loads, events."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import LegRow, RejectionRow, VolunteerRow, outbox
from services.dispatcher.domain.eligibility import Policy, local_day
from services.dispatcher.domain.errors import (
    DailyCapReached,
    InsuranceLapsed,
    RestOwed,
    TransitionRefused,
    VolunteerAtLimit,
    VolunteerOffDuty,
)
from services.dispatcher.service_layer.deliveries import report_picked_up
from services.dispatcher.service_layer.legs import assign_by_hand, move_leg, release_volunteers_legs
from services.dispatcher.service_layer.matcher import policy_from
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.views import assignments
from shared.errors import NotFound
from shared.events import CloudEvent
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import FUTURE, add_volunteer, matching_round, submit_task

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
def policy(stack: Stack) -> Policy:
    return policy_from(stack.settings())


async def events_of(session: AsyncSession, task_id: uuid.UUID) -> list[CloudEvent]:
    """The events queued in this transaction (or not yet relayed) for a task, in order."""
    rows = await session.execute(
        select(outbox.c.payload).where(outbox.c.key == str(task_id)).order_by(outbox.c.id)
    )
    return [CloudEvent.from_bytes(raw) for raw in rows.scalars()]


def refusals(policy: Policy) -> list[tuple[str, dict[str, Any], type[Exception]]]:
    today = local_day(FUTURE, policy.welfare_limits.time_zone)
    return [
        ("off duty", {"on_duty": False, "duty_started_at": None}, VolunteerOffDuty),
        ("uninsured", {"insured": False}, InsuranceLapsed),
        ("insurance lapsed", {"insured_until": today - timedelta(days=1)}, InsuranceLapsed),
        ("rest owed", {"rest_until": FUTURE + timedelta(minutes=20)}, RestOwed),
        (
            "legs cap",
            {"legs_day": today, "legs_done_today": policy.welfare_limits.daily_max_legs},
            DailyCapReached,
        ),
        (
            "duty cap",
            {
                "duty_day": today,
                "duty_today_s": policy.welfare_limits.daily_max_on_duty.total_seconds(),
                "duty_started_at": FUTURE - timedelta(minutes=1),
            },
            DailyCapReached,
        ),
    ]


async def test_each_refusal_holds_unless_overridden_and_the_reason_is_on_the_event(
    sessionmaker: Maker, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    for name, fields, error in refusals(policy):
        async with sessionmaker() as session, session.begin():
            v = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org, **fields)
            task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
        leg_id = task.legs[0].leg_id
        with pytest.raises(error):
            async with sessionmaker() as session, session.begin():
                await assign_by_hand(
                    session, leg_id=leg_id, volunteer_id=v.id, organisation_id=org, policy=policy, now=FUTURE
                )
        async with sessionmaker() as session:
            leg = await session.get(LegRow, leg_id)
            assert leg is not None and (leg.status, leg.volunteer_id) == ("pending", None), name
        async with sessionmaker() as session, session.begin():
            leg = await assign_by_hand(
                session,
                leg_id=leg_id,
                volunteer_id=v.id,
                organisation_id=org,
                policy=policy,
                override_reason=f"nobody else near ({name})",
                now=FUTURE,
            )
            assert (leg.status, leg.volunteer_id) == ("assigned", v.id)
            assigned = [e for e in await events_of(session, task.task_id) if e.type == "leg.assigned"]
            assert assigned[-1].data["override_reason"] == f"nobody else near ({name})", name
            assert assigned[-1].data["manual"] is True
        async with sessionmaker() as session:
            row = await session.get(VolunteerRow, v.id)
            assert row is not None and row.active_legs == 1


async def test_a_volunteer_fit_to_work_needs_no_override(
    sessionmaker: Maker, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    async with sessionmaker() as session, session.begin():
        await assign_by_hand(
            session,
            leg_id=task.legs[0].leg_id,
            volunteer_id=v.id,
            organisation_id=org,
            policy=policy,
            now=FUTURE,
        )
        event = [e for e in await events_of(session, task.task_id) if e.type == "leg.assigned"][-1]
        assert event.data.get("override_reason") is None


async def test_moving_a_leg_shifts_the_load_and_the_apps_and_is_recorded(
    sessionmaker: Maker, stack: Stack, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    key = stack.settings().data_key
    async with sessionmaker() as session, session.begin():
        first = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        second = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        resting = await add_volunteer(
            session, lat=lat + 1, lon=lon, organisation_id=org, rest_until=FUTURE + timedelta(minutes=10)
        )
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    leg_id = task.legs[0].leg_id
    async with sessionmaker() as session, session.begin():
        await assign_by_hand(
            session, leg_id=leg_id, volunteer_id=first.id, organisation_id=org, policy=policy, now=FUTURE
        )
    with pytest.raises(RestOwed):
        async with sessionmaker() as session, session.begin():
            await move_leg(
                session,
                leg_id=leg_id,
                volunteer_id=resting.id,
                organisation_id=org,
                policy=policy,
                now=FUTURE,
            )
    async with sessionmaker() as session, session.begin():
        leg = await move_leg(
            session, leg_id=leg_id, volunteer_id=second.id, organisation_id=org, policy=policy, now=FUTURE
        )
        assert (leg.status, leg.volunteer_id) == ("assigned", second.id)
        event = (await events_of(session, task.task_id))[-1]
        assert event.type == "leg.assigned"
        assert (event.data["volunteer_id"], event.data["moved_from"]) == (str(second.id), str(first.id))
        audited = await session.execute(
            text("SELECT action, volunteer_id FROM auth.audit WHERE leg_id = :leg ORDER BY id"),
            {"leg": leg_id},
        )
        assert ("leg.moved", second.id) in [tuple(row) for row in audited]
    async with sessionmaker() as session:
        loads = {
            v.id: v.active_legs
            for v in (await session.execute(select(VolunteerRow).where(VolunteerRow.organisation_id == org)))
            .scalars()
            .all()
        }
        assert (loads[first.id], loads[second.id]) == (0, 1)
        assert (await assignments(session, volunteer_id=first.id, data_key=key))["legs"] == []
        shown = (await assignments(session, volunteer_id=second.id, data_key=key))["legs"]
        assert [leg["id"] for leg in shown] == [str(leg_id)]
    async with sessionmaker() as session, session.begin():
        await move_leg(  # to the resting volunteer after all: the override is recorded
            session,
            leg_id=leg_id,
            volunteer_id=resting.id,
            organisation_id=org,
            policy=policy,
            override_reason="lives next door",
            now=FUTURE,
        )
        event = (await events_of(session, task.task_id))[-1]
        assert (event.data["moved_from"], event.data["override_reason"]) == (
            str(second.id),
            "lives next door",
        )


async def test_a_picked_up_leg_is_not_moved_and_other_organisations_see_nothing(
    sessionmaker: Maker, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org, other = uuid.uuid4(), uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        holder = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        mine = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org)
        theirs = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=other)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org, legs=2)
    moved, picked = (leg.leg_id for leg in task.legs)
    async with sessionmaker() as session, session.begin():
        for leg_id in (moved, picked):
            await assign_by_hand(
                session, leg_id=leg_id, volunteer_id=holder.id, organisation_id=org, policy=policy, now=FUTURE
            )
        await report_picked_up(session, leg_id=picked, volunteer_id=holder.id)
    with pytest.raises(TransitionRefused, match="picked_up"):
        async with sessionmaker() as session, session.begin():
            await move_leg(
                session, leg_id=picked, volunteer_id=mine.id, organisation_id=org, policy=policy, now=FUTURE
            )
    for leg_id, volunteer_id, organisation_id in (
        (moved, mine.id, other),  # the leg is not theirs
        (moved, theirs.id, org),  # nor is the volunteer ours
    ):
        with pytest.raises(NotFound):
            async with sessionmaker() as session, session.begin():
                await move_leg(
                    session,
                    leg_id=leg_id,
                    volunteer_id=volunteer_id,
                    organisation_id=organisation_id,
                    policy=policy,
                    now=FUTURE,
                )
    for volunteer_id, to, organisation_id in (
        (holder.id, None, other),
        (holder.id, theirs.id, org),
    ):
        with pytest.raises(NotFound):
            async with sessionmaker() as session, session.begin():
                await release_volunteers_legs(
                    session,
                    volunteer_id=volunteer_id,
                    organisation_id=organisation_id,
                    policy=policy,
                    to_volunteer_id=to,
                    now=FUTURE,
                )
    async with sessionmaker() as session:
        leg = await session.get(LegRow, moved)
        assert leg is not None and leg.volunteer_id == holder.id


async def test_releasing_an_ill_volunteers_legs_sends_them_back_to_pending_but_not_to_them(
    sessionmaker: Maker, stack: Stack, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        ill = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org, max_active_legs=3)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org, legs=3)
    leg_ids = [leg.leg_id for leg in task.legs]
    async with sessionmaker() as session, session.begin():
        for leg_id in leg_ids:
            await assign_by_hand(
                session, leg_id=leg_id, volunteer_id=ill.id, organisation_id=org, policy=policy, now=FUTURE
            )
        await report_picked_up(session, leg_id=leg_ids[2], volunteer_id=ill.id)
    async with sessionmaker() as session, session.begin():
        released = await release_volunteers_legs(
            session, volunteer_id=ill.id, organisation_id=org, policy=policy, reason="fell ill", now=FUTURE
        )
        assert sorted(leg.id for leg in released.legs) == sorted(leg_ids[:2])
        assert {(leg.status, leg.volunteer_id) for leg in released.legs} == {("pending", None)}
        assert [leg.id for leg in released.needs_decision] == [leg_ids[2]]
        events = [e for e in await events_of(session, task.task_id) if e.type == "leg.problem_reported"]
        assert sorted(e.data["leg_id"] for e in events) == sorted(str(i) for i in leg_ids[:2])
        assert all("fell ill" in e.data["reason"] for e in events)
    async with sessionmaker() as session:
        row = await session.get(VolunteerRow, ill.id)
        assert row is not None and row.active_legs == 1  # the picked-up leg stays theirs
        rejected = await session.execute(
            select(RejectionRow.leg_id).where(RejectionRow.volunteer_id == ill.id)
        )
        assert sorted(rejected.scalars()) == sorted(leg_ids[:2])
        picked = await session.get(LegRow, leg_ids[2])
        assert picked is not None and (picked.status, picked.volunteer_id) == ("picked_up", ill.id)
    # The matcher offers the released legs again, but not to the volunteer who gave them up.
    offered = await matching_round(sessionmaker, stack, Roster())
    assert ill.id not in offered


async def test_releasing_to_another_volunteer_moves_every_unpicked_leg_at_once(
    sessionmaker: Maker, policy: Policy, place: tuple[float, float]
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        ill = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org, max_active_legs=3)
        small = await add_volunteer(session, lat=lat + 1, lon=lon, organisation_id=org, max_active_legs=1)
        off = await add_volunteer(
            session,
            lat=lat + 1,
            lon=lon,
            organisation_id=org,
            max_active_legs=3,
            on_duty=False,
            duty_started_at=None,
        )
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org, legs=2)
    leg_ids = [leg.leg_id for leg in task.legs]
    async with sessionmaker() as session, session.begin():
        for leg_id in leg_ids:
            await assign_by_hand(
                session, leg_id=leg_id, volunteer_id=ill.id, organisation_id=org, policy=policy, now=FUTURE
            )
    with pytest.raises(VolunteerAtLimit):  # two legs do not fit a limit of one: none moves
        async with sessionmaker() as session, session.begin():
            await release_volunteers_legs(
                session,
                volunteer_id=ill.id,
                organisation_id=org,
                policy=policy,
                to_volunteer_id=small.id,
                now=FUTURE,
            )
    with pytest.raises(VolunteerOffDuty):
        async with sessionmaker() as session, session.begin():
            await release_volunteers_legs(
                session,
                volunteer_id=ill.id,
                organisation_id=org,
                policy=policy,
                to_volunteer_id=off.id,
                now=FUTURE,
            )
    async with sessionmaker() as session, session.begin():
        released = await release_volunteers_legs(
            session,
            volunteer_id=ill.id,
            organisation_id=org,
            policy=policy,
            to_volunteer_id=off.id,
            override_reason="on call tonight",
            now=FUTURE,
        )
        assert {(leg.status, leg.volunteer_id) for leg in released.legs} == {("assigned", off.id)}
        assert released.needs_decision == []
        events = [e for e in await events_of(session, task.task_id) if e.type == "leg.assigned"]
        events = events[-2:]
        assert {(e.data["moved_from"], e.data["override_reason"]) for e in events} == {
            (str(ill.id), "on call tonight")
        }
    async with sessionmaker() as session:
        loads = {
            v.id: v.active_legs
            for v in (await session.execute(select(VolunteerRow).where(VolunteerRow.organisation_id == org)))
            .scalars()
            .all()
        }
        assert (loads[ill.id], loads[small.id], loads[off.id]) == (0, 0, 2)
