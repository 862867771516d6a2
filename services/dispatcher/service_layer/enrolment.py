"""Volunteer enrolment and vetting.

An operator's one-time enrolment link (shown as a QR code) turns into a device token on the volunteer's
phone; a volunteer may hold several devices, each revoked on its own. Volunteers may also sign up
with an organisation's invite code: they are `pending`, get no offers (`eligibility.vetted`), and an
operator approves or rejects them after checking identity, insurance and training. Links and codes
are kept only as hashes; every step is on the audit trail with its actor.
"""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import qrcode
import qrcode.image.svg
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from services.dispatcher.adapters.tables import (
    EnrolmentLinkRow,
    InviteCodeRow,
    VettingRecordRow,
    VolunteerRow,
)
from services.dispatcher.domain.errors import (
    EnrolmentLinkNotFound,
    EnrolmentLinkSpent,
    TokenNotFound,
    VolunteerDeactivated,
    VolunteerNotFound,
)
from services.dispatcher.service_layer.volunteers import IssuedToken
from shared.audit import request_actor
from shared.auth import Role, hash_token, issue_token, revoke_token


@dataclass(frozen=True)
class EnrolmentLink:
    """A one-time enrolment link, shown this once."""

    link: str
    token: str
    expires_at: datetime


def link_for(token: str, base_url: str) -> str:
    """The link the QR code carries: the app's enrolment page, the secret in its fragment."""
    return f"{base_url}#token={token}"


async def _volunteer(
    session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID
) -> VolunteerRow:
    row = await repository.find_volunteer(
        session, volunteer_id=volunteer_id, organisation_id=organisation_id, lock=True
    )
    if row is None:
        raise VolunteerNotFound("No such volunteer.")
    return row


async def issue_enrolment_link(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    ttl_s: float,
    base_url: str,
    now: datetime | None = None,
) -> EnrolmentLink:
    """A new one-time link for one more device of this volunteer of the organisation."""
    now = now or datetime.now(UTC)
    row = await _volunteer(session, volunteer_id, organisation_id)
    if row.deactivated_at is not None:
        raise VolunteerDeactivated("The volunteer is deactivated.")
    token = "erk_enrol_" + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_s)
    session.add(
        EnrolmentLinkRow(
            id=uuid.uuid4(),
            token_hash=hash_token(token),
            organisation_id=organisation_id,
            volunteer_id=volunteer_id,
            expires_at=expires_at,
        )
    )
    await session.flush()
    await repository.add_audit(
        session,
        "volunteer.enrolment_issued",
        organisation_id=organisation_id,
        volunteer_id=volunteer_id,
        detail={"expires_at": expires_at.isoformat()},
    )
    return EnrolmentLink(link=link_for(token, base_url), token=token, expires_at=expires_at)


async def enrolment_qr(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    token: str,
    base_url: str,
    kind: str,
    now: datetime | None = None,
) -> bytes:
    """The QR code of a live link of this volunteer, as PNG or SVG bytes."""
    now = now or datetime.now(UTC)
    link = await repository.find_enrolment_link(
        session, token_hash=hash_token(token), organisation_id=organisation_id
    )
    if link is None or link.volunteer_id != volunteer_id:
        raise EnrolmentLinkNotFound("No such enrolment link.")
    if link.used_at is not None or link.expires_at <= now:
        raise EnrolmentLinkSpent("The enrolment link was used already or has expired.")
    return qr_image(link_for(token, base_url), kind)


def qr_image(data: str, kind: str) -> bytes:
    """`data` as a QR code: `png` or `svg`."""
    out = io.BytesIO()
    if kind == "svg":
        qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    else:
        qrcode.make(data).save(out, format="PNG")
    return out.getvalue()


async def exchange_enrolment_link(
    *, session: AsyncSession, token: str, now: datetime | None = None
) -> tuple[uuid.UUID, IssuedToken]:
    """Spend the link for a new device token of its volunteer: once only, and before it expires."""
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    link = await repository.spend_enrolment_link(session, token_hash=token_hash, now=now)
    if link is None:
        if await repository.find_enrolment_link(session, token_hash=token_hash) is None:
            raise EnrolmentLinkNotFound("No such enrolment link.")
        raise EnrolmentLinkSpent(
            "The enrolment link was used already or has expired; ask your organisation for a new one."
        )
    volunteer = await _volunteer(session, link.volunteer_id, link.organisation_id)
    if volunteer.deactivated_at is not None:
        raise EnrolmentLinkSpent("The volunteer was deactivated; the enrolment link no longer works.")
    device_id, device_token = await issue_token(
        session, role=Role.VOLUNTEER, organisation_id=link.organisation_id, volunteer_id=link.volunteer_id
    )
    link.device_token_id = device_id
    await repository.add_audit(
        session,
        "volunteer.enrolment_used",
        organisation_id=link.organisation_id,
        volunteer_id=link.volunteer_id,
        detail={"device_id": str(device_id)},
    )
    return link.volunteer_id, IssuedToken(id=device_id, token=device_token)


