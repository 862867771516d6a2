"""Intake's projection of errands.volunteers.v1: who is on duty and where, for the ops map.

Intake never reads the dispatcher's schema; it keeps what the dashboard needs from the topic. Events
of one volunteer arrive in order (the record key is the volunteer id), but each handler still keeps
the newest fact, so a replayed or late event never moves a volunteer back in time.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.repository import SqlVolunteers
from shared.events import (
    CloudEvent,
    VolunteerDutyChanged,
    VolunteerLocationReported,
    VolunteerRegistered,
)


async def volunteer_registered(session: AsyncSession, event: CloudEvent) -> None:
    """Remember a new volunteer's organisation, masked name and vehicle."""
    data = VolunteerRegistered.model_validate(event.data)
    await SqlVolunteers(session).save_profile(
        data.volunteer_id,
        organisation_id=data.organisation_id,
        name_masked=data.name_masked,
        vehicle=data.vehicle,
    )


async def volunteer_duty_changed(session: AsyncSession, event: CloudEvent) -> None:
    """A volunteer went on or off duty (ignored when a later duty change is already applied)."""
    data = VolunteerDutyChanged.model_validate(event.data)
    await SqlVolunteers(session).save_duty(data.volunteer_id, on_duty=data.on_duty, at=event.time)


async def volunteer_location_reported(session: AsyncSession, event: CloudEvent) -> None:
    """A volunteer's position (ignored when a later position is already known)."""
    data = VolunteerLocationReported.model_validate(event.data)
    await SqlVolunteers(session).save_location(data.volunteer_id, lat=data.lat, lon=data.lon, at=data.at)


VOLUNTEER_HANDLERS = {
    "volunteer.registered": volunteer_registered,
    "volunteer.duty_changed": volunteer_duty_changed,
    "volunteer.location_reported": volunteer_location_reported,
}
