"""Location reports (issue 8, point 7): reports/s one dispatcher absorbs, and its RSS with 100,000 on duty.

One embedded stack, one dispatcher process, baselines in the same run:

- memory: the dispatcher's RSS idle with no volunteers, against its RSS (max of samples) while the
  matcher runs its batches for `matcher_s` seconds over `on_duty` on-duty volunteers with fresh
  locations (spread over a region the size of eastern China) and a few pending legs nobody can take;
- throughput: `wrk` posts `POST /v1/me/location` with `reporters` volunteer tokens (the Lua script
  picks one per request) to a bare aiohttp handler that parses the body and answers 202, then to the
  dispatcher (same script, same connections); afterwards the last positions must be in the database
  and the `volunteer.location_reported` events on the topic;
- stream: `stream_volunteers` volunteers each hold one WebSocket on `GET /v1/me/location/stream` and
  send one fix per message as fast as the acknowledgements allow (at most `stream_window` fixes
  unacknowledged per connection) for `stream_duration_s`; fixes/s is what the acknowledgements say
  was taken in the measured window. The load comes from `stream_clients` Python processes (each
  one's CPU is reported, so it shows whether the generator or the server is the limit); the baseline
  is a bare aiohttp WebSocket handler that parses each message's JSON and acknowledges it the same
  way (same generator, same connections). Afterwards every stream sends one last fix at a position
  of its own, which must be what the database ends with.

The dispatcher runs with the per-token rate limit lifted: the bench measures what one process
absorbs, not the budget one app gets (a few fixes per second at most from a real app).

Run: `python -m bench.location_reports [--on-duty N] [--reporters N] [--duration S] [--stream-...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.intake_throughput import Run, _parse_ms, baseline
from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack, free_port, wait_for_port
from shared.auth import hash_token
from shared.events import VOLUNTEERS_TOPIC
from shared.settings import Settings

WRK_SCRIPT = """
local tokens = {}
function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    table.insert(tokens, line)
  end
  math.randomseed(os.time())
