"""The volunteer app's files as the dispatcher serves them: policy, compression, revalidation, budget."""

from __future__ import annotations

import gzip
import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.dispatcher.entrypoints.app import CATALOGUE, STATIC_DIR, add_app_routes, load_files
from shared.web.static import add_vendor_routes, vendor_url

# What a first visit downloads before the app is usable: the page, its styles and modules, the
# vendored idb, one catalogue, the manifest and its icon (the service worker then caches the rest).
FIRST_LOAD = (
    "/app/",
    "/app/app.css",
    "/app/boot.js",
    "/app/app.js",
    "/app/i18n.js",
    "/app/api.js",
    "/app/outbox.js",
    "/app/location.js",
    "/app/maps.js",
    "/app/i18n/zh.json",
    "/app/manifest.webmanifest",
    "/app/icon-192.png",
    "/app/icon.svg",
    vendor_url("idb", "index.js"),
)
FIRST_LOAD_BUDGET_BYTES = 150 * 1024


def served() -> web.Application:
    app = web.Application()
    add_app_routes(app)
    add_vendor_routes(app)
    return app


async def test_the_page_has_a_strict_policy_and_no_inline_script() -> None:
    async with TestClient(TestServer(served())) as client:
        response = await client.get("/app/")
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "connect-src 'self'" in policy
        assert "unsafe-inline" not in policy
        page = await response.text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "every script is a file"
    assert vendor_url("idb", "index.js") in page
    assert "__IDB_URL__" not in page


async def test_the_page_reads_in_the_language_asked_before_any_script_runs() -> None:
    async with TestClient(TestServer(served())) as client:
        korean = await (await client.get("/app/", headers={"Accept-Language": "ko-KR,ko;q=0.9"})).text()
        chosen = await (await client.get("/app/?lang=en", headers={"Accept-Language": "ko"})).text()
        kept = await (await client.get("/app/", cookies={"lang": "ja"})).text()
        default = await (await client.get("/app/")).text()
    assert '<html lang="ko">' in korean and f">{CATALOGUE.text('ko', 'enrol.link')}<" in korean
    assert '<html lang="en">' in chosen and ">Enrolment link<" in chosen
    assert '<html lang="ja">' in kept and f"<title>{CATALOGUE.text('ja', 'app.title')}</title>" in kept
    assert '<html lang="zh">' in default and f">{CATALOGUE.text('zh', 'duty.title')}<" in default
    assert not re.search(r'data-i18n="[^"]+"></', default), "every marked element has its text"


async def test_files_are_compressed_and_revalidated_by_etag() -> None:
    async with TestClient(TestServer(served())) as client:
        response = await client.get("/app/app.js", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert response.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(await response.read())
        assert b"import" in body
        again = await client.get("/app/app.js", headers={"If-None-Match": response.headers["ETag"]})
        assert again.status == 304
        assert (await client.get("/app/nothing.js")).status == 404
        assert (await client.get("/app/../bootstrap.py")).status == 404


async def test_the_service_worker_is_served_within_its_scope_with_the_shells_version() -> None:
    async with TestClient(TestServer(served())) as client:
        response = await client.get("/app/sw.js")
        assert response.status == 200
        assert response.content_type == "text/javascript"
        text = await response.text()
    assert "__APP_VERSION__" not in text and "__IDB_URL__" not in text
    assert vendor_url("idb", "index.js") in text


async def test_an_enrolment_link_lands_on_the_app() -> None:
    async with TestClient(TestServer(served())) as client:
        for path in ("/enrol", "/app"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 302 and response.headers["Location"] == "/app/"


async def test_each_catalogue_is_served_whole() -> None:
    async with TestClient(TestServer(served())) as client:
        for language, texts in CATALOGUE.texts.items():
            response = await client.get(f"/app/i18n/{language}.json")
            assert await response.json() == texts


async def test_the_first_load_fits_the_budget_compressed() -> None:
    total = 0
    async with TestClient(TestServer(served())) as client:
        for path in FIRST_LOAD:
            response = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
            assert response.status == 200, path
            total += len(await response.read())
    print(f"\nfirst load, compressed: {total} bytes")
    assert total <= FIRST_LOAD_BUDGET_BYTES


def test_every_module_the_page_loads_is_in_the_service_workers_shell() -> None:
    files = load_files()
    shell = files["sw.js"].body.decode()
    for path in STATIC_DIR.glob("*.js"):
        if path.name != "sw.js":
            assert f'"/app/{path.name}"' in shell, path.name
