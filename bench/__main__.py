"""`make bench`: every benchmark, one table of ratios against baselines measured in the same run.

Writes the figures to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    dispatch_latency,
    dispatch_quality,
    dispatch_stream,
    export_memory,
    intake_throughput,
    location_reports,
    long_poll,
    progress_fold,
    propagation,
    route_round,
    routes,
    startup,
    volunteer_app,
)

RESULTS = Path(__file__).parent / "results" / "latest.json"


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    intake = results.get("intake")
    if intake:
        runs = intake["runs"]
        rows.append(
            (
                "intake tasks/s vs bare aiohttp+INSERT",
                f"{runs['intake']['requests_per_s']:.0f}/s",
                f"{runs['insert']['requests_per_s']:.0f}/s",
                f"{intake['ratio_vs_insert']:.2f}x",
                ">= 0.90x",
            )
        )
        rows.append(
            (
                "intake tasks/s vs bare aiohttp hello",
                f"{runs['intake']['requests_per_s']:.0f}/s",
                f"{runs['hello']['requests_per_s']:.0f}/s",
                f"{intake['ratio_vs_hello']:.2f}x",
                "",
            )
        )
        rows.append(
            (
                "intake p99 at half peak rate",
                f"{intake['half_peak_p99_ms']:.0f} ms",
                f"{intake['half_peak_rate']:.0f}/s offered",
                "",
                "",
            )
        )
    polls = results.get("long_poll")
    if polls:
        rows.append(
            (
                f"dispatcher idle CPU, {polls['polls_waiting']} polls waiting vs none",
                f"{polls['cpu_s_idle_with_polls']:.2f} s",
                f"{polls['cpu_s_idle_without_polls']:.2f} s",
                f"{polls['cpu_s_idle_with_polls'] / max(polls['cpu_s_idle_without_polls'], 0.01):.2f}x",
                "~1x (no CPU)",
            )
        )
        rows.append(
            (
                "long-poll wake-up across processes (p50 / max)",
                f"{polls['wake_ms_p50']:.0f} / {polls['wake_ms_max']:.0f} ms",
                "incl. the assign call",
                "",
                "<= 100 ms",
            )
        )
    for name, figures in results.get("dispatch_quality", {}).items():
        rows.append(
            (
                f"dispatch {name} legs x supply: batch vs optimum",
                f"{figures['batch_placed']} placed",
                f"{figures['optimum_placed']} placed",
                f"{figures['batch_per_leg_ratio']:.3f}x",
                "<= 1.02x",
            )
        )
        rows.append(
            (
                f"dispatch {name}: greedy nearest-first vs optimum",
                f"{figures['greedy_placed']} placed",
                f"{figures['optimum_placed']} placed",
                f"{figures['greedy_ratio']:.3f}x",
                "",
            )
        )
    locations = results.get("location_reports")
    if locations:
        rows.append(
            (
                "location reports/s, one dispatcher vs bare aiohttp 202",
                f"{locations['reports_per_s']:.0f}/s",
                f"{locations['baseline_accept_per_s']:.0f}/s",
                f"{locations['ratio_vs_accept']:.2f}x",
                "(HTTP: see stream)",
            )
        )
        stream = locations.get("stream")
        if stream:
            rows.append(
                (
                    f"location fixes/s, {stream['volunteers']} WebSockets, one dispatcher vs bare aiohttp WS",
                    f"{stream['fixes_per_s']:.0f}/s",
                    f"{stream['baseline_fixes_per_s']:.0f}/s",
                    f"{stream['ratio_vs_bare']:.2f}x",
                    ">= 10000/s",
                )
            )
        rows.append(
            (
                f"dispatcher RSS, {locations['on_duty']} on duty vs idle with none",
                f"{locations['rss_mb_on_duty_matcher']:.0f} MB",
                f"{locations['rss_mb_idle_none']:.0f} MB",
                f"{locations['rss_mb_on_duty_matcher'] / max(locations['rss_mb_idle_none'], 1):.2f}x",
                "<= 300 MB",
            )
        )
    stream = results.get("dispatch_stream")
    if stream:
        for label, goal in (("95", "<= 0.35x dist, <= 0.25x wait"), ("50", "<= 1.02x dist")):
            point = stream[f"util_{label}"]
            batch, greedy = point["batch"], point["greedy"]
            at = f"stream at {label}% util (greedy's: {100 * greedy['utilisation']:.1f}%)"
            rows.append(
                (
                    f"{at}: batch vs greedy pickup",
                    f"{batch['mean_pickup_m']:.0f} m",
                    f"{greedy['mean_pickup_m']:.0f} m",
                    f"{point['distance_ratio']:.2f}x",
                    goal,
                )
            )
            rows.append(
                (
                    f"{at}: batch vs greedy wait",
                    f"{batch['mean_wait_s']:.1f} s",
                    f"{greedy['mean_wait_s']:.1f} s",
                    f"{point['wait_ratio']:.2f}x",
                    "",
                )
            )
            by_route = point.get("routes")
            if by_route:
                legs = by_route["max_active_legs"]
                rows.append(
                    (
                        f"{at}: routes (<= {legs} legs) vs greedy pickup",
                        f"{by_route['mean_pickup_m']:.0f} m",
                        f"{greedy['mean_pickup_m']:.0f} m",
                        f"{point['routes_distance_ratio']:.2f}x",
                        "<= 0.35x",
                    )
                )
                rows.append(
                    (
                        f"{at}: routes (<= {legs} legs) vs greedy wait",
                        f"{by_route['mean_wait_s']:.1f} s",
                        f"{greedy['mean_wait_s']:.1f} s",
                        f"{point['routes_wait_ratio']:.2f}x",
                        "<= 0.25x",
                    )
                )
    day = results.get("routes", {}).get("meal_day")
    if day:
        one_leg, vroom, by_route = day["one_leg"], day["vroom"], day.get("routes")
        if by_route:
            rows.append(
                (
                    f"day of {day['model']['meals']} meals: volunteer-km/meal, routes vs one leg",
                    f"{by_route['km_per_meal']:.2f} km",
                    f"{one_leg['km_per_meal']:.2f} km",
                    f"{day['km_ratio_vs_one_leg']:.2f}x",
                    "<= 0.5x",
                )
            )
            rows.append(
                (
                    "day of meals: volunteer-km/meal, routes vs VROOM (whole day offline)",
                    f"{by_route['km_per_meal']:.2f} km",
                    f"{vroom['km_per_meal']:.2f} km",
                    f"{day['km_ratio_vs_vroom']:.2f}x",
                    "<= 1.2x",
                )
            )
        rows.append(
            (
                "day of meals: volunteer-km/meal, one leg vs VROOM (whole day offline)",
                f"{one_leg['km_per_meal']:.2f} km",
                f"{vroom['km_per_meal']:.2f} km",
                f"{day['one_leg_vs_vroom_km']:.2f}x",
                "",
            )
        )
        posted = day.get("ahead")
        if posted:
            ahead = f"{posted['known_ahead_s'] / 60:.0f} min"
            rows.append(
                (
                    f"day of meals posted {ahead} ahead: volunteer-km/meal, planned vs one leg",
                    f"{posted['km_per_meal']:.2f} km",
                    f"{one_leg['km_per_meal']:.2f} km",
                    f"{posted['km_ratio_vs_one_leg']:.2f}x",
                    "<= 0.5x",
                )
            )
            rows.append(
                (
                    f"day of meals posted {ahead} ahead: volunteer-km/meal, planned vs VROOM (offline)",
                    f"{posted['km_per_meal']:.2f} km",
                    f"{vroom['km_per_meal']:.2f} km",
                    f"{posted['km_ratio_vs_vroom']:.2f}x",
                    "<= 1.2x",
                )
            )
        window_s = day["model"]["meal_window_s"]
        for name, figures in (
            ("routes", by_route),
            ("one leg", one_leg),
            ("VROOM", vroom),
            ("posted ahead, planned", posted),
        ):
            if figures:
                p90 = figures["p90_ready_to_delivered_s"]
                rows.append(
                    (
                        f"day of meals: p90 ready->delivered, {name}",
                        f"{p90 / 60:.0f} min",
                        f"window {window_s / 60:.0f} min",
                        f"{p90 / window_s:.2f}x",
                        "<= 1.0x" if name in ("routes", "posted ahead, planned") else "",
                    )
                )
    supply = results.get("routes", {}).get("supply_run")
    if supply:
        rows.append(
            (
                f"supply run, depot to {supply['checkpoints']} checkpoints: our route vs VROOM (mean / max)",
                f"{supply['ours_vs_vroom_mean']:.3f}x",
                f"VROOM {supply['mean_vroom_km']:.1f} km",
                f"{supply['ours_vs_vroom_max']:.3f}x",
                "<= 1.05x",
            )
        )
    cost = results.get("route_round")
    if cost:
        model = cost["model"]
        rows.append(
            (
                f"matcher round with routes vs one leg, {model['volunteers']} on duty, "
                f"{model['legs_per_round']} legs (p50 / p95)",
                f"{cost['routes_ms']['p50']:.0f} / {cost['routes_ms']['p95']:.0f} ms",
                f"{cost['one_leg_ms']['p50']:.0f} / {cost['one_leg_ms']['p95']:.0f} ms",
                f"{cost['p95_ratio']:.2f}x",
                f"routing budget {model['routing_budget_ms']:.0f} ms",
            )
        )
    latency = results.get("dispatch_latency")
    if latency:
        rows.append(
            (
                f"submission->offer p50/p95/p99, {latency['volunteers_on_duty']} on duty, "
                f"{latency['rate_achieved_per_s']:.0f}/s",
                "/".join(f"{latency.get(p, 0):.0f}" for p in ("p50_ms", "p95_ms", "p99_ms")) + " ms",
                f"window {latency['window_ms']} ms",
                f"{latency.get('p95_vs_window', 0):.2f}x",
                f"p95 <= {latency['target_p95_ms']} ms",
            )
        )
        stages = latency.get("stages", {})
        if "round" in stages:
            rows.append(
                (
                    "  where it goes, p50/p95: relay / to the round / the round",
                    " · ".join(
                        f"{stages[name]['p50_ms']:.0f}/{stages[name]['p95_ms']:.0f}"
                        for name in ("relay", "to_round", "round")
                    )
                    + " ms",
                    f"{stages['rounds']} rounds, full batch {latency['full_batch_legs']} legs",
                    f"dispatcher CPU {latency['dispatcher_cpu_s']:.1f} s",
                    "",
                )
            )
    for key, consumer in (
        ("propagation", "fetch wait 10 ms"),
        ("propagation_default_fetch", "fetch wait 500 ms"),
    ):
        prop = results.get(key)
        if prop:
            rows.append(
                (
                    f"outbox commit->receipt p99 vs bare broker ({consumer})",
                    f"{prop['outbox']['p99_ms']:.0f} ms",
                    f"{prop['broker']['p99_ms']:.0f} ms",
                    f"{prop['p99_ratio']:.2f}x",
                    "<= 10x" if key == "propagation" else "",
                )
            )
    start = results.get("startup")
    if start:
        embedded, defaults = start["embedded"], start["defaults_baseline"]
        rows.append(
            (
                "first offer after ready",
                f"{embedded['first_offer_s']:.2f} s",
                f"{defaults['first_offer_s']:.2f} s (default timings)",
                "",
                f"<= {start['target_first_offer_s']:.1f} s",
            )
        )
        rows.append(
            (
                "offer after a dispatcher restart (SIGTERM)",
                f"{embedded['restart_offer_s']:.2f} s",
                f"{defaults['restart_offer_s']:.2f} s (default timings)",
                f"{start['restart_ratio_vs_defaults']:.2f}x",
                f"<= {start['target_restart_offer_s']:.0f} s",
            )
        )
        spread = start["spread"]["restart_offer_s"]
        rows.append(
            (
                "offer after a dispatcher restart vs a cold start",
                f"{spread['median']:.2f} s ({spread['min']:.2f}-{spread['max']:.2f})",
                f"{start['spread']['cold_start_offer_s']['median']:.2f} s (start, ready, offer)",
                f"{start['restart_ratio_vs_cold_start']:.2f}x",
                f"<= {start['target_restart_offer_s']:.0f} s",
            )
        )
        rows.append(
            (
                "offer after a dispatcher restart (kill -9)",
                f"{embedded['kill_restart_offer_s']:.2f} s",
                f"{defaults['kill_restart_offer_s']:.2f} s (default timings)",
                "",
                f"<= {start['target_restart_offer_s']:.0f} s",
            )
        )
    fold = results.get("progress_fold")
    if fold:
        batched, alone = fold["batched"], fold["one_at_a_time"]
        rows.append(
            (
                f"intake read model, events/s in batches of {fold['batch']} vs one at a time",
                f"{batched['events_per_s']:.0f}/s",
                f"{alone['events_per_s']:.0f}/s",
                f"{fold['ratio_events_per_s']:.1f}x",
                "same read model" if fold["same_read_model"] else "READ MODELS DIFFER",
            )
        )
        rows.append(
            (
                "intake read model, CPU per event (intake / database)",
                f"{batched['cpu_ms_per_event']:.2f} / {batched['database_cpu_ms_per_event']:.2f} ms",
                f"{alone['cpu_ms_per_event']:.2f} / {alone['database_cpu_ms_per_event']:.2f} ms",
                f"{fold['ratio_cpu_per_event']:.2f}x / {fold['ratio_database_cpu_per_event']:.2f}x",
                "",
            )
        )
    export = results.get("export_memory")
    if export:
        streamed = export["streamed"]
        big, small = streamed[str(export["tasks"])], streamed[str(export["small"])]
        rows.append(
            (
                f"CSV export peak memory, {export['tasks']:,} vs {export['small']:,} tasks",
                f"{big['peak_mb']:.1f} MB",
                f"{small['peak_mb']:.1f} MB",
                f"{export['ratio_100k_vs_10k']:.2f}x",
                f"<= {export['target_ratio_100k_vs_10k']:.1f}x",
            )
        )
        rows.append(
            (
                f"CSV export peak memory vs holding {export['tasks']:,} rows",
                f"{big['peak_mb']:.1f} MB",
                f"{export['materialised']['peak_mb']:.1f} MB",
                f"{export['ratio_streamed_vs_materialised']:.2f}x",
                "",
            )
        )
    app = results.get("volunteer_app")
    if app and "first_load" in app:
        first, repeat, blank = app["first_load"], app["repeat_load"], app["baseline"]
        for name, load, target in (("first", first, "<= 5 s"), ("repeat", repeat, "<= 1 s")):
            rows.append(
                (
                    f"volunteer app {name} load usable, 400 kbit/s 400 ms CPU 4x (Lighthouse)",
                    f"{load['usable_s']:.2f} s",
                    f"{blank['usable_s']:.2f} s one-heading page",
                    f"{load['usable_s'] / blank['usable_s']:.2f}x",
                    target,
                )
            )
        rows.append(
            (
                "volunteer app Lighthouse mobile performance / accessibility",
                f"{first['performance_score']} / {first['accessibility_score']}",
                f"{blank['performance_score']} / {blank['accessibility_score']}",
                "",
                ">= 90 / >= 90",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per intake run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-intake", action="store_true")
    parser.add_argument("--polls", type=int, default=2000, help="long polls kept waiting")
    parser.add_argument("--quick", action="store_true", help="smaller sizes for the new benchmarks")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    took: dict[str, float] = {}
    results["took_s"] = took

    def run(key: str, title: str, measure: Callable[[], Any]) -> None:
        """One benchmark, its title before and the minutes it took after (where `make bench`'s
        time goes)."""
        print(f"== {title}", flush=True)
        started = time.perf_counter()
        results[key] = measure()
        took[key] = round(time.perf_counter() - started, 1)
        print(f"   {took[key] / 60:.1f} min", flush=True)

    run("dispatch_quality", "dispatch quality (fixed snapshots)", dispatch_quality.run)
    if not args.skip_intake:
        run(
            "intake",
            "intake throughput (wrk)",
            lambda: intake_throughput.measure(duration_s=args.duration, connections=args.connections),
        )
    run("long_poll", "long polls (idle cost, wake-up)", lambda: long_poll.measure(polls=args.polls))
    run("location_reports", "location reports (wrk) and dispatcher memory", location_reports.measure)
    run(
        "dispatch_stream",
        "dispatch under a stream (simulation)",
        (lambda: dispatch_stream.measure(volunteers=300, duration_s=7200, warmup_s=1800))
        if args.quick
        else dispatch_stream.measure,
    )
    run(
        "routes",
        "routes: a day of meals and a supply run against VROOM (simulation)",
        lambda: routes.measure(quick=args.quick),
    )
    run(
        "route_round",
        "the matcher round with routes vs one leg at a time (same snapshots)",
        lambda: route_round.measure(rounds=8 if args.quick else 20),
    )
    run(
        "dispatch_latency",
        "submission -> offer latency (real services)",
        lambda: dispatch_latency.measure(rate=200.0, seconds=10.0 if args.quick else 20.0, volunteers=20_000),
    )
    run("startup", "start-up and restart (real services)", startup.measure)
    # A short fetch wait shows the pipeline's own cost; with aiokafka's default (what the services
    # use) the consumer's fetch cadence dominates both paths alike.
    events = 600 if args.quick else 2000
    run(
        "propagation",
        "event propagation (outbox vs broker)",
        lambda: propagation.measure(events=events, fetch_max_wait_ms=10),
    )
    run(
        "propagation_default_fetch",
        "event propagation, the consumers' default fetch wait",
        lambda: propagation.measure(events=events),
    )
    run(
        "progress_fold",
        "intake's read model: events folded in batches vs one at a time",
        lambda: progress_fold.measure(tasks=300 if args.quick else 1000),
    )
    run("export_memory", "CSV export memory (100,000 tasks vs 10,000)", export_memory.measure)
    try:
        run("volunteer_app", "volunteer app load (Lighthouse, throttled phone)", volunteer_app.measure)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:  # no npm registry, no Chromium
        results["volunteer_app"] = {"error": repr(exc)}
        print(f"   skipped: {exc!r}")
    rows = _rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    header = ("benchmark", "measured", "baseline", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print()
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS}; {sum(took.values()) / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