end
function request()
  local token = tokens[math.random(#tokens)]
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. token
  local body = string.format('{"lat": %.5f, "lon": %.5f, "accuracy_m": 8}',
    29.8 + math.random() * 0.2, 121.5 + math.random() * 0.2)
  return wrk.format("POST", "/v1/me/location", headers, body)
end
"""

# Where the on-duty volunteers are, and where the legs nobody can take wait.
REGION = ((22.0, 42.0), (102.0, 122.0))
PICKUPS = [(29.87, 121.55), (30.27, 120.15), (31.23, 121.47)]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sample_rss(pid: int, seconds: float) -> float:
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, _rss_mb(pid))
        await asyncio.sleep(0.25)
    return peak


async def _add_volunteers(dsn: str, organisation_id: uuid.UUID, n: int) -> list[tuple[uuid.UUID, str]]:
    """n insured on-duty volunteers with fresh fixes and tokens, bulk-copied; returns (id, token)."""
    rng = random.Random(8)
    now = datetime.now(UTC)
    people = [(uuid.uuid4(), "erk_vol_" + secrets.token_urlsafe(32)) for _ in range(n)]
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
                "active_legs",
                "legs_done_today",
            ],
            records=[
                (
                    volunteer_id,
                    organisation_id,
                    f"Volunteer {i}",
                    ["zh"],
                    [],
                    "bicycle",
                    20.0,
                    True,
                    3,
                    True,
                    now,
                    rng.uniform(*REGION[0]),
                    rng.uniform(*REGION[1]),
                    now,
                    0,
                    0,
                )
                for i, (volunteer_id, _) in enumerate(people)
            ],
        )
        await connection.copy_records_to_table(
            "tokens",
            schema_name="auth",
            columns=["id", "token_hash", "role", "organisation_id", "volunteer_id"],
            records=[
                (uuid.uuid4(), hash_token(token), "volunteer", organisation_id, volunteer_id)
                for volunteer_id, token in people
            ],
        )
        await connection.execute("ANALYZE dispatch.volunteers; ANALYZE auth.tokens")
    finally:
        await connection.close()
    return people


async def _add_pending_legs(dsn: str, organisation_id: uuid.UUID, per_pickup: int = 3) -> None:
    """Legs needing a skill nobody has: they stay pending, so every round weighs the volunteers near them."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        for lat, lon in PICKUPS:
            for _ in range(per_pickup):
                await connection.execute(
                    """
                    INSERT INTO dispatch.legs (id, task_id, organisation_id, index, status, kind, priority,
                        pickup_lat, pickup_lon, dropoff_lat, dropoff_lon, vehicle, weight_kg, skills,
                        languages, vulnerable, details, submitted_at)
                    VALUES ($1, $2, $3, 0, 'pending', 'errand', 'normal', $4, $5, $4, $5, NULL, 1.0,
                        ARRAY['forklift'], ARRAY['zh'], false, '{}'::jsonb, $6)
                    """,
                    uuid.uuid4(),
                    uuid.uuid4(),
                    organisation_id,
                    lat,
                    lon,
                    now,
                )
    finally:
        await connection.close()


async def _topic_size(bootstrap: str) -> int:
    """Records on the volunteers topic so far (end offsets summed): an exact count, no reading."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(VOLUNTEERS_TOPIC, p) for p in consumer.partitions_for_topic(VOLUNTEERS_TOPIC) or ()
        ]
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = [
                TopicPartition(VOLUNTEERS_TOPIC, p)
                for p in consumer.partitions_for_topic(VOLUNTEERS_TOPIC) or ()
            ]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


def _run_wrk(url: str, tokens_file: str, *, duration_s: int, connections: int, tag: str) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_TOKENS": tokens_file},
        check=True,
    )
    Path(script.name).unlink()
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(
        tag,
        rps,
        _percentile_ms(out, 50),
        _percentile_ms(out, 99),
        int(non_2xx.group(1)) if non_2xx else 0,
        requests,
    )


def _percentile_ms(wrk_output: str, percent: int) -> float:
    """A latency percentile from wrk's output; NaN when it has none (no request finished, e.g. a
    warm-up against a cold token cache on a busy machine)."""
    match = re.search(rf"{percent}%\s+([\d.]+[a-z]+)\s", wrk_output)
    return _parse_ms(match.group(1)) if match else math.nan


async def _final_positions(
    url: str, people: list[tuple[uuid.UUID, str]]
) -> dict[uuid.UUID, tuple[float, float]]:
    """One last report per volunteer at a position of its own; these must be what the database ends with."""
    rng = random.Random(9)
    wanted = {
        volunteer_id: (round(rng.uniform(-40, 40), 5), round(rng.uniform(-170, 170), 5))
        for volunteer_id, _ in people
    }
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def one(volunteer_id: uuid.UUID, token: str) -> None:
            lat, lon = wanted[volunteer_id]
            async with sem:
                for _ in range(50):
                    async with http.post(
                        f"{url}/v1/me/location",
                        json={"lat": lat, "lon": lon},
                        headers={"Authorization": f"Bearer {token}"},
                    ) as response:
                        if response.status == 202:
                            return
                    await asyncio.sleep(0.2)
                raise AssertionError("final report refused")

        await asyncio.gather(*(one(v, t) for v, t in people))
    return wanted


async def _check_positions(
    dsn: str, wanted: dict[uuid.UUID, tuple[float, float]], timeout_s: float = 30
) -> int:
    """How many volunteers' stored position is the last one reported (waiting for the flush)."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await connection.fetch(
                "SELECT id, lat, lon FROM dispatch.volunteers WHERE id = ANY($1::uuid[])", list(wanted)
            )
            matching = sum(1 for row in rows if (row["lat"], row["lon"]) == wanted[row["id"]])
            if matching == len(wanted) or time.monotonic() > deadline:
                return matching
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def _outbox_drained(dsn: str, timeout_s: float = 120) -> tuple[int, float]:
    """Rows waiting in the dispatcher's outbox when asked, and how long the relay took to empty it."""
    connection = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        backlog: int = await connection.fetchval("SELECT count(*) FROM dispatch.outbox")
        while time.monotonic() - started < timeout_s:
            if not await connection.fetchval("SELECT count(*) FROM dispatch.outbox"):
                break
            await asyncio.sleep(0.2)
        return backlog, time.monotonic() - started
    finally:
        await connection.close()


