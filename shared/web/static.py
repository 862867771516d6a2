"""Serving the vendored front-end libraries under versioned, immutable URLs.

`make vendor` copies each pinned library from npm into `shared/web/vendor/<name>/` with its licence
and records the versions in `VERSIONS.json`. Pages link `/static/vendor/<name>@<version>/<file>`
(`vendor_url`), so a browser may keep a file for a year: a new version is a new address.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from aiohttp import web

VENDOR_DIR = Path(__file__).with_name("vendor")
IMMUTABLE = "public, max-age=31536000, immutable"


@functools.cache
def vendored() -> dict[str, str]:
    """Each vendored library's name and pinned version."""
    manifest = json.loads((VENDOR_DIR / "VERSIONS.json").read_text(encoding="utf-8"))
    return {name: entry["version"] for name, entry in manifest.items()}


def vendor_url(library: str, file: str) -> str:
    """The address of one file of a vendored library (a KeyError names a library not vendored)."""
    return f"/static/vendor/{library}@{vendored()[library]}/{file}"


async def _vendor_file(request: web.Request) -> web.FileResponse:
    library, version = request.match_info["library"], request.match_info["version"]
    if vendored().get(library) != version:
        raise web.HTTPNotFound()
    root = (VENDOR_DIR / library).resolve()
    path = (root / request.match_info["file"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"})


def add_vendor_routes(app: web.Application) -> None:
    """Serve the vendored libraries from `app` at `/static/vendor/...`."""
    app.router.add_get(r"/static/vendor/{library}@{version}/{file:.+}", _vendor_file)
