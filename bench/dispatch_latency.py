"""Submission -> offer latency at a steady task rate with many volunteers on duty, against the window.

A real system on this machine: the embedded stack (PostgreSQL + Tansu), one intake and one
dispatcher process. N volunteers are inserted straight into `dispatch.volunteers` with one bulk
INSERT (registering 20,000 through `POST /v1/volunteers` would take minutes and measure
registration, not dispatch), on duty, insured, with fresh locations around Ningbo's district
centres. Then an open-loop generator submits errands through intake's HTTP API at the given rate
for a bounded time, pickups around the same centres.

Latency per leg = the `leg.offered` event's `time` (set in the dispatcher's matching round) minus
the task's `task.submitted` event's `time` (set by intake when it accepted the task), both read back
from Kafka after the run. The baseline is the batch window itself: a leg arriving just after a
round waits up to one window before it is even looked at.

Run: `.venv/bin/python -m bench.dispatch_latency [--rate 200] [--seconds 20] [--volunteers 20000]
[--profile PATH] [--cores N]` (py-spy samples the dispatcher during the load when --profile is given;
--cores confines the whole run to N CPUs' worth of time, a slower machine, `bench.slower`).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import json
import math
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
from aiokafka import AIOKafkaConsumer

from bench.dispatch_quality import CAPACITY_KG, _around
from bench.location_fleet import cpu_s
from bench.slower import confine, machine_busy_s
from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
from services.dispatcher.domain.geo import VEHICLE_ORDER
from shared.events import DISPATCH_TOPIC, TASKS_TOPIC, CloudEvent
from shared.settings import Settings

WINDOW_MS = Settings.model_fields["dispatch_batch_window_ms"].default


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def insert_volunteers(dsn: str, organisation_id: str, n: int, *, seed: int) -> float:
    """n volunteers on duty with a fresh fix, in one COPY; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        lat, lon = _around(rng)
        vehicle = str(rng.choice(VEHICLE_ORDER, p=[0.2, 0.3, 0.3, 0.15, 0.05]))
        rows.append(
            (
                uuid.uuid4(),
                uuid.UUID(organisation_id),
                f"Bench volunteer {i}",
                ["zh", "en"] if rng.random() < 0.3 else ["zh"],
                [],
                vehicle,
                CAPACITY_KG[vehicle],
                True,
                1,
                True,
                now,
                lat,
                lon,
                now,
            )
        )
    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "volunteers",
            schema_name="dispatch",
            columns=[
                "id",
                "organisation_id",
                "name",
                "languages",
                "skills",
                "vehicle",
                "capacity_kg",
                "insured",
                "max_active_legs",
                "on_duty",
                "duty_started_at",
                "lat",
                "lon",
                "location_at",
            ],
            records=rows,
        )
        await connection.execute("ANALYZE dispatch.volunteers")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def submit_load(
    url: str, token: str, *, rate: float, seconds: float, seed: int
) -> tuple[int, int, float, list[float]]:
    """Open loop: task i is sent at i/rate whatever earlier ones are doing.

    Returns (accepted, failed, rate achieved, how late the sends started in ms).
    """
    rng = np.random.default_rng(seed)
    total = int(rate * seconds)
    bodies = []
    for _ in range(total):
        lat, lon = _around(rng)
        bodies.append(
            {
                "kind": "errand",
                "pickup": {"lat": round(lat, 6), "lon": round(lon, 6)},
                "dropoffs": [{"lat": round(lat + 0.01, 6), "lon": round(lon + 0.01, 6)}],
            }
        )
    accepted = failed = 0
    lateness: list[float] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def one(body: dict[str, Any]) -> None:
            nonlocal accepted, failed
            try:
                async with http.post(
                    f"{url}/v1/tasks",
                    json=body,
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
                ) as response:
                    await response.read()
                    if response.status in (200, 201, 202):
                        accepted += 1
                    else:
                        failed += 1
            except (aiohttp.ClientError, TimeoutError):
                failed += 1

        sending = []
        begin = time.perf_counter()
        for i, body in enumerate(bodies):
            due = begin + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(1000 * max(0.0, -delay))
            sending.append(asyncio.create_task(one(body)))
        sent_in = time.perf_counter() - begin
        await asyncio.gather(*sending)
    return accepted, failed, total / sent_in, lateness


