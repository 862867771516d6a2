"""The board's page lets exactly its configured tile server's images in, and nothing more."""

from __future__ import annotations

from aiohttp import web

from services.intake.entrypoints.console.board import _with_tiles
from services.intake.entrypoints.console.common import PAGE_POLICY


def page() -> web.Response:
    return web.Response(text="", headers={"Content-Security-Policy": PAGE_POLICY})


def test_no_tile_url_leaves_the_policy_as_it_is() -> None:
    assert _with_tiles(page(), "").headers["Content-Security-Policy"] == PAGE_POLICY


def test_the_tile_servers_origin_is_allowed_for_images_only() -> None:
    policy = _with_tiles(page(), "https://tile.openstreetmap.org/{z}/{x}/{y}.png").headers[
        "Content-Security-Policy"
    ]
    assert "img-src 'self' https://tile.openstreetmap.org data:" in policy
    assert policy.count("tile.openstreetmap.org") == 1
    assert "connect-src 'self';" in policy


def test_a_subdomain_template_allows_the_subdomains() -> None:
    policy = _with_tiles(page(), "https://{s}.tile.example.org/{z}/{x}/{y}.png").headers[
        "Content-Security-Policy"
    ]
    assert "img-src 'self' https://*.tile.example.org data:" in policy
