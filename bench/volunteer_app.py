"""The volunteer app's first and repeat load on a throttled phone, by Lighthouse (npm, pinned 12.2.3).

The app's files are served as the dispatcher serves them (`add_app_routes`, `add_vendor_routes`) by a
server in this process; the page loads without a token (the welcome screen: the shell, a catalogue
and `idb`, everything a first visit needs). Lighthouse (installed with npm into a cache directory on
first use, never at test time) drives Debian's Chromium with DevTools throttling close to a cheap
phone on a bad link: 400 kbit/s each way, 400 ms round trips, the CPU slowed 4x.

- first load: a fresh profile; "usable" is Lighthouse's time to interactive, and its mobile
  performance and accessibility scores (targets: usable within 5 s, both scores >= 90);
- repeat load: the same profile again, storage kept, after one more visit so that the service worker
  has surely finished installing: it answers from its cache (target: usable within 1 s);
- baseline, in the same run and under the same throttling: a page of one heading from the same
  server, which is what the network profile alone costs.

Run: `python -m bench.volunteer_app`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from services.dispatcher.entrypoints.app import add_app_routes
from shared.web.static import add_vendor_routes

LIGHTHOUSE_VERSION = "12.2.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "errands" / "lighthouse"
CHROMIUM = Path("/usr/bin/chromium")
THROTTLING = {"requestLatencyMs": 400, "downloadThroughputKbps": 400, "uploadThroughputKbps": 400}
CPU_SLOWDOWN = 4
BASELINE_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Baseline</title></head>'
    "<body><main><h1>Baseline</h1></main></body></html>"
)


def lighthouse() -> Path:
    """The pinned Lighthouse's command-line entry point, installed into the cache on first use."""
    cli = CACHE / "node_modules" / "lighthouse" / "cli" / "index.js"
    installed = CACHE / "node_modules" / "lighthouse" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != LIGHTHOUSE_VERSION:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(CACHE),
                f"lighthouse@{LIGHTHOUSE_VERSION}",
            ],
            check=True,
        )
    return cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _audit(cli: Path, url: str, profile: Path, *, keep_storage: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "report.json"
        command = [
            "node",
            str(cli),
            url,
            "--quiet",
            "--output=json",
            f"--output-path={report}",
            "--only-categories=performance,accessibility",
            "--form-factor=mobile",
            "--throttling-method=devtools",
            *(f"--throttling.{name}={value}" for name, value in THROTTLING.items()),
            f"--throttling.cpuSlowdownMultiplier={CPU_SLOWDOWN}",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-background-networking "
            f"--user-data-dir={profile}",
            *(["--disable-storage-reset"] if keep_storage else []),
        ]
        process = await asyncio.create_subprocess_exec(
            *command, env={**os.environ, "CHROME_PATH": str(CHROMIUM)}
        )
        if await process.wait() != 0:
            raise RuntimeError(f"lighthouse exited with {process.returncode}")
        result = json.loads(report.read_text())
    audits, categories = result["audits"], result["categories"]
    return {
        "first_contentful_paint_s": audits["first-contentful-paint"]["numericValue"] / 1000,
        "largest_contentful_paint_s": audits["largest-contentful-paint"]["numericValue"] / 1000,
        "usable_s": audits["interactive"]["numericValue"] / 1000,
        "transferred_kb": audits["total-byte-weight"]["numericValue"] / 1024,
        "performance_score": round(categories["performance"]["score"] * 100),
        "accessibility_score": round(categories["accessibility"]["score"] * 100),
    }


async def _measure() -> dict[str, Any]:
    cli = lighthouse()
    app = web.Application()
    add_app_routes(app)
    add_vendor_routes(app)

    async def baseline(_: web.Request) -> web.Response:
        return web.Response(text=BASELINE_PAGE, content_type="text/html")

    app.router.add_get("/baseline", baseline)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    profiles = Path(tempfile.mkdtemp(prefix="errands-lighthouse-"))
    try:
        first = await _audit(cli, f"{base}/app/", profiles / "app", keep_storage=False)
        # A visit that leaves the service worker installed (the first one may close before it is),
        # then the repeat load measured.
        await _audit(cli, f"{base}/app/", profiles / "app", keep_storage=True)
        repeat = await _audit(cli, f"{base}/app/", profiles / "app", keep_storage=True)
        plain = await _audit(cli, f"{base}/baseline", profiles / "baseline", keep_storage=False)
    finally:
        await runner.cleanup()
        shutil.rmtree(profiles, ignore_errors=True)
    return {
        "lighthouse": LIGHTHOUSE_VERSION,
        "throttling": {**THROTTLING, "cpuSlowdownMultiplier": CPU_SLOWDOWN},
        "first_load": first,
        "repeat_load": repeat,
        "baseline": plain,
        "first_usable_vs_baseline": first["usable_s"] / plain["usable_s"],
        "repeat_usable_vs_baseline": repeat["usable_s"] / plain["usable_s"],
    }


def measure() -> dict[str, Any]:
    return asyncio.run(_measure())


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