async def _organisation(dsn: str) -> uuid.UUID:
    connection = await asyncpg.connect(dsn)
    try:
        organisation_id: uuid.UUID = await connection.fetchval("SELECT id FROM auth.organisations LIMIT 1")
        return organisation_id
    finally:
        await connection.close()


# --- the stream: one WebSocket per volunteer, fixes as messages, cumulative acknowledgements

STREAM_PATH = "/v1/me/location/stream"
STREAM_ACK_INTERVAL_S = 0.1  # the dispatcher's (services.dispatcher.entrypoints.http); the baseline's too


def _serve_bare_ws(port: int) -> None:
    """The baseline: a bare aiohttp WebSocket handler that parses each message and acknowledges like the
    dispatcher (cumulative counts, at most every 100 ms): no token, no validation, no buffer."""

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, autoclose=False, compress=False)
        await ws.prepare(request)
        counts = {"taken": 0, "acked": 0}
        unacked = asyncio.Event()

        async def acks() -> None:
            with contextlib.suppress(ConnectionResetError):
                while True:
                    await unacked.wait()
                    unacked.clear()
                    counts["acked"] = counts["taken"]
                    await ws.send_str(f'{{"accepted": {counts["acked"]}}}')
                    await asyncio.sleep(STREAM_ACK_INTERVAL_S)

        task = asyncio.create_task(acks())
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.TEXT:
                    break
                value = json.loads(msg.data)
                counts["taken"] += len(value) if isinstance(value, list) else 1
                unacked.set()
        finally:
            task.cancel()
        with contextlib.suppress(ConnectionResetError):
            if counts["taken"] != counts["acked"]:
                await ws.send_str(f'{{"accepted": {counts["taken"]}}}')
            await ws.close()
        return ws

    app = web.Application()
    app.router.add_get(STREAM_PATH, stream)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def _bare_ws_server() -> Iterator[tuple[str, int]]:
    """The baseline server in a process of its own; yields its base URL and pid."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve_bare_ws, args=(port,), daemon=True)
    process.start()
    try:
        wait_for_port(port, timeout_s=30)
        assert process.pid is not None
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.join(10)


@dataclass(frozen=True)
class _StreamPlan:
    """One load-generator process's share: its connections, and the run's wall-clock timetable."""

    url: str
    tokens: list[str]
    finals: list[tuple[float, float]]  # each connection's last fix, checked in the database afterwards
    window: int
    start_at: float
    measure_from: float
    end_at: float


@dataclass
class _Conn:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    problems: dict[int, int] = field(default_factory=dict)
    final_taken: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


async def _read_answers(ws: aiohttp.ClientWebSocketResponse, conn: _Conn) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        body = json.loads(msg.data)
        conn.acked = max(conn.acked, int(body["accepted"]))
        if "status" in body:  # one fix per message: a refused message is one fix not taken
            conn.refused += 1
            conn.problems[body["status"]] = conn.problems.get(body["status"], 0) + 1
        conn.wake.set()


async def _settled(conn: _Conn, timeout_s: float) -> None:
    """Until every fix sent has been acknowledged or refused."""
    deadline = time.time() + timeout_s
    while conn.acked + conn.refused < conn.sent and time.time() < deadline:
        conn.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wake.wait(), timeout=max(0.01, deadline - time.time()))


async def _drive(
    ws: aiohttp.ClientWebSocketResponse, conn: _Conn, plan: _StreamPlan, final: tuple[float, float]
) -> None:
    """Fixes as fast as the window allows until `end_at`, then the last fix until it is taken."""
    reader = asyncio.create_task(_read_answers(ws, conn))
    rng = random.Random()
    while (now := time.time()) < plan.end_at:
        room = plan.window - (conn.sent - conn.acked - conn.refused)
        if room <= 0:
            conn.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), timeout=plan.end_at - now)
            continue
        for _ in range(room):
            lat, lon = 29.8 + rng.random() * 0.2, 121.5 + rng.random() * 0.2
            await ws.send_str(f'{{"lat": {lat:.5f}, "lon": {lon:.5f}, "accuracy_m": 8}}')
        conn.sent += room
    await _settled(conn, 30)
    for _ in range(50):
        refused = conn.refused
        await ws.send_str(json.dumps({"lat": final[0], "lon": final[1]}))
        conn.sent += 1
        await _settled(conn, 10)
        if conn.refused == refused and conn.acked + conn.refused >= conn.sent:
            conn.final_taken = True
            break
        await asyncio.sleep(0.2)
    await ws.close()
    await reader


async def _stream_client(plan: _StreamPlan) -> dict[str, Any]:
    conns = [_Conn() for _ in plan.tokens]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(
            *(
                http.ws_connect(plan.url + STREAM_PATH, headers={"Authorization": f"Bearer {token}"})
                for token in plan.tokens
            )
        )
        await asyncio.sleep(max(0.0, plan.start_at - time.time()))
        cpu_start = _own_cpu_s()
        drivers = asyncio.gather(
            *(
                _drive(ws, conn, plan, final)
                for ws, conn, final in zip(sockets, conns, plan.finals, strict=True)
            )
        )
        await asyncio.sleep(max(0.0, plan.measure_from - time.time()))
        taken_before, measured_from = sum(c.acked for c in conns), time.time()
        await asyncio.sleep(max(0.0, plan.end_at - time.time()))
        taken_after, measured_to = sum(c.acked for c in conns), time.time()
        cpu_s = _own_cpu_s() - cpu_start
        await drivers
    problems: dict[str, int] = {}
    for conn in conns:
        for status, count in conn.problems.items():
            problems[str(status)] = problems.get(str(status), 0) + count
    return {
        "taken": taken_after - taken_before,
        "window_s": measured_to - measured_from,
        "sent": sum(c.sent for c in conns),
        "problems": problems,
        "finals_taken": sum(c.final_taken for c in conns),
        "cpu_s": cpu_s,
    }


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _stream_worker(plan: _StreamPlan, results: Queue[dict[str, Any]]) -> None:
    results.put(asyncio.run(_stream_client(plan)))


def _run_stream(
    url: str,
    tokens: list[str],
    finals: list[tuple[float, float]],
    *,
    server_pid: int,
    clients: int,
    window: int,
    duration_s: float,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    """One stream run: `clients` generator processes share the connections; fixes/s from the acks."""
    context = multiprocessing.get_context("spawn")
    results: Queue[dict[str, Any]] = context.Queue()
    start_at = time.time() + 3.0 + len(tokens) / 200  # spawning and connecting, before anything is sent
    processes = []
    for i in range(clients):
        plan = _StreamPlan(
            url=url,
            tokens=tokens[i::clients],
            finals=finals[i::clients],
            window=window,
            start_at=start_at,
            measure_from=start_at + warmup_s,
            end_at=start_at + warmup_s + duration_s,
        )
        process = context.Process(target=_stream_worker, args=(plan, results), daemon=True)
        process.start()
        processes.append(process)
    time.sleep(max(0.0, start_at + warmup_s - time.time()))
    server_cpu_before = _cpu_s(server_pid)
    time.sleep(duration_s)
    server_cpu_share = (_cpu_s(server_pid) - server_cpu_before) / duration_s
    parts = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    problems: dict[str, int] = {}
    for part in parts:
        for status, count in part["problems"].items():
            problems[status] = problems.get(status, 0) + count
    window_s = sum(part["window_s"] for part in parts) / len(parts)
    taken = sum(part["taken"] for part in parts)
    return {
        "fixes_per_s": taken / window_s,
        "fixes_taken_in_window": taken,
        "window_s": round(window_s, 2),
        "fixes_sent": sum(part["sent"] for part in parts),
        "problems": problems,
        "finals_taken": sum(part["finals_taken"] for part in parts),
        "server_cpu_share": round(server_cpu_share, 3),
        "generator_cpu_share": round(sum(part["cpu_s"] for part in parts) / (duration_s + warmup_s), 3),
    }


def measure_stream(
    *,
    dispatcher_url: str,
    dispatcher_pid: int,
    dsn: str,
    people: list[tuple[uuid.UUID, str]],
    clients: int,
    window: int,
    duration_s: float,
) -> dict[str, Any]:
    """The bare WebSocket baseline, then the dispatcher's stream, same generator and connections."""
    tokens = [token for _, token in people]
    rng = random.Random(10)
    wanted = {
        volunteer_id: (round(rng.uniform(-40, 40), 5), round(rng.uniform(-170, 170), 5))
        for volunteer_id, _ in people
    }
    finals = [wanted[volunteer_id] for volunteer_id, _ in people]
    with _bare_ws_server() as (bare_url, bare_pid):
        bare = _run_stream(
            bare_url,
            tokens,
            finals,
            server_pid=bare_pid,
            clients=clients,
            window=window,
            duration_s=duration_s,
        )
    dispatcher = _run_stream(
        dispatcher_url,
        tokens,
        finals,
        server_pid=dispatcher_pid,
        clients=clients,
        window=window,
        duration_s=duration_s,
    )
    positions_ok = asyncio.run(_check_positions(dsn, wanted))
    return {
        "volunteers": len(people),
        "clients": clients,
        "window": window,
        "duration_s": duration_s,
        "bare": bare,
        "dispatcher": dispatcher,
        "fixes_per_s": dispatcher["fixes_per_s"],
        "baseline_fixes_per_s": bare["fixes_per_s"],
        "ratio_vs_bare": dispatcher["fixes_per_s"] / bare["fixes_per_s"],
        "final_positions_checked": len(wanted),
        "final_positions_stored": positions_ok,
        "target_fixes_per_s": 10_000,
    }


