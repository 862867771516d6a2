"""Ready means working: `/readyz` answers 200 only once the consumer owns its partitions and has
caught up, and the relay publishes; until then 503 says which part is not working yet."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from services.notifier.bootstrap import create_app
from shared.settings import Settings

Client = TestClient[web.Request, web.Application]


async def test_the_notifier_is_not_ready_until_its_consumer_owns_its_partitions_and_caught_up(
    notifier_settings: Settings, aiohttp_client: Callable[[web.Application], Awaitable[Client]]
) -> None:
    settings = notifier_settings.model_copy(
        update={"notifier_consumer_group": f"notifier-ready-{uuid.uuid4().hex[:8]}"}
    )
    client = await aiohttp_client(create_app(settings))
    first = await client.get("/readyz")
    assert first.status == 503
    assert "no partitions assigned yet" in (await first.json())["detail"]

    deadline = asyncio.get_running_loop().time() + 90
    while (answer := await client.get("/readyz")).status != 200:
        detail = (await answer.json())["detail"]
        assert asyncio.get_running_loop().time() < deadline, f"never ready: {detail}"
        await asyncio.sleep(0.2)
    assert (await answer.json()) == {"status": "ready"}
