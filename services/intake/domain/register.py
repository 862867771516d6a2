"""The register of people served and saved places: how their sealed details are made searchable, and
how a task's pickup or drop-off is filled from them.

Names, phones, e-mails, addresses and notes are sealed at rest; search goes through keyed hashes
(blind indexes) of normalised values, made here without any key (the adapters key them):

- phone and e-mail: one exact value each (digits only; trimmed and lower-cased);
- name and address: *search tokens*. A word in an alphabetic script gives its prefixes of two or more
  characters (so `ali` finds `Alice`); a run of CJK characters gives each character and each pair of
  neighbours (so `小明` finds `王小明`, and `中山` finds `中山西路`). A query matches when all of its
  tokens are among the record's. This finds whole words and their beginnings, not arbitrary inner
  substrings of alphabetic words (`lice` does not find `Alice`), and what the keyed index reveals is
  which records of one organisation share a token: the price of searching sealed data server-side.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Prefixes longer than this add nothing to a search box; it also bounds a record's tokens.
_MAX_PREFIX = 24
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]+"
)
_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _runs(text: str) -> list[tuple[bool, str]]:
    """`text` folded and cut into (is_cjk, run) pieces: CJK runs and the words between them."""
    pieces: list[tuple[bool, str]] = []
    folded = _fold(text)
    position = 0
    for match in _CJK.finditer(folded):
        pieces.extend((False, word) for word in _WORD.findall(folded[position : match.start()]))
        pieces.append((True, match.group()))
        position = match.end()
    pieces.extend((False, word) for word in _WORD.findall(folded[position:]))
    return pieces


def search_tokens(*texts: str | None) -> set[str]:
    """The tokens a record is found by: every prefix (2+) of each word, each CJK character and pair."""
    tokens: set[str] = set()
    for text in texts:
        for cjk, run in _runs(text or ""):
            if cjk:
                tokens.update(run)
                tokens.update(run[i : i + 2] for i in range(len(run) - 1))
            elif len(run) == 1:
                tokens.add(run)
            else:
                tokens.update(run[:end] for end in range(2, min(len(run), _MAX_PREFIX) + 1))
    return tokens


def query_tokens(query: str) -> set[str]:
    """The tokens a query needs: each word as typed (a prefix), each CJK pair (or a lone character)."""
    tokens: set[str] = set()
    for cjk, run in _runs(query):
        if cjk and len(run) > 1:
            tokens.update(run[i : i + 2] for i in range(len(run) - 1))
        else:
            tokens.add(run[:_MAX_PREFIX])
    return tokens


def normalised_phone(phone: str | None) -> str | None:
    """Digits only: `+86 138-1234-1234` and `+8613812341234` are one number."""
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return digits or None


def normalised_email(email: str | None) -> str | None:
    return email.strip().casefold() if email and email.strip() else None


def normalised_address(address: str) -> str:
    """An address as the geocoding cache knows it: folded, blanks collapsed."""
    return " ".join(_fold(address).split())


# --- a pickup or drop-off filled from the register --------------------------------------------------


@dataclass(frozen=True)
class Location:
    lat: float
    lon: float


@dataclass(frozen=True)
class Geocode:
    """No coordinates anywhere, but an address to look up; `field` is where it came from."""

    address: str
    field: str


@dataclass(frozen=True)
class Nowhere:
    """No coordinates and no address: `field` and `reason` say what the client should give."""

    field: str
    reason: str


# Where each filled field is taken from when the request leaves it out, first source first.
PICKUP_FROM_PLACE = {"address": "address", "contact_name": "contact_name", "contact_phone": "contact_phone"}
DROPOFF_FROM_RECIPIENT = {
    "recipient_name": "name",
    "recipient_phone": "phone",
    "recipient_email": "email",
    "language": "language",
    "no_contact": "no_contact",
    "vulnerable": "vulnerable",
    "notes": "access_notes",
    "address": "address",
}
DROPOFF_FROM_PLACE = {"recipient_name": "contact_name", "recipient_phone": "contact_phone"}


def fill_stop(
    given: Mapping[str, Any],
    sources: Sequence[tuple[Mapping[str, Any] | None, Mapping[str, str]]],
) -> dict[str, Any]:
    """The stop's fields: what the request gave, else the first source (record, field map) holding it.

    The result is a copy: the task keeps it, and later edits to the records do not reach it.
    """
    filled = {name: value for name, value in given.items() if value is not None}
    for record, field_map in sources:
        if record is None:
            continue
        for field, source_field in field_map.items():
            if filled.get(field) is None and record.get(source_field) is not None:
                filled[field] = record[source_field]
    return filled


def locate(
    given: Mapping[str, Any],
    *,
    path: str,
    place: Mapping[str, Any] | None,
    recipient: Mapping[str, Any] | None,
) -> Location | Geocode | Nowhere:
    """Where a stop is: its own lat/lon, else its own address (looked up), else the place's, else the
    recipient's location. `path` is the stop's JSON path, for naming the field at fault."""
    if given.get("lat") is not None and given.get("lon") is not None:
        return Location(given["lat"], given["lon"])
    if given.get("address") is not None:
        return Geocode(given["address"], f"{path}.address")
    for record in (place, recipient):
        if record is not None and record.get("lat") is not None and record.get("lon") is not None:
            return Location(record["lat"], record["lon"])
    if recipient is not None:
        return Nowhere(
            f"{path}.recipient_id", "the recipient has no location on record: give lat and lon, or an address"
        )
    return Nowhere(path, "give lat and lon, an address, or a saved place")