async def read_times(
    bootstrap: str, *, want_offers: int, timeout_s: float
) -> tuple[dict[str, datetime], dict[str, datetime], dict[str, datetime]]:
    """task id -> submitted time, -> when intake's relay sent it (the record's timestamp, set by the
    producer), and -> first offer time, from both topics, from the start."""
    submitted: dict[str, datetime] = {}
    sent: dict[str, datetime] = {}
    offered: dict[str, datetime] = {}
    consumer = AIOKafkaConsumer(
        TASKS_TOPIC,
        DISPATCH_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.perf_counter() + timeout_s
        quiet_since = time.perf_counter()
        while time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches:
                quiet_since = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    task = str(event.data.get("task_id", event.subject))
                    if event.type == "task.submitted":
                        submitted.setdefault(task, event.time)
                        sent.setdefault(task, datetime.fromtimestamp(record.timestamp / 1000, UTC))
                    elif event.type == "leg.offered":
                        offered.setdefault(task, min(event.time, offered.get(task, event.time)))
            if len(offered) >= want_offers and time.perf_counter() - quiet_since > 2:
                break
            if time.perf_counter() - quiet_since > 10:
                break
    finally:
        await consumer.stop()
    return submitted, sent, offered


async def round_starts(dsn: str) -> dict[str, datetime]:
    """task id -> when the round that first offered its leg started (`offer_batch`'s `now`)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT l.task_id, min(o.created_at) AS started"
            " FROM dispatch.legs l JOIN dispatch.offers o ON o.leg_id = l.id GROUP BY l.task_id"
        )
    finally:
        await conn.close()
    return {str(r["task_id"]): r["started"] for r in rows}


def stage_figures(
    submitted: dict[str, datetime],
    sent: dict[str, datetime],
    offered: dict[str, datetime],
    started: dict[str, datetime],
) -> dict[str, Any]:
    """Where a leg's latency goes, p50 / p95 in ms over the legs offered: intake's relay (accepted to
    sent to the broker), then to the start of the round that offered it (the consumer's fetch, the
    take-in, the wait for a round), then that round (its start to the stamped offer). And how many
    rounds started after a leg was sent and still went without it (0: the first round after the
    send offered it; 1 or more: it was taken in too late for one, or a round left it waiting).
    """
    spans: dict[str, list[float]] = {"relay": [], "to_round": [], "round": []}
    passed_by: list[int] = []
    rounds = sorted(set(started.values()))
    for task, at in submitted.items():
        if task not in offered or task not in sent or task not in started:
            continue
        spans["relay"].append(1000 * (sent[task] - at).total_seconds())
        spans["to_round"].append(1000 * (started[task] - sent[task]).total_seconds())
        spans["round"].append(1000 * (offered[task] - started[task]).total_seconds())
        passed_by.append(bisect.bisect_left(rounds, started[task]) - bisect.bisect_right(rounds, sent[task]))
    figures: dict[str, Any] = {
        name: {"p50_ms": round(_percentile(values, 0.5), 1), "p95_ms": round(_percentile(values, 0.95), 1)}
        for name, values in spans.items()
        if values
    }
    if passed_by:
        figures["rounds_passed_by"] = dict(sorted(collections.Counter(min(n, 3) for n in passed_by).items()))
        figures["rounds"] = len(rounds)
    return figures


async def warm_up_task(url: str, token: str, dsn: str, *, timeout_s: float = 90.0) -> str:
    """Submit one task and wait until the dispatcher has offered its leg; returns the task id."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/v1/tasks",
            json={
                "kind": "errand",
                "pickup": {"lat": 29.87, "lon": 121.55},
                "dropoffs": [{"lat": 29.88, "lon": 121.56}],
            },
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        ) as response,
    ):
        task_id = str((await response.json())["id"])
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if await connection.fetchval("SELECT count(*) FROM dispatch.offers"):
                break
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    return task_id


async def sample_pipeline(dsn: str, samples: list[dict[str, Any]], *, every_s: float = 1.0) -> None:
    """Where the legs are each second: intake's unsent outbox, legs the dispatcher holds, pending, offered."""
    connection = await asyncpg.connect(dsn)
    began = time.perf_counter()
    try:
        while True:
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM intake.outbox) AS intake_outbox,"
                " (SELECT count(*) FROM dispatch.legs) AS legs,"
                " (SELECT count(*) FROM dispatch.legs WHERE status = 'pending') AS pending,"
                " (SELECT count(*) FROM dispatch.offers) AS offers,"
                " (SELECT count(*) FROM dispatch.outbox) AS dispatch_outbox"
            )
            samples.append({"t_s": round(time.perf_counter() - began, 1), **dict(row)})
            await asyncio.sleep(every_s)
    finally:
        await connection.close()


