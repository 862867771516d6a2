"""'Navigate': which maps apps the volunteer app offers, and the links it hands to them.

The links are built by the app's own module (static/maps.js), run here by Node exactly as the
browser runs it; the setting reaches the page as a meta element.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from services.dispatcher.entrypoints.app import STATIC_DIR, add_app_routes, load_files
from shared.settings import Settings

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node to run the app's module")


def run_maps(expression: str) -> Any:
    """The value of `expression` (JSON) with maps.js imported as `maps`."""
    script = f"import * as maps from {json.dumps((STATIC_DIR / 'maps.js').as_uri())};\n" + (
        f"process.stdout.write(JSON.stringify({expression}));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(done.stdout)


STOP = {"lat": 31.2304, "lon": 121.4737, "name": "Flat 5, 12 Hill St & Co"}


@needs_node
def test_only_known_apps_are_taken_from_the_page_in_its_order() -> None:
    assert run_maps('maps.configuredApps("amap geo  baidu,apple waze")') == ["amap", "geo", "baidu", "apple"]
    assert run_maps("maps.configuredApps(undefined)") == []


@needs_node
def test_android_gets_geo_apple_phones_get_apple_maps_and_both_get_amap_and_baidu() -> None:
    every = json.dumps(["geo", "apple", "amap", "baidu"])
    android = run_maps(f"maps.mapLinks({every}, {json.dumps(STOP)}, {{ apple: false }})")
    iphone = run_maps(f"maps.mapLinks({every}, {json.dumps(STOP)}, {{ apple: true }})")
    assert [link["app"] for link in android] == ["geo", "amap", "baidu"]
    assert [link["app"] for link in iphone] == ["apple", "amap", "baidu"]
    links = {link["app"]: link["href"] for link in android + iphone}

    assert links["geo"].startswith("geo:31.2304,121.4737?q=31.2304,121.4737(")
    assert unquote(links["geo"]).endswith("(Flat 5, 12 Hill St & Co)")

    apple = urlsplit(links["apple"])
    assert (apple.scheme, apple.netloc) == ("https", "maps.apple.com")
    assert parse_qs(apple.query)["daddr"] == ["31.2304,121.4737"]

    amap = urlsplit(links["amap"])
    assert (amap.netloc, amap.path) == ("uri.amap.com", "/navigation")
    query = parse_qs(amap.query)
    # Amap takes longitude first, and is told the coordinates are the GPS's own (WGS-84).
    assert query["to"] == ["121.4737,31.2304,Flat 5, 12 Hill St & Co"]
    assert query["coordinate"] == ["wgs84"]

    baidu = urlsplit(links["baidu"])
    assert baidu.netloc == "api.map.baidu.com"
    query = parse_qs(baidu.query)
    assert query["location"] == ["31.2304,121.4737"]
    assert query["coord_type"] == ["wgs84"]
    assert query["title"] == ["Flat 5, 12 Hill St & Co"], "the name's & does not split the query"


@needs_node
def test_only_the_configured_apps_are_offered_and_a_stop_without_coordinates_gets_none() -> None:
    assert [
        link["app"] for link in run_maps(f'maps.mapLinks(["baidu"], {json.dumps(STOP)}, {{ apple: false }})')
    ] == ["baidu"]
    assert run_maps('maps.mapLinks(["apple"], {"lat": 1, "lon": 2}, { apple: false })') == []
    assert run_maps('maps.mapLinks(["geo"], {"lat": null, "lon": "x"}, { apple: false })') == []


async def test_the_setting_is_written_into_the_page_and_changes_the_shells_version() -> None:
    app = web.Application()
    add_app_routes(app, map_apps="geo,amap,baidu")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/app/")
        assert '<meta name="errands-map-apps" content="geo amap baidu">' in await response.text()
    plain = load_files()
    assert '<meta name="errands-map-apps" content="geo apple">' in plain["#zh"].body.decode()
    assert plain["sw.js"].body != load_files(("geo", "amap", "baidu"))["sw.js"].body


def test_the_setting_names_known_apps_only() -> None:
    assert Settings(app_map_apps="geo,apple,amap,baidu").app_map_apps == "geo,apple,amap,baidu"
    for wrong in ("waze", "geo,,apple", "geo apple", ""):
        with pytest.raises(ValidationError) as refused:
            Settings(app_map_apps=wrong)
        assert "app_map_apps" in str(refused.value)
