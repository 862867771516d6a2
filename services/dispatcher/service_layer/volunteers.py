"""Volunteers: registration by operators, duty and whereabouts reported by their apps."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict
from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import LegRow, VolunteerRow, outbox
from services.dispatcher.service_layer import dispatch
from shared import crypto
from shared.auth import Role, issue_token, revoke_token, revoke_volunteer_tokens
from shared.events import VolunteerDutyChanged, VolunteerRegistered, build_event
from shared.fields import Boolean, Number, Phone, whole_float_as_int
from shared.http import ProblemError, StorableModel
from shared.outbox import add_events
from shared.times import ClientTime, within

Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]
MaxActiveLegs = Annotated[int, Strict(), Field(ge=1, le=20), BeforeValidator(whole_float_as_int)]


class _Strict(StorableModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class Home(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)


class VolunteerIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    languages: list[str] = Field(default_factory=lambda: ["zh"], max_length=10)
    skills: list[str] = Field(default_factory=list, max_length=20)
    vehicle: Vehicle = "foot"
    capacity_kg: Number = Field(default=10.0, ge=0, le=5_000)
    insured: Boolean = False
    max_active_legs: MaxActiveLegs = 3
    home: Home | None = None


class VolunteerPatch(_Strict):
    """Fields an operator may change; those left out stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: Phone | None = None
    languages: list[str] | None = Field(default=None, max_length=10)
    skills: list[str] | None = Field(default=None, max_length=20)
    vehicle: Vehicle | None = None
    capacity_kg: Number | None = Field(default=None, ge=0, le=5_000)
    insured: Boolean | None = None
    max_active_legs: MaxActiveLegs | None = None
    home: Home | None = None