def _top_frames(raw_profile: Path, limit: int = 15) -> list[tuple[str, float]]:
    """Share of samples in which each function appears (inclusive), from py-spy's raw output."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            counts[frame] += n
    return [(frame, round(n / max(total, 1), 3)) for frame, n in counts.most_common(limit)]


async def measure_async(
    *,
    rate: float,
    seconds: float,
    volunteers: int,
    seed: int,
    profile: Path | None,
    log_dir: Path | None = None,
    cores: float | None = None,
) -> dict[str, Any]:
    stack = EmbeddedStack()
    stack.start()
    services = ServiceProcesses(
        env=service_env(
            {
                **stack.settings_env(),
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_PER_S": "1000000",
                "RATE_LIMIT_BURST": "1000000",
                "ERRANDS_DEMO": "0",
            }
        ),
        log_dir=log_dir,
    )
    profiler: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.kafka_bootstrap)
        await asyncio.to_thread(prepare, settings)
        tokens = await admin.bootstrap_demo(settings)
        insert_s = await insert_volunteers(
            settings.asyncpg_dsn, tokens["organisation_id"], volunteers, seed=seed
        )
        services.start("intake")
        services.start("dispatcher")
        services.wait_ready(services=("intake", "dispatcher"))
        # One task through the whole path first: consumer groups joined, relays and caches warm.
        warm_up = await warm_up_task(services.url("intake"), tokens["operator_token"], settings.asyncpg_dsn)
        if profile is not None:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            profiler = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(services.processes["dispatcher"].pid),
                    "--duration",
                    str(math.ceil(seconds) + 5),
                    "--rate",
                    "50",
                    "--format",
                    "raw",
                    "--output",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        samples: list[dict[str, Any]] = []
        dispatcher_pid = services.processes["dispatcher"].pid
        intake_pid = services.processes["intake"].pid
        cpu_before = cpu_s(dispatcher_pid)
        intake_cpu_before = cpu_s(intake_pid)
        machine_before = machine_busy_s()
        sampling = asyncio.create_task(sample_pipeline(settings.asyncpg_dsn, samples))
        accepted, failed, achieved, lateness = await submit_load(
            services.url("intake"), tokens["operator_token"], rate=rate, seconds=seconds, seed=seed
        )
        submitted, sent, offered = await read_times(
            stack.kafka_bootstrap, want_offers=accepted + 1, timeout_s=60 + seconds
        )
        dispatcher_cpu_s = cpu_s(dispatcher_pid) - cpu_before
        intake_cpu_s = cpu_s(intake_pid) - intake_cpu_before
        machine_cpu_s = machine_busy_s() - machine_before
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        submitted.pop(warm_up, None)
        started = await round_starts(settings.asyncpg_dsn)
        if profiler is not None:
            profiler.wait(timeout=60)
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
        services.stop_all()
        stack.stop()
    latencies = [
        1000 * (offered[task] - submitted[task]).total_seconds() for task in submitted if task in offered
    ]
    figures: dict[str, Any] = {
        "volunteers_on_duty": volunteers,
        "volunteer_insert_s": round(insert_s, 2),
        "rate_offered_per_s": rate,
        "rate_achieved_per_s": round(achieved, 1),
        "generator_lateness_p99_ms": round(_percentile(lateness, 0.99), 1) if lateness else None,
        "seconds": seconds,
        "accepted": accepted,
        "failed": failed,
        "submitted_seen": len(submitted),
        "offered": len(latencies),
        "window_ms": WINDOW_MS,
        "full_batch_legs": Settings().dispatch_batch_full_legs,
        # The load's seconds and the read-back after them (a quiet dispatcher takes ~2 % of a core).
        "dispatcher_cpu_s": round(dispatcher_cpu_s, 1),
        "intake_cpu_s": round(intake_cpu_s, 1),
        # Every process on the machine (the stack, both services, the generator, the read-back).
        "machine_cpu_s": round(machine_cpu_s, 1),
        "confined_to_cores": cores,
        "pipeline_every_5s": samples[::5],
        "target_p95_ms": WINDOW_MS + 100,
    }
    if latencies:
        figures.update(
            p50_ms=round(_percentile(latencies, 0.50), 1),
            p95_ms=round(_percentile(latencies, 0.95), 1),
            p99_ms=round(_percentile(latencies, 0.99), 1),
            max_ms=round(max(latencies), 1),
        )
        figures["p95_vs_window"] = round(figures["p95_ms"] / WINDOW_MS, 2)
        figures["stages"] = stage_figures(submitted, sent, offered, started)
        figures["met"] = figures["p95_ms"] <= WINDOW_MS + 100 and len(latencies) == len(submitted)
    else:
        figures["met"] = False
    if profile is not None and profile.exists():  # noqa: ASYNC240 - after the run
        figures["profile"] = {"path": str(profile), "top_inclusive": _top_frames(profile)}
    return figures


def measure(
    *,
    rate: float = 200.0,
    seconds: float = 20.0,
    volunteers: int = 20_000,
    seed: int = 11,
    profile: Path | None = None,
    cores: float | None = None,
) -> dict[str, Any]:
    """With `cores`, the whole run is confined to that many CPUs' worth of time (`slower.confine`)."""
    if cores is not None:
        confine(cores)
    return asyncio.run(
        measure_async(
            rate=rate, seconds=seconds, volunteers=volunteers, seed=seed, profile=profile, cores=cores
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="tasks submitted per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load lasts")
    parser.add_argument("--volunteers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the dispatcher written here")
    parser.add_argument(
        "--cores",
        type=float,
        help="confine the whole run to this many CPUs (a slower machine; root, cgroups)",
    )
    args = parser.parse_args()
    figures = measure(
        rate=args.rate,
        seconds=args.seconds,
        volunteers=args.volunteers,
        seed=args.seed,
        profile=args.profile,
        cores=args.cores,
    )
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
