"""`make bench`: every benchmark, one table of ratios against baselines measured in the same run.

Writes the figures to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dispatch_quality, intake_throughput, long_poll

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
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per intake run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-intake", action="store_true")
    parser.add_argument("--polls", type=int, default=2000, help="long polls kept waiting")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    print("== dispatch quality (fixed snapshots)")
    results["dispatch_quality"] = dispatch_quality.run()
    if not args.skip_intake:
        print("== intake throughput (wrk)")
        results["intake"] = intake_throughput.measure(duration_s=args.duration, connections=args.connections)
    print("== long polls (idle cost, wake-up)")
    results["long_poll"] = long_poll.measure(polls=args.polls)
    rows = _rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    header = ("benchmark", "measured", "baseline", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print()
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
