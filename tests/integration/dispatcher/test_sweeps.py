"""The sweeps beside the matching loop: lapsed offers handed back every window, escalations less often."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.tables import EscalationRow, LegRow, OfferRow
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.sweeps import sweep_once
from tests.conftest import Stack
from tests.integration.dispatcher.conftest import (
    FUTURE,
    OFFER_TTL,
    add_volunteer,
    matching_round,
    submit_task,
)

Maker = async_sessionmaker[AsyncSession]


async def test_a_sweep_hands_back_lapsed_offers_and_escalates_only_when_asked(
    sessionmaker: Maker, stack: Stack, place: tuple[float, float]
) -> None:
    lat, lon = place
    settings = stack.settings()
    org = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        volunteer = await add_volunteer(session, lat=lat, lon=lon, organisation_id=org)
        offered = await submit_task(session, lat=lat, lon=lon, organisation_id=org)
        # Nobody of its organisation is anywhere near: it waits until an operator hears of it.
        unplaced = await submit_task(session, lat=lat, lon=lon, organisation_id=uuid.uuid4())
    assert volunteer.id in await matching_round(sessionmaker, stack, Roster())
    later = FUTURE + max(OFFER_TTL, timedelta(seconds=settings.escalation_wait_s))

    async def state() -> tuple[str | None, str | None, bool]:
        async with sessionmaker() as session:
            leg_id = offered.legs[0].leg_id
            offer = await session.scalar(select(OfferRow.status).where(OfferRow.leg_id == leg_id))
            leg = await session.scalar(select(LegRow.status).where(LegRow.id == leg_id))
            escalated = await session.scalar(
                select(EscalationRow.task_id).where(EscalationRow.task_id == unplaced.task_id)
            )
        return offer, leg, escalated is not None

    assert await state() == ("live", "offered", False)
    await sweep_once(settings, sessionmaker, escalate=False, now=later)
    assert await state() == ("expired", "pending", False)
    await sweep_once(settings, sessionmaker, escalate=True, now=later)
    assert (await state())[2]
