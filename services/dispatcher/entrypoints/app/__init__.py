"""The volunteer app, served at `/app/`: plain HTML, CSS and ES modules, no build step.

The files are read once at start, the vendored `idb` address and the shell's version written into
them, and kept gzip-compressed beside the plain bytes: a cheap phone on a slow link gets the
smaller answer whenever it says it accepts it. Each file answers with an ETag and `no-cache`, so a
phone revalidates (a 304 costs a few bytes) and the service worker, which caches the shell for
offline starts, notices a new version. The policy allows the app's own scripts only (no inline
script), and talks to this origin only: the `/v1/me` API, and the catalogues at `/app/i18n/`.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from shared.web.i18n import LANGUAGES, Catalogue, request_language
from shared.web.static import vendor_url

APP_DIR = Path(__file__).resolve().parent
STATIC_DIR = APP_DIR / "static"
CATALOGUE = Catalogue(APP_DIR / "i18n")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Written into the files as they are loaded: where the vendored `idb` is, and the shell's version.
IDB_PLACEHOLDER = "__IDB_URL__"
VERSION_PLACEHOLDER = "__APP_VERSION__"
# The maps apps "Navigate" offers (the setting APP_MAP_APPS), written into the page.
MAP_APPS_PLACEHOLDER = "__MAP_APPS__"
DEFAULT_MAP_APPS = ("geo", "apple")


@dataclass(frozen=True)
class AppFile:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def _entry(body: bytes, content_type: str) -> AppFile:
    compressible = not content_type.startswith("image/png")
    gzipped = gzip.compress(body, compresslevel=9, mtime=0) if compressible else None
    return AppFile(
        body=body,
        gzipped=gzipped if gzipped is not None and len(gzipped) < len(body) else None,
        content_type=content_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
    )


def load_files(map_apps: tuple[str, ...] = DEFAULT_MAP_APPS) -> dict[str, AppFile]:
    """Every file of the app by its address under `/app/`; the page itself as `#<language>`."""
    raw: dict[str, bytes] = {
        path.relative_to(STATIC_DIR).as_posix(): path.read_bytes()
        for path in sorted(STATIC_DIR.rglob("*"))
        if path.is_file()
    }
    for language in LANGUAGES:
        raw[f"i18n/{language}.json"] = json.dumps(
            dict(CATALOGUE.of(language)), ensure_ascii=False, sort_keys=True
        ).encode()
    idb = vendor_url("idb", "index.js")
    version = hashlib.sha256(b"".join(name.encode() + body for name, body in sorted(raw.items())))
    version.update(" ".join(map_apps).encode())  # a changed setting is a new shell too
    files: dict[str, AppFile] = {}
    for name, body in raw.items():
        suffix = Path(name).suffix
        content_type = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if suffix in (".js", ".html", ".webmanifest"):
            body = (
                body.decode()
                .replace(IDB_PLACEHOLDER, idb)
                .replace(VERSION_PLACEHOLDER, version.hexdigest()[:16])
                .replace(MAP_APPS_PLACEHOLDER, html.escape(" ".join(map_apps)))
                .encode()
            )
        if name == "index.html":
            # The page in each language, its texts in place: it reads before any script has run.
            for language in LANGUAGES:
                files[f"#{language}"] = _entry(page_in(body.decode(), language).encode(), content_type)
        else:
            files[name] = _entry(body, content_type)
    return files


_MARKED = re.compile(r'(<(\w+)\b[^>]*\sdata-i18n="([a-z0-9_.]+)"[^>]*>)(</\2>)')


def page_in(page: str, language: str) -> str:
    """The page with every `data-i18n` element's text, and its `lang`, in `language`."""
    page = page.replace('<html lang="zh">', f'<html lang="{language}">', 1)
    page = page.replace(
        "<title>Errands</title>", f"<title>{html.escape(CATALOGUE.text(language, 'app.title'))}</title>"
    )
    return _MARKED.sub(
        lambda m: m.group(1) + html.escape(CATALOGUE.text(language, m.group(3))) + m.group(4), page
    )


FILES = web.AppKey("app_files", dict)


async def _app_file(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "")
    if not name or name.startswith("#"):
        name = f"#{request_language(request)}"
    found: AppFile | None = request.app[FILES].get(name)
    if found is None:
        raise web.HTTPNotFound()
    headers = {
        "Cache-Control": "no-cache",
        "ETag": found.etag,
        "Vary": "Accept-Encoding, Accept-Language, Cookie",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    body = found.body
    if found.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = found.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers={**headers, "Content-Type": found.content_type})


async def _to_app(request: web.Request) -> web.Response:
    # A redirect keeps the link's `#token=...` fragment: the browser carries it to the new address.
    raise web.HTTPFound("/app/")


def add_app_routes(app: web.Application, *, map_apps: str = ",".join(DEFAULT_MAP_APPS)) -> None:
    """Serve the volunteer app at `/app/` (the vendored libraries it imports: `add_vendor_routes`).

    `map_apps` is the setting APP_MAP_APPS: the maps apps "Navigate" offers, comma-separated.
    """
    app[FILES] = load_files(tuple(name for name in map_apps.split(",") if name))
    app.router.add_get("/app", _to_app)
    app.router.add_get("/enrol", _to_app)
    app.router.add_get("/app/", _app_file)
    app.router.add_get("/app/{name:.+}", _app_file)
