"""Intake throughput: accepted-and-durable tasks per second against two baselines, same load generator.

The load comes from `wrk` (one thread, fixed connections) so the generator is not the bottleneck;
the three servers run one after the other on the same stack:

- a bare aiohttp handler answering "hello";
- a bare aiohttp handler doing one asyncpg INSERT of the body;
- the real intake: auth, validation, idempotency record, task, legs and outbox row in one transaction.

Then the intake again at half its peak rate, for the p99 latency there.
Run: `python -m bench.intake_throughput [--duration S] [--connections N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack, free_port, wait_for_port
from shared.settings import Settings

TASK_BODY = {
    "kind": "meal",
    "priority": "urgent",
    "pickup": {"lat": 29.87, "lon": 121.55, "address": "Charity kitchen, Haishu"},
    "dropoffs": [
        {"lat": 29.88, "lon": 121.56, "recipient_name": "Li Wei", "recipient_phone": "+8613800001111"},
        {"lat": 29.89, "lon": 121.57, "recipient_name": "Zhao Min", "language": "en"},
    ],
    "items": [{"name": "lunch box", "quantity": 2, "weight_kg": 1.0}],
}

WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = os.getenv("BENCH_RUN") .. "-" .. wrk.thread:get("id") .. "-"
  delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
end
function request()
  counter = counter + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", "/v1/tasks", headers, os.getenv("BENCH_BODY"))
end
function delay()
  return delay_ms
end
"""


@dataclass
class Run:
    target: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int


def _parse_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    url: str, *, token: str, duration_s: int, connections: int, delay_ms: float = 0.0, tag: str
) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_TOKEN": token,
        "BENCH_BODY": json.dumps(TASK_BODY),
        "BENCH_RUN": f"{tag}-{os.urandom(4).hex()}",
        "BENCH_DELAY_MS": str(delay_ms),
    }
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    Path(script.name).unlink()
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = _parse_ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _parse_ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return Run(tag, rps, p50, p99, int(non_2xx_match.group(1)) if non_2xx_match else 0, requests)


@contextmanager
def baseline(kind: str, dsn: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.baselines", kind, str(port), dsn])
    try:
        wait_for_port(port, timeout_s=30, process=process)
        yield f"http://127.0.0.1:{port}/v1/tasks"
    finally:
        process.terminate()
        process.wait()


async def _count_tasks(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM intake.tasks")
        return count
    finally:
        await connection.close()


def measure(*, duration_s: int, connections: int) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (make bench does this)")
    stack = EmbeddedStack()
    stack.start()
    try:
        settings = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.kafka_bootstrap)
        prepare(settings)
        tokens = asyncio.run(admin.bootstrap_demo(settings))
        token = tokens["operator_token"]
        runs: dict[str, Run] = {}
        with baseline("hello", stack.database_url) as url:
            runs["hello"] = run_wrk(
                url, token=token, duration_s=duration_s, connections=connections, tag="hello"
            )
        with baseline("insert", stack.database_url) as url:
            runs["insert"] = run_wrk(
                url, token=token, duration_s=duration_s, connections=connections, tag="insert"
            )
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
        services.start("intake")
        try:
            services.wait_ready(services=("intake",))
            url = f"{services.url('intake')}/v1/tasks"
            before = asyncio.run(_count_tasks(stack.database_url))
            runs["intake"] = run_wrk(
                url, token=token, duration_s=duration_s, connections=connections, tag="intake"
            )
            durable = asyncio.run(_count_tasks(stack.database_url)) - before
            half_rate = runs["intake"].requests_per_s / 2
            # Closed loop with think time: each connection waits so that together they offer half the peak.
            delay_ms = max(0.0, connections / half_rate * 1000 - runs["intake"].p50_ms)
            runs["intake_half_peak"] = run_wrk(
                url,
                token=token,
                duration_s=duration_s,
                connections=connections,
                delay_ms=delay_ms,
                tag="half",
            )
        finally:
            services.stop_all()
    finally:
        stack.stop()
    intake = runs["intake"]
    accepted = intake.requests - intake.non_2xx
    return {
        "duration_s": duration_s,
        "connections": connections,
        "runs": {name: asdict(run) for name, run in runs.items()},
        "intake_accepted": accepted,
        "intake_durable_rows": durable,
        "ratio_vs_hello": intake.requests_per_s / runs["hello"].requests_per_s,
        "ratio_vs_insert": intake.requests_per_s / runs["insert"].requests_per_s,
        "half_peak_rate": runs["intake_half_peak"].requests_per_s,
        "half_peak_p99_ms": runs["intake_half_peak"].p99_ms,
        "target_ratio_vs_insert": 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    result = measure(duration_s=args.duration, connections=args.connections)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