def measure(
    *,
    on_duty: int = 100_000,
    reporters: int = 10_000,
    duration_s: int = 15,
    connections: int = 64,
    matcher_s: float = 20.0,
    stream_volunteers: int = 200,
    stream_duration_s: float = 15.0,
    stream_clients: int = 2,
    stream_window: int = 100,
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (make bench does this)")
    stack = EmbeddedStack()
    stack.start()
    services = ServiceProcesses(
        env=service_env(
            {
                "DATABASE_URL": stack.database_url,
                "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
                "LOG_LEVEL": "WARNING",
                # What one process absorbs, not one app's budget (see the module's docstring).
                "RATE_LIMIT_PER_S": "1000000",
                "RATE_LIMIT_BURST": "1000000",
            }
        )
    )
    tokens_file = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)  # noqa: SIM115
    try:
        settings = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.kafka_bootstrap)
        prepare(settings)
        asyncio.run(admin.bootstrap_demo(settings))
        organisation_id = asyncio.run(_organisation(stack.database_url))

        # Memory baseline: the same dispatcher, idle, nobody on duty.
        services.start("dispatcher")
        services.wait_ready(services=("dispatcher",))
        rss_idle = asyncio.run(_sample_rss(services.processes["dispatcher"].pid, 10))
        services.stop("dispatcher")

        people = asyncio.run(_add_volunteers(stack.database_url, organisation_id, on_duty))
        asyncio.run(_add_pending_legs(stack.database_url, organisation_id))
        services.start("dispatcher")
        services.wait_ready(services=("dispatcher",))
        pid = services.processes["dispatcher"].pid
        cpu_before = _cpu_s(pid)
        rss_on_duty = asyncio.run(_sample_rss(pid, matcher_s))
        matcher_cpu_share = (_cpu_s(pid) - cpu_before) / matcher_s

        reporting = people[:reporters]
        tokens_file.write("\n".join(token for _, token in reporting) + "\n")
        tokens_file.close()
        runs: dict[str, Run] = {}
        with baseline("accept", stack.database_url) as url:
            runs["accept"] = _run_wrk(
                url.rsplit("/v1/", 1)[0],
                tokens_file.name,
                duration_s=duration_s,
                connections=connections,
                tag="accept",
            )
        topic_before = asyncio.run(_topic_size(stack.kafka_bootstrap))
        url = services.url("dispatcher")
        # Warm the token cache the way a fleet of apps does, not inside the measured window.
        _run_wrk(url, tokens_file.name, duration_s=3, connections=connections, tag="warm-up")

        async def load_and_sample() -> tuple[Run, float]:
            sampler = asyncio.create_task(_sample_rss(pid, duration_s + 1))
            run = await asyncio.to_thread(
                _run_wrk,
                url,
                tokens_file.name,
                duration_s=duration_s,
                connections=connections,
                tag="dispatcher",
            )
            return run, await sampler

        runs["dispatcher"], rss_under_load = asyncio.run(load_and_sample())
        backlog, drain_s = asyncio.run(_outbox_drained(stack.database_url))
        sample = reporting[:1000]
        wanted = asyncio.run(_final_positions(url, sample))
        positions_ok = asyncio.run(_check_positions(stack.database_url, wanted))
        asyncio.run(_outbox_drained(stack.database_url))
        topic_after = asyncio.run(_topic_size(stack.kafka_bootstrap))
        stream = measure_stream(
            dispatcher_url=url,
            dispatcher_pid=pid,
            dsn=stack.database_url,
            people=people[:stream_volunteers],
            clients=stream_clients,
            window=stream_window,
            duration_s=stream_duration_s,
        )
        stream["outbox_backlog_after_load"], stream["outbox_drain_s"] = asyncio.run(
            _outbox_drained(stack.database_url)
        )
    finally:
        services.stop_all()
        stack.stop()
        Path(tokens_file.name).unlink(missing_ok=True)
    dispatcher, accept = runs["dispatcher"], runs["accept"]
    accepted = dispatcher.requests - dispatcher.non_2xx
    return {
        "on_duty": on_duty,
        "reporters": reporters,
        "duration_s": duration_s,
        "connections": connections,
        "runs": {name: run.__dict__ for name, run in runs.items()},
        "reports_per_s": dispatcher.requests_per_s,
        "baseline_accept_per_s": accept.requests_per_s,
        "ratio_vs_accept": dispatcher.requests_per_s / accept.requests_per_s,
        "reports_accepted": accepted,
        "outbox_backlog_after_load": backlog,
        "outbox_drain_s": round(drain_s, 2),
        "events_published": topic_after - topic_before,
        "final_positions_checked": len(wanted),
        "final_positions_stored": positions_ok,
        "rss_mb_idle_none": round(rss_idle, 1),
        "rss_mb_on_duty_matcher": round(rss_on_duty, 1),
        "rss_mb_on_duty_under_load": round(rss_under_load, 1),
        "matcher_cpu_share": round(matcher_cpu_share, 3),
        "target_reports_per_s": 10_000,
        "target_rss_mb": 300,
        "stream": stream,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--on-duty", type=int, default=100_000)
    parser.add_argument("--reporters", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--matcher", type=float, default=20.0, help="seconds of matcher batches sampled")
    parser.add_argument("--stream-volunteers", type=int, default=200, help="one WebSocket each")
    parser.add_argument("--stream-duration", type=float, default=15.0, help="seconds measured (<= 20)")
    parser.add_argument("--stream-clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--stream-window", type=int, default=100, help="unacknowledged fixes per stream")
    args = parser.parse_args()
    result = measure(
        on_duty=args.on_duty,
        reporters=args.reporters,
        duration_s=args.duration,
        connections=args.connections,
        matcher_s=args.matcher,
        stream_volunteers=args.stream_volunteers,
        stream_duration_s=args.stream_duration,
        stream_clients=args.stream_clients,
        stream_window=args.stream_window,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
