"""Start-up: how soon after "ready" a task reaches a volunteer, and how soon after a dispatcher restart.

One embedded stack, the three services as processes, one volunteer on duty at the pickup. Measured
`repeat` times (3 by default; the machine may be shared, so the spread is printed) with the consumer
timings the embedded stack runs with, then once, as a second baseline, with the settings' defaults
(tuned for Apache Kafka, where a group's join does not wait on them):

- `start_to_ready_s`: from starting the services to every `/readyz` answering 200;
- `first_offer_s`: from submitting the first task after ready to the volunteer's app seeing the offer
  (target: one batch window + 1 s); `cold_start_offer_s` is the two together, the baseline a restart
  is compared with (`restart_ratio_vs_cold_start`, medians of the repeats);
- `restart_offer_s`: from starting a dispatcher again (after SIGTERM) with a task submitted at that
  moment, to the volunteer's app seeing its offer (target: 5 s); `kill_restart_offer_s` the same
  after `kill -9`. `*_phases_s` say where the time went, from the dispatcher's own log: its code
  imported (`imported`), serving HTTP (`serving`), its consumer owning its partitions
  (`partitions_assigned`), the matcher writing the offer (`offer_written`), the app seeing it.

Run: `python -m bench.startup [repeat] [--no-defaults]`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EMBEDDED_BROKER_TIMINGS, EmbeddedStack
from shared.settings import Settings

PICKUP = {"lat": 29.87, "lon": 121.55}
WINDOW_MS = 500
# The dispatcher's log lines that mark a restart's phases, in the order they happen.
PHASES = (
    ("service.starting", "imported"),  # the interpreter is up and the service's code imported
    ("service.started", "serving"),  # database pool, producer and HTTP listener up
    ("consumer.assigned", "partitions_assigned"),  # the group joined: the consumer owns its partitions
    ("matcher.offered", "offer_written"),  # a matching round wrote the offer
)


def _phases(log_file: Path, since: float, until: float) -> dict[str, float]:
    """Seconds from `since` (a wall-clock time) to the first line of each phase logged after it
    (and before `until`)."""
    found: dict[str, float] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            at = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        for event, name in PHASES:
            if record.get("event") == event and since <= at < until and name not in found:
                found[name] = round(at - since, 2)
    return found


async def _submit(http: aiohttp.ClientSession, intake: str, operator: str) -> str:
    async with http.post(
        f"{intake}/v1/tasks",
        json={"kind": "errand", "pickup": PICKUP, "dropoffs": [{"lat": 29.88, "lon": 121.56}]},
        headers={"Authorization": f"Bearer {operator}", "Idempotency-Key": str(uuid.uuid4())},
    ) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["legs"][0]["id"])


async def _offered(http: aiohttp.ClientSession, dispatcher: str, token: str, leg_id: str) -> float:
    """Seconds until the volunteer's app sees an offer for `leg_id`, declining it then (so the next
    measurement starts with the volunteer free); connection refusals while a dispatcher starts are
    retried."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        try:
            async with http.get(f"{dispatcher}/v1/me/assignments?wait=5", headers=headers) as response:
                body = await response.json() if response.status == 200 else {"offers": []}
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
            continue
        for offer in body["offers"]:
            if offer["leg"]["id"] == leg_id:
                seen = time.perf_counter() - started
                async with http.post(f"{dispatcher}/v1/me/offers/{offer['id']}/decline", headers=headers):
                    pass
                return seen
        if time.perf_counter() - started > 180:
            raise RuntimeError(f"leg {leg_id} was not offered within 180 s")


async def _volunteer(http: aiohttp.ClientSession, dispatcher: str, operator: str) -> str:
    async with http.post(
        f"{dispatcher}/v1/volunteers",
        json={"name": "Chen Jing", "vehicle": "ebike", "insured": True, "max_active_legs": 5},
        headers={"Authorization": f"Bearer {operator}"},
    ) as response:
        token = str((await response.json())["token"])
    headers = {"Authorization": f"Bearer {token}"}
    async with http.put(f"{dispatcher}/v1/me/duty", json={"on_duty": True}, headers=headers):
        pass
    async with http.post(f"{dispatcher}/v1/me/location", json=PICKUP, headers=headers):
        pass
    return token


