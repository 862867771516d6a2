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
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.intake_throughput import Run, _parse_ms, baseline
from bench.location_fleet import (
    add_pending_legs,
    add_volunteers,
    check_positions,
    cpu_s,
    final_positions,
    organisation,
    outbox_drained,
    sample_rss,
    topic_size,
)
from bench.location_stream import measure_stream
from errands import admin
from errands.launcher import ServiceProcesses, prepare, service_env
from errands.stack import EmbeddedStack
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
                **stack.settings_env(),
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
        organisation_id = asyncio.run(organisation(stack.database_url))

        # Memory baseline: the same dispatcher, idle, nobody on duty.
        services.start("dispatcher")
        services.wait_ready(services=("dispatcher",))
        rss_idle = asyncio.run(sample_rss(services.processes["dispatcher"].pid, 10))
        services.stop("dispatcher")

        people = asyncio.run(add_volunteers(stack.database_url, organisation_id, on_duty))
        asyncio.run(add_pending_legs(stack.database_url, organisation_id))
        services.start("dispatcher")
        services.wait_ready(services=("dispatcher",))
        pid = services.processes["dispatcher"].pid
        cpu_before = cpu_s(pid)
        rss_on_duty = asyncio.run(sample_rss(pid, matcher_s))
        matcher_cpu_share = (cpu_s(pid) - cpu_before) / matcher_s

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
        topic_before = asyncio.run(topic_size(stack.kafka_bootstrap))
        url = services.url("dispatcher")
        # Warm the token cache the way a fleet of apps does, not inside the measured window.
        _run_wrk(url, tokens_file.name, duration_s=3, connections=connections, tag="warm-up")

        async def load_and_sample() -> tuple[Run, float]:
            sampler = asyncio.create_task(sample_rss(pid, duration_s + 1))
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
        backlog, drain_s = asyncio.run(outbox_drained(stack.database_url))
        sample = reporting[:1000]
        wanted = asyncio.run(final_positions(url, sample))
        positions_ok = asyncio.run(check_positions(stack.database_url, wanted))
        asyncio.run(outbox_drained(stack.database_url))
        topic_after = asyncio.run(topic_size(stack.kafka_bootstrap))
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
            outbox_drained(stack.database_url)
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