async def create_invite_code(
    *, session: AsyncSession, organisation_id: uuid.UUID, valid_for_s: int | None, now: datetime | None = None
) -> tuple[InviteCodeRow, str]:
    """A new invite code of the organisation, shown this once."""
    now = now or datetime.now(UTC)
    code = "erk_inv_" + secrets.token_urlsafe(18)
    row = InviteCodeRow(
        id=uuid.uuid4(),
        code_hash=hash_token(code),
        organisation_id=organisation_id,
        expires_at=now + timedelta(seconds=valid_for_s) if valid_for_s is not None else None,
    )
    session.add(row)
    await session.flush()
    await repository.add_audit(
        session, "volunteer.invite_code_created", organisation_id=organisation_id, detail={"id": str(row.id)}
    )
    return row, code


async def sign_up(
    *, session: AsyncSession, invite_code: str, profile: Mapping[str, Any], now: datetime | None = None
) -> tuple[VolunteerRow, IssuedToken]:
    """A volunteer signs up with an invite code: pending vetting, uninsured until an operator saw it."""
    now = now or datetime.now(UTC)
    invite = await repository.find_invite_code(session, code_hash=hash_token(invite_code), now=now)
    if invite is None:
        raise EnrolmentLinkNotFound("No such invite code, or it has expired.")
    home = profile.get("home")
    row = VolunteerRow(
        id=uuid.uuid4(),
        organisation_id=invite.organisation_id,
        name=profile["name"],
        phone=profile.get("phone"),
        languages=sorted(set(profile["languages"])),
        skills=sorted(set(profile["skills"])),
        vehicle=profile["vehicle"],
        capacity_kg=profile["capacity_kg"],
        insured=False,
        insured_until=None,
        max_active_legs=1,
        home_lat=home["lat"] if home else None,
        home_lon=home["lon"] if home else None,
        on_duty=False,
        active_legs=0,
        legs_done_today=0,
        vetting_status="pending",
    )
    session.add(row)
    await session.flush()
    device_id, device_token = await issue_token(
        session, role=Role.VOLUNTEER, organisation_id=invite.organisation_id, volunteer_id=row.id
    )
    await repository.add_audit(
        session,
        "volunteer.signed_up",
        organisation_id=invite.organisation_id,
        volunteer_id=row.id,
        detail={"invite_code_id": str(invite.id)},
    )
    return row, IssuedToken(id=device_id, token=device_token)


async def vet(
    *,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    organisation_id: uuid.UUID,
    identity_checked: bool,
    insured: bool,
    insured_until: date | None,
    training_done: bool,
    decision: str,
    note: str | None,
    now: datetime | None = None,
) -> tuple[VolunteerRow, Sequence[VettingRecordRow]]:
    """Record who checked what, and approve or reject the volunteer.

    Approval takes the insurance seen (an end date, or none); rejection keeps them out of dispatch.
    A decided volunteer may be vetted again (insurance renewed, a rejection reconsidered): every
    record stays.
    """
    now = now or datetime.now(UTC)
    row = await _volunteer(session, volunteer_id, organisation_id)
    if row.deactivated_at is not None:
        raise VolunteerDeactivated("The volunteer is deactivated.")
    record = VettingRecordRow(
        id=uuid.uuid4(),
        organisation_id=organisation_id,
        volunteer_id=volunteer_id,
        checked_by=str(request_actor()),
        identity_checked=identity_checked,
        insured_until=insured_until,
        training_done=training_done,
        decision=decision,
        note=note,
        at=now,
    )
    session.add(record)
    if decision == "approve":
        row.vetting_status = "approved"
        row.insured, row.insured_until = insured, insured_until
    else:
        row.vetting_status = "rejected"
        row.on_duty = False
    row.updated_at = now
    await session.flush()
    await repository.add_audit(
        session,
        "volunteer.approved" if decision == "approve" else "volunteer.rejected",
        organisation_id=organisation_id,
        volunteer_id=volunteer_id,
        detail={
            "identity_checked": identity_checked,
            "training_done": training_done,
            "insured_until": insured_until.isoformat() if insured_until else None,
        },
    )
    return row, await repository.vetting_records(session, volunteer_id=volunteer_id)


async def vetting_of(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> tuple[VolunteerRow, Sequence[VettingRecordRow]]:
    row = await repository.find_volunteer(session, volunteer_id=volunteer_id, organisation_id=organisation_id)
    if row is None:
        raise VolunteerNotFound("No such volunteer.")
    return row, await repository.vetting_records(session, volunteer_id=volunteer_id)


async def devices(*, session: AsyncSession, volunteer_id: uuid.UUID) -> Sequence[Any]:
    return await repository.volunteer_devices(session, volunteer_id=volunteer_id)


async def revoke_device(
    *, session: AsyncSession, volunteer_id: uuid.UUID, organisation_id: uuid.UUID | None, device_id: uuid.UUID
) -> None:
    """A volunteer revokes one of their own devices (a lost phone) from another."""
    if not await revoke_token(session, token_id=device_id, volunteer_id=volunteer_id):
        raise TokenNotFound("No such device.")
    await repository.add_audit(
        session,
        "volunteer.device_revoked",
        organisation_id=organisation_id,
        volunteer_id=volunteer_id,
        detail={"device_id": str(device_id)},
    )