# Where a page ended: the last volunteer's registration time (microseconds since 1970, until the
# year 4253) and id, in hexadecimal. Any string of this form is a position to list from.
VOLUNTEER_CURSOR_PATTERN = "^[0-9a-f]{46}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VolunteerListQuery(_Strict):
    status: Literal["on_duty", "off_duty"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    # Documented as the cursors now handed out; `_decode_cursor` still takes the earlier form.
    cursor: str | None = Field(
        default=None, max_length=200, json_schema_extra={"pattern": VOLUNTEER_CURSOR_PATTERN}
    )


class DutyIn(_Strict):
    on_duty: Boolean


class LocationIn(_Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    accuracy_m: Number | None = Field(default=None, ge=0, le=100_000)
    # A fix a day old says nothing about where anyone is; a phone's clock may run a few minutes ahead.
    at: Annotated[ClientTime, within(past=timedelta(days=1), future=timedelta(minutes=5))] | None = None


def volunteer_view(row: VolunteerRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "phone": row.phone,
        "languages": row.languages,
        "skills": row.skills,
        "vehicle": row.vehicle,
        "capacity_kg": row.capacity_kg,
        "insured": row.insured,
        "max_active_legs": row.max_active_legs,
        "home": {"lat": row.home_lat, "lon": row.home_lon} if row.home_lat is not None else None,
        "on_duty": row.on_duty,
        "status": "on_duty" if row.on_duty else "off_duty",
        "active_legs": row.active_legs,
        "location": {"lat": row.lat, "lon": row.lon, "at": row.location_at.isoformat()}
        if row.location_at is not None
        else None,
        "deactivated_at": row.deactivated_at.isoformat() if row.deactivated_at is not None else None,
    }


async def register_volunteer(
    *, session: AsyncSession, organisation_id: uuid.UUID, body: VolunteerIn
) -> dict[str, Any]:
    """A new volunteer and their app's token, shown this once."""
    row = VolunteerRow(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        name=body.name,
        phone=body.phone,
        languages=sorted(set(body.languages)),
        skills=sorted(set(body.skills)),
        vehicle=body.vehicle,
        capacity_kg=body.capacity_kg,
        insured=body.insured,
        max_active_legs=body.max_active_legs,
        home_lat=body.home.lat if body.home else None,
        home_lon=body.home.lon if body.home else None,
        on_duty=False,
        active_legs=0,
        legs_done_today=0,
    )
    session.add(row)
    await session.flush()
    token_id, token = await issue_token(
        session, role=Role.VOLUNTEER, organisation_id=organisation_id, volunteer_id=row.id
    )
    await add_events(
        session,
        outbox,
        [
            build_event(
                VolunteerRegistered(
                    volunteer_id=row.id,
                    organisation_id=organisation_id,
                    name_masked=crypto.mask_name(row.name),
                    vehicle=row.vehicle,
                    languages=row.languages,
                    skills=row.skills,
                ),
                source="/dispatcher",
                subject=row.id,
            )
        ],
    )
    return {**volunteer_view(row), "token": token, "token_id": str(token_id)}


async def get_volunteer(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> VolunteerRow:
    query = select(VolunteerRow).where(VolunteerRow.id == volunteer_id)
    if organisation_id is not None:
        query = query.where(VolunteerRow.organisation_id == organisation_id)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise ProblemError(404, "Not found", "No such volunteer.")
    return row


async def set_duty(
    *, session: AsyncSession, volunteer_id: uuid.UUID, on_duty: bool, shift_cap: timedelta, rest: timedelta
) -> dict[str, Any]:
    """Going on duty starts the shift clock; leaving after a full shift starts the rest period."""
    now = datetime.now(UTC)
    row = (
        await session.execute(select(VolunteerRow).where(VolunteerRow.id == volunteer_id).with_for_update())
    ).scalar_one()
    if row.deactivated_at is not None:
        # Deactivation revoked the token; this request passed its check just before that committed.
        raise ProblemError(401, "Unauthorized", "The token is not valid.")
    if on_duty and not row.on_duty:
        row.duty_started_at = now
    elif not on_duty and row.on_duty:
        if row.duty_started_at is not None and now - row.duty_started_at >= shift_cap:
            row.rest_until = now + rest
        row.duty_started_at = None
    row.on_duty = on_duty
    row.updated_at = now
    await add_events(
        session,
        outbox,
        [
            build_event(
                VolunteerDutyChanged(volunteer_id=volunteer_id, on_duty=on_duty),
                source="/dispatcher",
                subject=volunteer_id,
            )
        ],
    )
    await session.flush()
    return volunteer_view(row)


def _encode_cursor(row: VolunteerRow) -> str:
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:014x}{row.id.hex}"


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if re.fullmatch(VOLUNTEER_CURSOR_PATTERN, cursor):
        return _EPOCH + timedelta(microseconds=int(cursor[:14], 16)), uuid.UUID(cursor[14:])
    # The earlier form, base64 of `[time, id]` in JSON: a client may still be paging with one.
    try:
        created_at, volunteer_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = datetime.fromisoformat(created_at)
        if position.tzinfo is None:
            raise ValueError("cursors carry an aware time")
        # In UTC, as the database compares it: a time that leaves datetime's range there is no cursor.
        return position.astimezone(UTC), uuid.UUID(volunteer_id)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise ProblemError(
            400,
            "Bad request",
            "The cursor is not one this API handed out.",
            errors=[{"field": "cursor", "message": "not a cursor this API returned"}],
        ) from exc


async def list_volunteers(
    *, session: AsyncSession, organisation_id: uuid.UUID | None, query: VolunteerListQuery
) -> dict[str, Any]:
    """One page of volunteers, oldest first; `next_cursor` is opaque and null on the last page."""
    statement = select(VolunteerRow).order_by(VolunteerRow.created_at, VolunteerRow.id).limit(query.limit + 1)
    if organisation_id is not None:
        statement = statement.where(VolunteerRow.organisation_id == organisation_id)
    if query.status is not None:
        statement = statement.where(VolunteerRow.on_duty.is_(query.status == "on_duty"))
    if query.cursor:
        created_at, after_id = _decode_cursor(query.cursor)
        statement = statement.where(
            tuple_(VolunteerRow.created_at, VolunteerRow.id) > tuple_(literal(created_at), literal(after_id))
        )
    rows = list((await session.execute(statement)).scalars())
    page = rows[: query.limit]
    return {
        "items": [volunteer_view(row) for row in page],
        "next_cursor": _encode_cursor(page[-1]) if len(rows) > query.limit else None,
    }


async def update_volunteer(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
    patch: VolunteerPatch,
) -> VolunteerRow:
    """Change a volunteer's profile; the limit may not drop below the legs they already carry (409)."""
    query = select(VolunteerRow).where(VolunteerRow.id == volunteer_id).with_for_update()
    if organisation_id is not None:
        query = query.where(VolunteerRow.organisation_id == organisation_id)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise ProblemError(404, "Not found", "No such volunteer.")
    changes = patch.model_dump(exclude_unset=True)
    new_limit = changes.get("max_active_legs")
    if new_limit is not None and new_limit < row.active_legs:
        raise ProblemError(
            409,
            "Conflict",
            f"The volunteer carries {row.active_legs} legs now; the limit cannot go below that.",
        )
    for name in ("name", "phone", "vehicle", "capacity_kg", "insured", "max_active_legs"):
        if name in changes and (changes[name] is not None or name == "phone"):
            setattr(row, name, changes[name])
    for name in ("languages", "skills"):
        if changes.get(name) is not None:
            setattr(row, name, sorted(set(changes[name])))
    if "home" in changes:
        home = patch.home
        row.home_lat, row.home_lon = (home.lat, home.lon) if home else (None, None)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return row


async def _operated_volunteer(
    session: AsyncSession, *, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> VolunteerRow:
    """A volunteer of the operator's organisation, locked; 404 for any other, as for a missing one."""
    row = (
        await session.execute(
            select(VolunteerRow)
            .where(VolunteerRow.id == volunteer_id, VolunteerRow.organisation_id == organisation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:
        raise ProblemError(404, "Not found", "No such volunteer.")
    return row


async def rotate_token(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> dict[str, Any]:
    """A new token for the volunteer's app, shown this once; every token they held before is revoked."""
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row.deactivated_at is not None:
        raise ProblemError(409, "Conflict", "The volunteer is deactivated; they get no new token.")
    await revoke_volunteer_tokens(session, volunteer_id=row.id)
    token_id, token = await issue_token(
        session, role=Role.VOLUNTEER, organisation_id=row.organisation_id, volunteer_id=row.id
    )
    return {"id": str(token_id), "token": token}


async def revoke_token_of(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID, token_id: uuid.UUID
) -> None:
    """Revoke one of the volunteer's tokens; 404 unless it is theirs and still live."""
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if not await revoke_token(session, token_id=token_id, volunteer_id=row.id):
        raise ProblemError(404, "Not found", "No such token.")


async def deactivate_volunteer(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> VolunteerRow:
    """Withdraw a volunteer for good: tokens revoked, off duty, no more offers; idempotent.

    Legs assigned but not picked up go back to dispatch at once, as if the volunteer had handed
    them back. Legs already picked up stay with them: the goods are in their hands, and an operator
    settles those. Live offers lapse at their expiry (the revoked token cannot accept them).
    """
    await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    # Legs before the volunteer, the order every other writer locks them in.
    in_hand = list(
        (
            await session.execute(
                select(LegRow.id)
                .where(LegRow.volunteer_id == volunteer_id, LegRow.status == "assigned")
                .order_by(LegRow.id)
                .with_for_update()
            )
        ).scalars()
    )
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row.deactivated_at is not None:
        return row
    now = datetime.now(UTC)
    was_on_duty = row.on_duty
    row.deactivated_at, row.on_duty, row.duty_started_at, row.updated_at = now, False, None, now
    await session.flush()
    await revoke_volunteer_tokens(session, volunteer_id=row.id)
    for leg_id in in_hand:
        await dispatch.report_problem(
            session, leg_id=leg_id, volunteer_id=row.id, reason="volunteer deactivated"
        )
    if was_on_duty:
        await add_events(
            session,
            outbox,
            [
                build_event(
                    VolunteerDutyChanged(volunteer_id=row.id, on_duty=False),
                    source="/dispatcher",
                    subject=row.id,
                )
            ],
        )
    await session.refresh(row)
    return row
