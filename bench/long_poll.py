"""Long polls: what thousands of idle waiting polls cost the dispatcher, and how fast a change wakes one.

Two dispatcher processes share one database. Volunteers' apps wait on the first; the second
changes their assignments (a hand assignment), so each wake-up crosses processes through
LISTEN/NOTIFY. Baselines are measured in the same run: the dispatcher's CPU while idle with no
polls waiting, against its CPU while idle with N polls waiting.

Run: `python -m bench.long_poll [--polls N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from typing import Any

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
from shared.settings import Settings


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def _idle_cpu(pid: int, seconds: float) -> float:
    before = _cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return _cpu_seconds(pid) - before


async def _register(http: aiohttp.ClientSession, url: str, operator: str, n: int) -> list[tuple[str, str]]:
    """n volunteers (id, token): insured but off duty, so no batch ever offers them anything."""
    sem = asyncio.Semaphore(20)

    async def one(i: int) -> tuple[str, str]:
        async with (
            sem,
            http.post(
                f"{url}/v1/volunteers",
                json={"name": f"Volunteer {i}", "vehicle": "bicycle", "insured": True, "max_active_legs": 1},
                headers={"Authorization": f"Bearer {operator}"},
            ) as response,
        ):
            body = await response.json()
            return body["id"], body["token"]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def measure_async(*, polls: int, idle_s: float, wakes: int) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.start()
    services = ServiceProcesses(
        env=service_env(
            {
                **stack.settings_env(),
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_PER_S": "1000000",
                "RATE_LIMIT_BURST": "1000000",
            }
        )
    )
    try:
        settings = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.kafka_bootstrap)
        await asyncio.to_thread(prepare, settings)
        tokens = await admin.bootstrap_demo(settings)
        services.start("intake")
        services.start("dispatcher")
        services.start("dispatcher-2", service="dispatcher")
        services.wait_ready(services=("intake", "dispatcher", "dispatcher-2"))
        waiter_url, changer_url = services.url("dispatcher"), services.url("dispatcher-2")
        pid = services.processes["dispatcher"].pid
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            volunteers = await _register(http, waiter_url, tokens["operator_token"], polls)
            await asyncio.sleep(2)
            idle_without = await _idle_cpu(pid, idle_s)

            async def wait(token: str, etag: str | None = None) -> tuple[int, float]:
                headers = {"Authorization": f"Bearer {token}"}
                if etag:
                    headers["If-None-Match"] = etag
                async with http.get(f"{waiter_url}/v1/me/assignments?wait=60", headers=headers) as response:
                    await response.read()
                    return response.status, time.perf_counter()

            etags = []
            for _, token in volunteers:
                async with http.get(
                    f"{waiter_url}/v1/me/assignments", headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    etags.append(response.headers["ETag"])
            waiting = [
                asyncio.create_task(wait(token, etag))
                for (_, token), etag in zip(volunteers, etags, strict=True)
            ]
            # Let every poll arrive and settle into waiting: until a second passes with almost no CPU.
            for _ in range(60):
                if await _idle_cpu(pid, 1.0) < 0.05:
                    break
            idle_with = await _idle_cpu(pid, idle_s)

            # Wake-ups across processes: a task is submitted and assigned by hand on the other process.
            latencies = []
            for i in range(min(wakes, polls)):
                volunteer_id, _ = volunteers[i]
                async with http.post(
                    f"{services.url('intake')}/v1/tasks",
                    json={
                        "kind": "errand",
                        "pickup": {"lat": 29.87, "lon": 121.55},
                        "dropoffs": [{"lat": 29.88, "lon": 121.56}],
                    },
                    headers={
                        "Authorization": f"Bearer {tokens['operator_token']}",
                        "Idempotency-Key": str(uuid.uuid4()),
                    },
                ) as response:
                    leg_id = (await response.json())["legs"][0]["id"]
                while True:  # the dispatcher learns of the leg through Kafka
                    started = time.perf_counter()
                    async with http.post(
                        f"{changer_url}/v1/legs/{leg_id}/assign",
                        # Off duty on purpose (see above): only an override gives them the leg.
                        json={"volunteer_id": volunteer_id, "override": {"reason": "long-poll benchmark"}},
                        headers={"Authorization": f"Bearer {tokens['operator_token']}"},
                    ) as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.05)
                status, woke = await waiting[i]
                assert status == 200, status
                latencies.append((woke - started) * 1000)
            for task in waiting[len(latencies) :]:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    finally:
        services.stop_all()
        stack.stop()
    latencies.sort()
    return {
        "polls_waiting": polls,
        "idle_window_s": idle_s,
        "cpu_s_idle_without_polls": round(idle_without, 3),
        "cpu_s_idle_with_polls": round(idle_with, 3),
        "cpu_share_with_polls": round(idle_with / idle_s, 4),
        "wakeups": len(latencies),
        "wake_ms_p50": round(statistics.median(latencies), 1),
        "wake_ms_max": round(latencies[-1], 1),
        "note": "wake time includes the hand-assignment request that causes it",
    }


def measure(*, polls: int = 2000, idle_s: float = 10.0, wakes: int = 20) -> dict[str, Any]:
    return asyncio.run(measure_async(polls=polls, idle_s=idle_s, wakes=wakes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(measure(polls=args.polls, idle_s=args.idle), indent=2))


if __name__ == "__main__":
    main()
