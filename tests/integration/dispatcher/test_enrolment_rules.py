"""Vetting against PostgreSQL and the matcher: a pending or rejected volunteer gets no offer, even
nearest and on duty, and no leg by hand; approval lets them in."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import OfferRow, VolunteerRow
from services.dispatcher.domain.eligibility import Policy
from services.dispatcher.domain.errors import VolunteerNotVetted
from services.dispatcher.service_layer.enrolment import vet
from services.dispatcher.service_layer.legs import assign_by_hand
from services.dispatcher.service_layer.roster import Roster
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import add_volunteer, matching_round, submit_task

Maker = async_sessionmaker[AsyncSession]
POLICY = Policy()
ROSTER = Roster()


async def offered_to(session: AsyncSession, leg_id: uuid.UUID) -> uuid.UUID | None:
    row = await session.execute(select(OfferRow).where(OfferRow.leg_id == leg_id, OfferRow.status == "live"))
    offer = row.scalar_one_or_none()
    return offer.volunteer_id if offer is not None else None


@pytest.mark.parametrize("status", ["pending", "rejected"])
async def test_an_unvetted_volunteer_gets_no_offer_even_nearest_and_on_duty(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float], status: str
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        unvetted = await add_volunteer(session, lat=lat, lon=lon, vetting_status=status)
        task = await submit_task(session, lat=lat, lon=lon, priority="critical")
    leg_id = task.legs[0].leg_id
    offered = await matching_round(sessionmaker, stack, ROSTER)
    assert unvetted.id not in offered
    async with sessionmaker() as session:
        assert await offered_to(session, leg_id) is None
    # A vetted volunteer farther off gets it.
    async with sessionmaker() as session, session.begin():
        vetted = await add_volunteer(session, lat=lat + 0.005, lon=lon)
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offered_to(session, leg_id) == vetted.id


async def test_approval_makes_a_pending_volunteer_eligible(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    async with sessionmaker() as session, session.begin():
        pending = await add_volunteer(session, lat=lat, lon=lon, vetting_status="pending")
        task = await submit_task(session, lat=lat, lon=lon, priority="critical")
    leg_id = task.legs[0].leg_id
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offered_to(session, leg_id) is None
    async with sessionmaker() as session, session.begin():
        row, records = await vet(
            session=session,
            volunteer_id=pending.id,
            organisation_id=pending.organisation_id,
            identity_checked=True,
            insured=True,
            insured_until=None,
            training_done=True,
            decision="approve",
            note="ID card and insurance seen",
        )
        assert row.vetting_status == "approved"
        assert [r.decision for r in records] == ["approve"]
    await matching_round(sessionmaker, stack, ROSTER)
    async with sessionmaker() as session:
        assert await offered_to(session, leg_id) == pending.id


@pytest.mark.parametrize("status", ["pending", "rejected"])
async def test_hand_assignment_refuses_an_unvetted_volunteer_even_with_an_override(
    sessionmaker: Maker, place: tuple[float, float], status: str
) -> None:
    lat, lon = place
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        v = await add_volunteer(session, lat=lat, lon=lon, organisation_id=org, vetting_status=status)
        task = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
    for override in (None, "I know them"):
        with pytest.raises(VolunteerNotVetted):
            async with sessionmaker() as session, session.begin():
                await assign_by_hand(
                    session,
                    leg_id=task.legs[0].leg_id,
                    volunteer_id=v.id,
                    organisation_id=org,
                    policy=POLICY,
                    override_reason=override,
                )
    async with sessionmaker() as session:
        row = await session.get(VolunteerRow, v.id)
        assert row is not None and row.active_legs == 0