def measure_with(timings: dict[str, str]) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.start()
    env = {
        **stack.settings_env(),
        **timings,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "DISPATCH_BATCH_WINDOW_MS": str(WINDOW_MS),
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    services = ServiceProcesses(env=service_env(env), log_dir=logs)
    try:
        settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
        prepare(settings)
        tokens = asyncio.run(admin.bootstrap_demo(settings))
        started = time.perf_counter()
        services.start_all()
        services.wait_ready(timeout_s=180)
        start_to_ready = time.perf_counter() - started

        async def offers() -> dict[str, float]:
            operator = tokens["operator_token"]
            intake, dispatcher = services.url("intake"), services.url("dispatcher")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                token = await _volunteer(http, dispatcher, operator)
                first = await _offered(http, dispatcher, token, await _submit(http, intake, operator))
                found: dict[str, Any] = {"first_offer_s": first, "cold_start_offer_s": start_to_ready + first}
                spawns: list[tuple[str, float]] = []
                for name, sig in (
                    ("restart_offer_s", signal.SIGTERM),
                    ("kill_restart_offer_s", signal.SIGKILL),
                ):
                    await asyncio.to_thread(services.stop, "dispatcher", sig=sig)
                    spawned = time.time()
                    services.start("dispatcher", port=int(dispatcher.rsplit(":", 1)[1]))
                    restarted = time.perf_counter()
                    leg_id = await _submit(http, intake, operator)
                    await _offered(http, dispatcher, token, leg_id)
                    found[name] = time.perf_counter() - restarted
                    spawns.append((name, spawned))
                # The log is read at the end: a round logs its offers after the volunteer may see them.
                await asyncio.sleep(1.0)
                for (name, spawned), until in zip(
                    spawns, [at for _, at in spawns[1:]] + [time.time()], strict=True
                ):
                    found[name.replace("_offer_s", "_phases_s")] = {
                        **_phases(logs / "dispatcher.log", spawned, until),
                        "offer_seen": round(found[name], 2),
                    }
                return found

        return {"start_to_ready_s": start_to_ready, **asyncio.run(offers())}
    finally:
        services.stop_all()
        stack.stop()


def _rounded(found: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in found.items()}


def _spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def measure(*, repeat: int = 3, defaults: bool = True) -> dict[str, Any]:
    """`repeat` runs with the embedded stack's timings (the machine may be shared: the spread shows
    how much that matters), then one with the settings' defaults as a second baseline."""
    runs = [measure_with(EMBEDDED_BROKER_TIMINGS) for _ in range(repeat)]
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("cold_start_offer_s", "restart_offer_s", "kill_restart_offer_s")
    }
    result: dict[str, Any] = {
        "embedded_timings": EMBEDDED_BROKER_TIMINGS,
        "embedded": _rounded(runs[len(runs) // 2]),
        "embedded_runs": [_rounded(run) for run in runs],
        "spread": {
            key: _spread(runs, key)
            for key in (
                "start_to_ready_s",
                "first_offer_s",
                "cold_start_offer_s",
                "restart_offer_s",
                "kill_restart_offer_s",
            )
        },
        # A restart against starting from nothing (services started, ready, a task offered), both
        # medians of this run's repeats.
        "restart_ratio_vs_cold_start": round(median["restart_offer_s"] / median["cold_start_offer_s"], 3),
        "kill_restart_ratio_vs_cold_start": round(
            median["kill_restart_offer_s"] / median["cold_start_offer_s"], 3
        ),
        "target_first_offer_s": WINDOW_MS / 1000 + 1,
        "target_restart_offer_s": 5.0,
    }
    if defaults:
        baseline = measure_with(
            {
                key: str(Settings.model_fields[key.lower()].default)
                for key in ("CONSUMER_SESSION_TIMEOUT_MS", "CONSUMER_HEARTBEAT_INTERVAL_MS")
            }
        )
        result["defaults_baseline"] = _rounded(baseline)
        result["restart_ratio_vs_defaults"] = round(
            median["restart_offer_s"] / baseline["restart_offer_s"], 3
        )
    return result


def main() -> None:
    """`python -m bench.startup [repeat] [--no-defaults]`."""
    numbers = [int(arg) for arg in sys.argv[1:] if arg.isdigit()]
    print(
        json.dumps(
            measure(repeat=numbers[0] if numbers else 3, defaults="--no-defaults" not in sys.argv), indent=2
        )
    )


if __name__ == "__main__":
    main()
