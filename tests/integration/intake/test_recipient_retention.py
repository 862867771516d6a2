"""A recipient with no task and no renewal for the retention time is erased, in batches, once."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.service_layer.register import erase_inactive
from tests.conftest import Stack
from tests.integration.intake.conftest import Operator, submit, task_body

YEAR_S = 365 * 86400.0


async def test_inactive_recipients_are_erased_unless_renewed_or_used_and_twice_is_harmless(
    http: aiohttp.ClientSession,
    intake: str,
    operator: Operator,
    stack: Stack,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = {}
    for name in ("old", "older", "renewed", "used", "new"):
        async with http.post(
            f"{intake}/v1/recipients",
            json={"name": name, "lat": -45.9, "lon": 170.5},
            headers=operator.headers,
        ) as response:
            assert response.status == 201
            ids[name] = (await response.json())["id"]
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute(
            "UPDATE intake.recipients SET active_at = now() - interval '400 days' WHERE id = ANY($1::uuid[])",
            [uuid.UUID(ids[name]) for name in ("old", "older", "renewed", "used")],
        )
    finally:
        await connection.close()
    async with http.post(
        f"{intake}/v1/recipients/{ids['renewed']}/renew", headers=operator.headers
    ) as response:
        assert response.status == 200
    status, _, _ = await submit(http, intake, operator, task_body(dropoffs=[{"recipient_id": ids["used"]}]))
    assert status == 201

    async def erase_in_batches_of_one() -> int:
        """What the job does: a batch per transaction until one comes back empty."""
        total = 0
        while True:
            async with sessionmaker() as session, session.begin():
                erased = await erase_inactive(session, retention_s=YEAR_S, batch=1)
            if not erased:
                return total
            total += erased

    assert await erase_in_batches_of_one() == 2
    assert await erase_in_batches_of_one() == 0

    for name, expected in (("old", 404), ("older", 404), ("renewed", 200), ("used", 200), ("new", 200)):
        async with http.get(f"{intake}/v1/recipients/{ids[name]}", headers=operator.headers) as response:
            assert response.status == expected, name
