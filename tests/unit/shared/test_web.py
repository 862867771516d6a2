"""The pages' shared parts: language choice, catalogues that agree, and the vendored libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from shared.web.i18n import LANGUAGES, Catalogue, accept_language, placeholders, request_language
from shared.web.static import VENDOR_DIR, add_vendor_routes, vendor_url, vendored

ROOT = Path(__file__).resolve().parents[3]
CATALOGUES = sorted({path.parent for path in ROOT.glob("services/**/i18n/*.json")})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,ja;q=0.8,ko;q=0.7", "ja"),
        ("ko;q=0.2, en;q=0.5", "en"),
        ("zh-Hant-TW", "zh"),
        ("fr, de", None),
        ("en;q=0, ja", "ja"),
        ("en;q=abc, ko", "ko"),
        ("", None),
    ],
)
def test_accept_language_takes_the_most_preferred_supported_language(
    header: str, expected: str | None
) -> None:
    assert accept_language(header) == expected


def test_an_explicit_choice_beats_the_cookie_which_beats_the_browser() -> None:
    browser = {"Accept-Language": "ja"}
    assert request_language(make_mocked_request("GET", "/", headers=browser)) == "ja"
    with_cookie = {**browser, "Cookie": "lang=ko"}
    assert request_language(make_mocked_request("GET", "/", headers=with_cookie)) == "ko"
    assert request_language(make_mocked_request("GET", "/?lang=en", headers=with_cookie)) == "en"
    assert request_language(make_mocked_request("GET", "/?lang=xx", headers={"Cookie": "lang=yy"})) == "zh"


@pytest.mark.parametrize("directory", CATALOGUES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_language_of_a_catalogue_has_the_same_keys_and_placeholders(directory: Path) -> None:
    catalogue = Catalogue(directory)
    reference = catalogue.texts["zh"]
    for language in LANGUAGES:
        texts = catalogue.texts[language]
        assert texts.keys() == reference.keys(), f"{language}: {sorted(texts.keys() ^ reference.keys())}"
        for key, text in texts.items():
            assert text.strip(), f"{language}.{key} is empty"
            assert placeholders(text) == placeholders(reference[key]), f"{language}.{key}"


def test_catalogue_fills_placeholders_and_falls_back_to_chinese(tmp_path: Path) -> None:
    for language in LANGUAGES:
        (tmp_path / f"{language}.json").write_text(json.dumps({"hi": f"{language} {{name}}"}))
    catalogue = Catalogue(tmp_path)
    assert catalogue.text("ko", "hi", name="Mina") == "ko Mina"
    assert catalogue.text("fr", "hi", name="Li") == "zh Li"
    (tmp_path / "ko.board.json").write_text(json.dumps({"bye": "ko {name}!"}))
    assert Catalogue(tmp_path).text("ko", "bye", name="Mina") == "ko Mina!"
    (tmp_path / "ko.extra.json").write_text(json.dumps({"bye": "again"}))
    with pytest.raises(ValueError, match="defines again"):
        Catalogue(tmp_path)
    (tmp_path / "ko.extra.json").unlink()
    (tmp_path / "ja.json").write_text(json.dumps({"hi": 3}))
    with pytest.raises(ValueError, match=r"ja\.json"):
        Catalogue(tmp_path)


def test_the_vendored_libraries_are_the_pinned_ones_each_with_its_licence() -> None:
    package = json.loads((ROOT / "web" / "package.json").read_text())
    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    assert vendored() == package["dependencies"]
    for name, version in vendored().items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert (VENDOR_DIR / name / "LICENSE").stat().st_size > 100


async def test_vendored_files_are_served_immutable_and_nothing_else() -> None:
    app = web.Application()
    add_vendor_routes(app)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(vendor_url("idb", "index.js"))
        assert response.status == 200
        assert "javascript" in response.content_type
        assert "immutable" in response.headers["Cache-Control"]
        for path in (
            "/static/vendor/idb@0.0.1/index.js",
            "/static/vendor/nothing@1/index.js",
            f"/static/vendor/idb@{vendored()['idb']}/../../i18n.py",
            f"/static/vendor/idb@{vendored()['idb']}/%2e%2e/%2e%2e/i18n.py",
            f"/static/vendor/idb@{vendored()['idb']}/missing.js",
        ):
            assert (await client.get(path)).status == 404, path
