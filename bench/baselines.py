"""Baselines for the intake benchmark: the least an aiohttp handler can do, alone and with one INSERT.

Run as `python -m bench.baselines hello PORT`, `python -m bench.baselines insert PORT DSN`, or
`python -m bench.baselines accept PORT` (a location report: parse the JSON body, answer 202).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


async def insert(request: web.Request) -> web.Response:
    body = await request.json()
    task_id = uuid.uuid4()
    async with request.app[POOL].acquire() as connection:
        await connection.execute(
            "INSERT INTO bench_baseline (id, body) VALUES ($1, $2::jsonb)", task_id, json.dumps(body)
        )
    return web.json_response({"id": str(task_id)}, status=201)


async def accept(request: web.Request) -> web.Response:
    await request.json()
    return web.Response(status=202)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    if kind == "hello":
        app.router.add_route("*", "/v1/tasks", hello)
    elif kind == "accept":
        app.router.add_post("/v1/me/location", accept)
    else:
        dsn = sys.argv[3]

        async def pool(app: web.Application) -> AsyncIterator[None]:
            app[POOL] = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
            async with app[POOL].acquire() as connection:
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS bench_baseline (id uuid PRIMARY KEY, body jsonb NOT NULL)"
                )
            yield
            await app[POOL].close()

        app.cleanup_ctx.append(pool)
        app.router.add_post("/v1/tasks", insert)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
