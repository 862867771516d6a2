"""Language catalogues for the pages: one JSON file per language, the same keys in each.

A page's catalogue is a directory holding `zh.json`, `en.json`, `ko.json` and `ja.json`, each a flat
object from a key to a text; `{name}` marks a value filled in when the text is used. A catalogue may
be split into parts by area (`zh.board.json` beside `zh.json`): a language's parts are merged, and a
key may be defined only once. Chinese is the
default. The language of a request is the `lang` query parameter, else the `lang` cookie (set when a
person picks one), else the best match in `Accept-Language`, else Chinese.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from importlib.resources.abc import Traversable

from aiohttp import web

LANGUAGES = ("zh", "en", "ko", "ja")
DEFAULT_LANGUAGE = "zh"
LANGUAGE_COOKIE = "lang"
# Each language named in itself, for the language switch.
LANGUAGE_NAMES = {"zh": "中文", "en": "English", "ko": "한국어", "ja": "日本語"}


class Catalogue:
    """The texts of one page (or app) in every supported language."""

    def __init__(self, directory: Traversable) -> None:
        self.texts: dict[str, dict[str, str]] = {}
        for language in LANGUAGES:
            parts = sorted(
                entry.name
                for entry in directory.iterdir()
                if entry.name == f"{language}.json"
                or (entry.name.startswith(f"{language}.") and entry.name.endswith(".json"))
            )
            if f"{language}.json" not in parts:
                raise ValueError(f"{directory}/{language}.json is missing")
            merged: dict[str, str] = {}
            for name in parts:
                loaded = json.loads(directory.joinpath(name).read_text(encoding="utf-8"))
                if not isinstance(loaded, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
                ):
                    raise ValueError(f"{directory}/{name} must be an object of strings")
                if twice := merged.keys() & loaded.keys():
                    raise ValueError(f"{directory}/{name} defines again: {sorted(twice)}")
                merged.update(loaded)
            self.texts[language] = merged

    def text(self, language: str, key: str, **values: object) -> str:
        """The text for `key` in `language`, with its `{placeholders}` filled from `values`."""
        template = self.texts[language if language in self.texts else DEFAULT_LANGUAGE][key]
        return template.format(**values) if values else template

    def of(self, language: str) -> Mapping[str, str]:
        return self.texts[language if language in self.texts else DEFAULT_LANGUAGE]


def placeholders(text: str) -> set[str]:
    """The names of the `{placeholders}` in a catalogue text."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def accept_language(header: str) -> str | None:
    """The supported language the `Accept-Language` header prefers most, if any."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def request_language(request: web.Request) -> str:
    """The language to answer `request` in: chosen explicitly, remembered, or the browser's."""
    for chosen in (request.query.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if chosen in LANGUAGES:
            return chosen
    return accept_language(request.headers.get("Accept-Language", "")) or DEFAULT_LANGUAGE
