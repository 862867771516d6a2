"""The dispatch board's reads: the queue puts the most urgent first, then the longest-waiting, and
neither it nor the columns ever show another organisation's legs."""

from __future__ import annotations

import uuid

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.service_layer import board
from tests.integration.intake.conftest import Operator, submit, task_body


async def test_the_queue_is_most_urgent_first_then_oldest_and_stays_in_its_organisation(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    submitted = {}
    for name, priority in (
        ("old-routine", "routine"),
        ("urgent", "urgent"),
        ("new-routine", "routine"),
        ("critical", "critical"),
    ):
        status, body, _ = await submit(
            http,
            intake,
            operator,
            task_body(priority=priority, external_ref=name, dropoffs=task_body()["dropoffs"][:1]),
        )
        assert status == 201, body
        submitted[name] = body
    async with sessionmaker() as session:
        queue = await board.unassigned_legs(session, organisation_id=operator.organisation_id)
        others = await board.unassigned_legs(session, organisation_id=uuid.UUID(int=0))
    order = [next(n for n, b in submitted.items() if b["id"] == str(leg.task_id)) for leg in queue]
    assert order == ["critical", "urgent", "old-routine", "new-routine"]
    assert queue[0].pickup_address == "Depot" and queue[0].dropoff_lat == -45.88
    assert others == []

    # A leg in a volunteer's hands leaves the queue for that volunteer's column (as the read model
    # records an assignment).
    leg_id = submitted["urgent"]["legs"][0]["id"]
    volunteer_id = "00000000-0000-4000-8000-000000000001"
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE intake.legs SET status = 'assigned', volunteer_id = :v, volunteer_name = 'Lin'"
                " WHERE id = :id"
            ),
            {"v": volunteer_id, "id": leg_id},
        )
    async with sessionmaker() as session:
        queue = await board.unassigned_legs(session, organisation_id=operator.organisation_id)
        held = await board.held_legs(session, organisation_id=operator.organisation_id)
    assert leg_id not in {str(leg.id) for leg in queue}
    assert [str(leg.id) for legs in held.values() for leg in legs] == [leg_id]
    assert next(iter(held.values()))[0].volunteer_name == "Lin"
