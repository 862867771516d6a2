"""The register of people served and saved places: keeping them, finding them, erasing them, and
finding coordinates for an address."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.repository import SqlRegister, erase_inactive_recipients
from services.intake.adapters.tables import PlaceRow, RecipientRow
from services.intake.domain.errors import (
    ADDRESS_NOT_FOUND,
    NO_GEOCODER,
    LocationMissing,
    PlaceNotFound,
    RecipientNotFound,
)
from services.intake.domain.register import (
    Location,
    normalised_email,
    normalised_phone,
    query_tokens,
    search_tokens,
)
from services.intake.entrypoints.schemas import (
    PlaceIn,
    PlaceListQuery,
    PlacePatchIn,
    RecipientIn,
    RecipientListQuery,
    RecipientPatchIn,
)
from shared import crypto

# What of a recipient is sealed at rest; the rest (language, flags, times) is plain.
SEALED_FIELDS = ("name", "phone", "email", "address", "lat", "lon", "access_notes", "consent_given_by")


class Locator(Protocol):
    async def locate(self, address: str) -> Location | None: ...


@dataclass(frozen=True)
class RegisterKeys:
    data_key: bytes
    # Keys the blind indexes; derived from the data key, never the data key itself.
    index_key: bytes

    @classmethod
    def from_data_key(cls, data_key: bytes) -> RegisterKeys:
        return cls(data_key=data_key, index_key=crypto.derived_key(data_key, "recipient-index"))


async def find_location(address: str, *, field: str, geocoder: Locator | None) -> Location:
    """The coordinates of `address`, or a 422-style refusal naming `field` (no geocoder, no such address)."""
    if geocoder is None:
        raise LocationMissing(field, NO_GEOCODER)
    found = await geocoder.locate(address)
    if found is None:
        raise LocationMissing(field, ADDRESS_NOT_FOUND)
    return found


# --- recipients -------------------------------------------------------------------------------------


def contact_indexes(
    keys: RegisterKeys, organisation_id: uuid.UUID, *, phone: str | None, email: str | None
) -> dict[str, str | None]:
    """The keyed hashes the register keeps of a normalised phone and e-mail, in one organisation."""
    scope = str(organisation_id)
    return {
        "phone_index": crypto.blind_index(keys.index_key, f"{scope}:phone", phone) if phone else None,
        "email_index": crypto.blind_index(keys.index_key, f"{scope}:email", email) if email else None,
    }


def _indexes(keys: RegisterKeys, organisation_id: uuid.UUID, details: dict[str, Any]) -> dict[str, Any]:
    scope = str(organisation_id)
    phone, email = normalised_phone(details.get("phone")), normalised_email(details.get("email"))
    return {
        **contact_indexes(keys, organisation_id, phone=phone, email=email),
        "search_index": sorted(
            crypto.blind_index(keys.index_key, f"{scope}:search", token)
            for token in search_tokens(details.get("name"), details.get("address"))
        ),
    }


def recipient_details(row: RecipientRow, keys: RegisterKeys) -> dict[str, Any]:
    """Everything the record holds, unsealed: for the record itself, and for filling a drop-off."""
    details = crypto.unseal(keys.data_key, row.sealed)
    return {
        **{name: details.get(name) for name in SEALED_FIELDS},
        "id": row.id,
        "language": row.language,
        "vulnerable": row.vulnerable,
        "no_contact": row.no_contact,
        "consent_given_at": row.consent_given_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "renewed_at": row.renewed_at,
        "last_used_at": row.last_used_at,
    }


def _full(row: RecipientRow, keys: RegisterKeys, retention_s: float) -> dict[str, Any]:
    return {**recipient_details(row, keys), "erase_after": row.active_at + timedelta(seconds=retention_s)}


def _masked(row: RecipientRow, keys: RegisterKeys, retention_s: float) -> dict[str, Any]:
    details = crypto.unseal(keys.data_key, row.sealed)
    return {
        "id": row.id,
        "name_masked": crypto.mask_name(details["name"]),
        "phone_masked": crypto.mask_phone(details.get("phone")),
        "email_masked": crypto.mask_email(details.get("email")),
        "address_masked": crypto.mask_name(details.get("address")),
        "has_location": details.get("lat") is not None,
        "language": row.language,
        "vulnerable": row.vulnerable,
        "no_contact": row.no_contact,
        "last_used_at": row.last_used_at,
        "erase_after": row.active_at + timedelta(seconds=retention_s),
    }


async def create_recipient(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    body: RecipientIn,
    keys: RegisterKeys,
    geocoder: Locator | None,
    retention_s: float,
) -> dict[str, Any]:
    """Register a person; an address without coordinates is looked up first (before any database work)."""
    details = body.model_dump(include=set(SEALED_FIELDS))
    if body.address is not None and body.lat is None:
        found = await find_location(body.address, field="$.address", geocoder=geocoder)
        details["lat"], details["lon"] = found.lat, found.lon
    row = await SqlRegister(session).add_recipient(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        sealed=crypto.seal(keys.data_key, details),
        language=body.language,
        vulnerable=body.vulnerable,
        no_contact=body.no_contact,
        consent_given_at=body.consent_given_at,
        **_indexes(keys, organisation_id, details),
    )
    return _full(row, keys, retention_s)


async def get_recipient(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    recipient_id: uuid.UUID,
    keys: RegisterKeys,
    retention_s: float,
) -> dict[str, Any]:
    row = await SqlRegister(session).recipient(organisation_id, recipient_id)
    if row is None:
        raise RecipientNotFound()
    return _full(row, keys, retention_s)


async def list_recipients(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    query: RecipientListQuery,
    keys: RegisterKeys,
    retention_s: float,
) -> dict[str, Any]:
    """A page of masked recipients; with `q`, those whose phone or e-mail is `q`, or whose name and
    address hold every word of it (see domain/register.py for what a word matches)."""
    search: dict[str, Any] = {}
    if query.q is not None:
        scope = str(organisation_id)
        search["search_index"] = [
            crypto.blind_index(keys.index_key, f"{scope}:search", token) for token in query_tokens(query.q)
        ]
        phone = normalised_phone(query.q) if not any(ch.isalpha() for ch in query.q) else None
        email = normalised_email(query.q) if "@" in query.q else None
        contact = contact_indexes(keys, organisation_id, phone=phone, email=email)
        search |= {name: value for name, value in contact.items() if value is not None}
    rows = await SqlRegister(session).recipient_page(
        organisation_id, after=query.cursor, limit=query.limit + 1, **search
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    return {
        "items": [_masked(row, keys, retention_s) for row in page],
        "next_cursor": str(page[-1].id) if more else None,
        "has_more": more,
    }


async def update_recipient(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    recipient_id: uuid.UUID,
    body: RecipientPatchIn,
    keys: RegisterKeys,
    geocoder: Locator | None,
    retention_s: float,
) -> dict[str, Any]:
    """Change the fields given; a new address without new coordinates is looked up again."""
    given = body.model_dump(include=body.model_fields_set)
    if given.get("address") is not None and "lat" not in given:
        found = await find_location(given["address"], field="$.address", geocoder=geocoder)
        given["lat"], given["lon"] = found.lat, found.lon
    register = SqlRegister(session)
    row = await register.recipient(organisation_id, recipient_id)
    if row is None:
        raise RecipientNotFound()
    details = {
        **crypto.unseal(keys.data_key, row.sealed),
        **{k: v for k, v in given.items() if k in SEALED_FIELDS},
    }
    plain = {
        k: v for k, v in given.items() if k in ("language", "vulnerable", "no_contact", "consent_given_at")
    }
    updated = await register.update_recipient(
        organisation_id,
        recipient_id,
        sealed=crypto.seal(keys.data_key, details),
        updated_at=func.now(),
        **plain,
        **_indexes(keys, organisation_id, details),
    )
    if updated is None:
        raise RecipientNotFound()
    return _full(updated, keys, retention_s)


async def renew_recipient(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    recipient_id: uuid.UUID,
    keys: RegisterKeys,
    retention_s: float,
) -> dict[str, Any]:
    """Keep the recipient for another retention period from now."""
    row = await SqlRegister(session).renew_recipient(organisation_id, recipient_id)
    if row is None:
        raise RecipientNotFound()
    return _full(row, keys, retention_s)


async def erase_recipient(
    *, session: AsyncSession, organisation_id: uuid.UUID, recipient_id: uuid.UUID
) -> None:
    """Erase a recipient on request; tasks keep the copy they were submitted with."""
    if not await SqlRegister(session).erase_recipient(organisation_id, recipient_id):
        raise RecipientNotFound()


async def erase_inactive(session: AsyncSession, *, retention_s: float, batch: int) -> int:
    """Erase one batch of recipients with no task and no renewal for `retention_s`; returns how many."""
    return await erase_inactive_recipients(session, retention_s=retention_s, batch=batch)


# --- places -------------------------------------------------------------------------------------------


def place_out(row: PlaceRow) -> dict[str, Any]:
    return {
        name: getattr(row, name)
        for name in (
            "id",
            "name",
            "kind",
            "lat",
            "lon",
            "address",
            "contact_name",
            "contact_phone",
            "opening_hours",
            "notes",
            "created_at",
            "updated_at",
            "archived_at",
        )
    }


async def create_place(
    *, session: AsyncSession, organisation_id: uuid.UUID, body: PlaceIn, geocoder: Locator | None
) -> dict[str, Any]:
    values = body.model_dump()
    if body.lat is None:
        assert body.address is not None  # the body's own check
        found = await find_location(body.address, field="$.address", geocoder=geocoder)
        values["lat"], values["lon"] = found.lat, found.lon
    row = await SqlRegister(session).add_place(id=uuid.uuid4(), organisation_id=organisation_id, **values)
    return place_out(row)


async def get_place(
    *, session: AsyncSession, organisation_id: uuid.UUID, place_id: uuid.UUID
) -> dict[str, Any]:
    row = await SqlRegister(session).place(organisation_id, place_id)
    if row is None:
        raise PlaceNotFound()
    return place_out(row)


async def list_places(
    *, session: AsyncSession, organisation_id: uuid.UUID, query: PlaceListQuery
) -> dict[str, Any]:
    rows = await SqlRegister(session).place_page(
        organisation_id, after=query.cursor, limit=query.limit + 1, archived=query.archived, name=query.q
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    return {
        "items": [place_out(row) for row in page],
        "next_cursor": str(page[-1].id) if more else None,
        "has_more": more,
    }


async def update_place(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    place_id: uuid.UUID,
    body: PlacePatchIn,
    geocoder: Locator | None,
) -> dict[str, Any]:
    """Change the fields given; a new address without new coordinates is looked up again."""
    given = body.model_dump(include=body.model_fields_set)
    if given.get("address") is not None and "lat" not in given:
        found = await find_location(given["address"], field="$.address", geocoder=geocoder)
        given["lat"], given["lon"] = found.lat, found.lon
    row = await SqlRegister(session).update_place(organisation_id, place_id, **given, updated_at=func.now())
    if row is None:
        raise PlaceNotFound()
    return place_out(row)


async def archive_place(*, session: AsyncSession, organisation_id: uuid.UUID, place_id: uuid.UUID) -> None:
    """Archive a place: it serves no new task; tasks that used it keep their copy. Idempotent."""
    register = SqlRegister(session)
    row = await register.place(organisation_id, place_id)
    if row is None:
        raise PlaceNotFound()
    if row.archived_at is None:
        await register.update_place(organisation_id, place_id, archived_at=func.now())
