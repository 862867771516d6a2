"""Intake's projection of errands.volunteers.v1: who is on duty and where, for the ops map.

Intake never reads the dispatcher's schema; it keeps what the dashboard needs from the topic. Events
of one volunteer arrive in order (the record key is the volunteer id), but each handler still keeps
the newest fact, so a replayed or late event never moves a volunteer back in time.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import VolunteerRow
from shared.events import (
    CloudEvent,
    VolunteerDutyChanged,
    VolunteerLocationReported,
    VolunteerRegistered,
)

_upsert = insert(VolunteerRow)


async def volunteer_registered(session: AsyncSession, event: CloudEvent) -> None:
    """Remember a new volunteer's organisation, masked name and vehicle."""
    data = VolunteerRegistered.model_validate(event.data)
    profile = {
        "organisation_id": data.organisation_id,
        "name_masked": data.name_masked,
        "vehicle": data.vehicle,
    }
    await session.execute(
        _upsert.values(id=data.volunteer_id, **profile).on_conflict_do_update(
            index_elements=[VolunteerRow.id], set_={**profile, "updated_at": func.now()}
        )
    )


async def volunteer_duty_changed(session: AsyncSession, event: CloudEvent) -> None:
    """A volunteer went on or off duty (ignored when a later duty change is already applied)."""
    data = VolunteerDutyChanged.model_validate(event.data)
    duty = {"on_duty": data.on_duty, "duty_changed_at": event.time}
    await session.execute(
        _upsert.values(id=data.volunteer_id, **duty).on_conflict_do_update(
            index_elements=[VolunteerRow.id],
            set_={**duty, "updated_at": func.now()},
            where=or_(VolunteerRow.duty_changed_at.is_(None), VolunteerRow.duty_changed_at <= event.time),
        )
    )


async def volunteer_location_reported(session: AsyncSession, event: CloudEvent) -> None:
    """A volunteer's position (ignored when a later position is already known)."""
    data = VolunteerLocationReported.model_validate(event.data)
    location = {"lat": data.lat, "lon": data.lon, "location_at": data.at}
    await session.execute(
        _upsert.values(id=data.volunteer_id, **location).on_conflict_do_update(
            index_elements=[VolunteerRow.id],
            set_={**location, "updated_at": func.now()},
            where=or_(VolunteerRow.location_at.is_(None), VolunteerRow.location_at <= data.at),
        )
    )


VOLUNTEER_HANDLERS = {
    "volunteer.registered": volunteer_registered,
    "volunteer.duty_changed": volunteer_duty_changed,
    "volunteer.location_reported": volunteer_location_reported,
}
