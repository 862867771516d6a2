"""Location stream benchmark: one WebSocket per volunteer, fixes as messages, cumulative acknowledgements.

See bench.location_reports for how it is run beside the HTTP and memory measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from bench.location_fleet import check_positions, cpu_s
from errands.stack import free_port, wait_for_port

STREAM_PATH = "/v1/me/location/stream"
STREAM_ACK_INTERVAL_S = (
    0.1  # the dispatcher's (services.dispatcher.entrypoints.location_stream); the baseline's too
)


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
    server_cpu_before = cpu_s(server_pid)
    time.sleep(duration_s)
    server_cpu_share = (cpu_s(server_pid) - server_cpu_before) / duration_s
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
    positions_ok = asyncio.run(check_positions(dsn, wanted))
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
