"""Volunteers: registration by operators, duty and whereabouts reported by their apps."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import VolunteerRow, outbox
from services.dispatcher.domain import eligibility, welfare
from services.dispatcher.domain.errors import (
    DailyCapReached,
    LimitBelowLoad,
    NoPhoneOnRecord,
    RestOwed,
    TokenNoLongerValid,
    TokenNotFound,
    VolunteerDeactivated,
    VolunteerNotFound,
)
from services.dispatcher.service_layer import deliveries
from shared import crypto
from shared.auth import Role, issue_token, revoke_token, revoke_volunteer_tokens
from shared.errors import DomainError
from shared.events import VolunteerDutyChanged, VolunteerRegistered, build_event
from shared.outbox import add_events
from shared.settings import Settings


@dataclass(frozen=True)
class IssuedToken:
    """A volunteer app's token, shown this once, and the id to revoke it by."""

    id: uuid.UUID
    token: str


async def register_volunteer(
    *, session: AsyncSession, organisation_id: uuid.UUID, profile: Mapping[str, Any]
) -> tuple[VolunteerRow, IssuedToken]:
    """A new volunteer and their app's token, shown this once.

    `profile` holds every field of the registration (`home` as `{"lat", "lon"}` or None).
    """
    home = profile["home"]
    row = VolunteerRow(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        name=profile["name"],
        phone=profile["phone"],
        languages=sorted(set(profile["languages"])),
        skills=sorted(set(profile["skills"])),
        vehicle=profile["vehicle"],
        capacity_kg=profile["capacity_kg"],
        insured=profile["insured"],
        insured_until=profile.get("insured_until"),
        max_active_legs=profile["max_active_legs"],
        home_lat=home["lat"] if home else None,
        home_lon=home["lon"] if home else None,
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
    await repository.add_audit(
        session, "volunteer.registered", organisation_id=organisation_id, volunteer_id=row.id
    )
    return row, IssuedToken(id=token_id, token=token)


async def get_volunteer(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> VolunteerRow:
    row = await repository.find_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row is None:
        raise VolunteerNotFound("No such volunteer.")
    return row


def welfare_limits(settings: Settings) -> welfare.Limits:
    """The welfare rules' limits, from the settings."""
    return welfare.Limits(
        shift_max_on_duty=timedelta(seconds=settings.shift_max_on_duty_s),
        rest=timedelta(seconds=settings.shift_rest_s),
        daily_max_on_duty=timedelta(seconds=settings.daily_max_on_duty_s),
        daily_max_legs=settings.daily_max_legs,
        time_zone=ZoneInfo(settings.local_time_zone),
    )


def duty_record(row: Any) -> welfare.DutyRecord:
    """A volunteer's duty as the welfare rules read it, from a row of the volunteers table."""
    return welfare.DutyRecord(
        duty_started_at=row.duty_started_at,
        shift_duty=timedelta(seconds=row.shift_duty_s),
        off_duty_at=row.off_duty_at,
        rest_until=row.rest_until,
        duty_day=row.duty_day,
        duty_today=timedelta(seconds=row.duty_today_s),
        legs_day=row.legs_day,
        legs_done=row.legs_done_today,
    )


def welfare_status(row: VolunteerRow, limits: welfare.Limits, now: datetime | None = None) -> welfare.Status:
    """The volunteer's shift clock, rest owed and daily counts now, as their views show them."""
    return welfare.status(duty_record(row), now or datetime.now(UTC), limits)


def _refuse(refusal: welfare.Refusal, limits: welfare.Limits) -> DomainError:
    local = refusal.until.astimezone(limits.time_zone)
    when = f"{refusal.until.astimezone(UTC).isoformat()} ({local:%Y-%m-%d %H:%M} {limits.time_zone.key})"
    if refusal.reason == "rest_owed":
        hours = limits.shift_max_on_duty.total_seconds() / 3600
        minutes = limits.rest.total_seconds() / 60
        return RestOwed(
            f"Rest is owed: after {hours:g} h on duty, {minutes:g} min off duty before the next shift. "
            f"You may go on duty again at {when}."
        )
    if refusal.reason == "daily_duty_cap":
        hours = limits.daily_max_on_duty.total_seconds() / 3600
        return DailyCapReached(
            f"Today's cap of {hours:g} h on duty is reached. You may go on duty again at {when}."
        )
    return DailyCapReached(
        f"Today's cap of {limits.daily_max_legs} legs is reached. You may go on duty again at {when}."
    )


async def set_preferences(
    *, session: AsyncSession, volunteer_id: uuid.UUID, sms_on_offer: bool, language: str | None
) -> VolunteerRow:
    """The volunteer's own settings: whether a new offer also comes by SMS, and in which language."""
    row = await repository.lock_volunteer(session, volunteer_id)
    if sms_on_offer and not row.phone:
        raise NoPhoneOnRecord(
            "No phone number is on record for you: ask your centre to add it first.",
            errors=[{"field": "$.sms_on_offer", "message": "needs a phone number on record"}],
        )
    row.sms_on_offer = sms_on_offer
    if language is not None:
        row.sms_language = language
    row.updated_at = datetime.now(UTC)
    return row


async def set_duty(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    on_duty: bool,
    limits: welfare.Limits,
    now: datetime | None = None,
) -> VolunteerRow:
    """Go on or off duty. Going on is refused while rest is owed or a daily cap is reached.

    A break shorter than the rest does not reset the shift clock (see `domain/welfare.py`).
    """
    now = now or datetime.now(UTC)
    row = await repository.lock_volunteer(session, volunteer_id)
    if row.deactivated_at is not None:
        # Deactivation revoked the token; this request passed its check just before that committed.
        raise TokenNoLongerValid("The token is not valid.")
    record = duty_record(row)
    if on_duty and not row.on_duty:
        refused = welfare.refusal(record, now, limits)
        if refused is not None:
            raise _refuse(refused, limits)
        record = welfare.go_on_duty(record, now, limits)
    elif not on_duty and row.on_duty:
        record = welfare.go_off_duty(record, now, limits)
    row.duty_started_at, row.rest_until, row.off_duty_at = (
        record.duty_started_at,
        record.rest_until,
        record.off_duty_at,
    )
    row.shift_duty_s = record.shift_duty.total_seconds()
    row.duty_day, row.duty_today_s = record.duty_day, record.duty_today.total_seconds()
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
    await repository.add_audit(
        session,
        "volunteer.duty_changed",
        organisation_id=row.organisation_id,
        volunteer_id=volunteer_id,
        detail={"on_duty": on_duty},
    )
    await session.flush()
    return row


async def list_volunteers(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID | None,
    on_duty: bool | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    insurance_lapses_within_days: int | None = None,
    local_time_zone: tzinfo = UTC,
) -> tuple[list[VolunteerRow], bool]:
    """One page of volunteers, oldest first, after the position `after`; and whether more follow.

    With `insurance_lapses_within_days`, only those whose insurance lapses in that many days from
    today (in `local_time_zone`).
    """
    lapsing = None
    if insurance_lapses_within_days is not None:
        today = eligibility.local_day(datetime.now(UTC), local_time_zone)
        lapsing = eligibility.lapsing_within(today, insurance_lapses_within_days)
    rows = await repository.volunteers_page(
        session,
        organisation_id=organisation_id,
        on_duty=on_duty,
        after=after,
        limit=limit + 1,
        insured_until_within=lapsing,
    )
    return rows[:limit], len(rows) > limit


async def update_volunteer(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
    changes: Mapping[str, Any],
) -> VolunteerRow:
    """Change a volunteer's profile: only the fields in `changes` (`home` as `{"lat", "lon"}` or None).

    The limit may not drop below the legs they already carry.
    """
    row = await repository.find_volunteer(
        session, volunteer_id=volunteer_id, organisation_id=organisation_id, lock=True
    )
    if row is None:
        raise VolunteerNotFound("No such volunteer.")
    new_limit = changes.get("max_active_legs")
    if new_limit is not None and new_limit < row.active_legs:
        raise LimitBelowLoad(
            f"The volunteer carries {row.active_legs} legs now; the limit cannot go below that."
        )
    for name in ("name", "phone", "vehicle", "capacity_kg", "insured", "max_active_legs", "insured_until"):
        # A null phone or insurance end date clears it; any other field left null stays as it is.
        if name in changes and (changes[name] is not None or name in ("phone", "insured_until")):
            setattr(row, name, changes[name])
    for name in ("languages", "skills"):
        if changes.get(name) is not None:
            setattr(row, name, sorted(set(changes[name])))
    if "home" in changes:
        home = changes["home"]
        row.home_lat, row.home_lon = (home["lat"], home["lon"]) if home else (None, None)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    # Which fields changed, never their values (names and phones are personal).
    await repository.add_audit(
        session,
        "volunteer.changed",
        organisation_id=row.organisation_id,
        volunteer_id=row.id,
        detail={"fields": sorted(changes)},
    )
    return row


async def _operated_volunteer(
    session: AsyncSession, *, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> VolunteerRow:
    """A volunteer of the operator's organisation, locked; 404 for any other, as for a missing one."""
    row = await repository.lock_organisations_volunteer(
        session, volunteer_id=volunteer_id, organisation_id=organisation_id, reread=True
    )
    if row is None:
        raise VolunteerNotFound("No such volunteer.")
    return row


async def rotate_token(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> IssuedToken:
    """A new token for the volunteer's app, shown this once; every token they held before is revoked."""
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row.deactivated_at is not None:
        raise VolunteerDeactivated("The volunteer is deactivated; they get no new token.")
    await revoke_volunteer_tokens(session, volunteer_id=row.id)
    token_id, token = await issue_token(
        session, role=Role.VOLUNTEER, organisation_id=row.organisation_id, volunteer_id=row.id
    )
    await repository.add_audit(
        session,
        "volunteer.token_rotated",
        organisation_id=row.organisation_id,
        volunteer_id=row.id,
        detail={"token_id": str(token_id)},
    )
    return IssuedToken(id=token_id, token=token)


async def revoke_token_of(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID, token_id: uuid.UUID
) -> None:
    """Revoke one of the volunteer's tokens; 404 unless it is theirs and still live."""
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if not await revoke_token(session, token_id=token_id, volunteer_id=row.id):
        raise TokenNotFound("No such token.")
    await repository.add_audit(
        session,
        "volunteer.token_revoked",
        organisation_id=row.organisation_id,
        volunteer_id=row.id,
        detail={"token_id": str(token_id)},
    )


async def deactivate_volunteer(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> VolunteerRow:
    """Withdraw a volunteer for good: tokens revoked, off duty, no more offers; idempotent.

    Legs assigned but not picked up go back to dispatch at once, as if the volunteer had handed
    them back. Legs already picked up stay with them: the goods are in their hands, and an operator
    settles those. Live offers lapse at their expiry (the revoked token cannot accept them).
    """
    await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    # Legs, then their route, then the volunteer: the order every other writer locks them in.
    in_hand = await repository.lock_assigned_leg_ids(session, volunteer_id=volunteer_id)
    await repository.lock_active_route(session, volunteer_id)
    row = await _operated_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row.deactivated_at is not None:
        return row
    now = datetime.now(UTC)
    was_on_duty = row.on_duty
    row.deactivated_at, row.on_duty, row.duty_started_at, row.updated_at = now, False, None, now
    await session.flush()
    await revoke_volunteer_tokens(session, volunteer_id=row.id)
    for leg_id in in_hand:
        await deliveries.report_problem(
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
    await repository.add_audit(
        session,
        "volunteer.deactivated",
        organisation_id=row.organisation_id,
        volunteer_id=row.id,
        detail={"legs_handed_back": len(in_hand)},
    )
    await session.refresh(row)
    return row
