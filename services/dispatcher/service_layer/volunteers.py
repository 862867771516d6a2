"""Volunteers: registration by operators, duty and whereabouts reported by their apps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import VolunteerRow, outbox
from shared import crypto
from shared.auth import Role, issue_token
from shared.events import VolunteerDutyChanged, VolunteerLocationReported, VolunteerRegistered, build_event
from shared.http import ProblemError
from shared.outbox import add_events

Vehicle = Literal["foot", "bicycle", "ebike", "car", "van"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class Home(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class VolunteerIn(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 ()\-]{3,32}$")
    languages: list[str] = Field(default_factory=lambda: ["zh"], max_length=10)
    skills: list[str] = Field(default_factory=list, max_length=20)
    vehicle: Vehicle = "foot"
    capacity_kg: float = Field(default=10.0, ge=0, le=5_000)
    insured: bool = False
    max_active_legs: int = Field(default=3, ge=1, le=20)
    home: Home | None = None


class DutyIn(_Strict):
    on_duty: bool


class LocationIn(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)
    at: AwareDatetime | None = None


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
        "active_legs": row.active_legs,
        "location": {"lat": row.lat, "lon": row.lon, "at": row.location_at.isoformat()}
        if row.location_at is not None
        else None,
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
    _, token = await issue_token(
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
    return {**volunteer_view(row), "token": token}


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


async def report_location(*, session: AsyncSession, volunteer_id: uuid.UUID, body: LocationIn) -> None:
    """The highest-rate write: one UPDATE and one outbox row."""
    at = body.at or datetime.now(UTC)
    await session.execute(
        update(VolunteerRow)
        .where(VolunteerRow.id == volunteer_id)
        .values(lat=body.lat, lon=body.lon, location_at=at)
    )
    await add_events(
        session,
        outbox,
        [
            build_event(
                VolunteerLocationReported(
                    volunteer_id=volunteer_id, lat=body.lat, lon=body.lon, accuracy_m=body.accuracy_m, at=at
                ),
                source="/dispatcher",
                subject=volunteer_id,
            )
        ],
    )
