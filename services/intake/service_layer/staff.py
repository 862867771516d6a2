"""Staff accounts: people made by an admin, their set-password links, logins and sessions, the audit trail.

Passwords are hashed with argon2id at argon2-cffi's default parameters, in a worker thread (each
hash takes tens of milliseconds of CPU). A login that fails still commits its count of failures,
so the handler answers what happened instead of raising inside the transaction.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters import staff as repository
from services.intake.adapters.repository import organisation_exists
from services.intake.domain.errors import (
    EmailTaken,
    OrganisationNotFound,
    PersonNotFound,
    SetupLinkInvalid,
)
from services.intake.domain.staff import ThrottleRule, account_key, address_key, normal_email
from shared import audit
from shared.auth import Actor, Person, revoke_person_tokens
from shared.staff import csrf_token, new_session_secret

_HASHER = PasswordHasher()  # argon2id, argon2-cffi's default (RFC 9106 low-memory) parameters


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash to check unknown e-mails against, so they cost as long as known ones."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _check(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _decoy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def password_matches(person: Person, password: str) -> bool:
    """Whether `password` is the person's (hashed in a worker thread, as a login does)."""
    return person.password_hash is not None and await asyncio.to_thread(
        _check, person.password_hash, password
    )


def person_out(person: Person) -> dict[str, Any]:
    return {
        "id": str(person.id),
        "organisation_id": str(person.organisation_id),
        "email": person.email,
        "role": person.role,
        "created_at": person.created_at.isoformat(),
        "password_set": person.password_hash is not None,
        "disabled_at": person.disabled_at.isoformat() if person.disabled_at else None,
    }


async def _setup_link(
    session: AsyncSession, person_id: uuid.UUID, *, base_url: str, ttl_s: float
) -> dict[str, Any]:
    token = "erp_" + secrets.token_urlsafe(32)
    expires_at = await repository.add_setup(session, person_id=person_id, token=token, ttl_s=ttl_s)
    return {"token": token, "url": f"{base_url}#token={token}", "expires_at": expires_at.isoformat()}


async def create_person(
    *,
    session: AsyncSession,
    organisation_id: uuid.UUID,
    email: str,
    role: str,
    setup_url: str,
    setup_ttl_s: float,
) -> dict[str, Any]:
    """A person with no password yet, and the one-time link with which they set it (shown this once)."""
    if not await organisation_exists(session, organisation_id):
        raise OrganisationNotFound(f"No organisation has the id {organisation_id}.")
    email = normal_email(email)
    if await repository.email_taken(session, email):
        raise EmailTaken()
    person = await repository.add_person(
        session, person_id=uuid.uuid4(), organisation_id=organisation_id, email=email, role=role
    )
    link = await _setup_link(session, person.id, base_url=setup_url, ttl_s=setup_ttl_s)
    await audit.record(
        session, "person.created", organisation_id=organisation_id, person_id=person.id, detail={"role": role}
    )
    return {**person_out(person), "setup": link}


async def new_setup_link(
    *,
    session: AsyncSession,
    person_id: uuid.UUID,
    organisation_id: uuid.UUID | None,
    setup_url: str,
    setup_ttl_s: float,
) -> dict[str, Any]:
    """A fresh one-time link (the earlier ones stop working), e.g. for a forgotten password."""
    person = await repository.person(session, person_id, organisation_id=organisation_id, lock=True)
    if person is None:
        raise PersonNotFound()
    link = await _setup_link(session, person.id, base_url=setup_url, ttl_s=setup_ttl_s)
    await audit.record(
        session, "person.setup_link_issued", organisation_id=person.organisation_id, person_id=person.id
    )
    return {**person_out(person), "setup": link}


async def list_people(*, session: AsyncSession, organisation_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "items": [person_out(p) for p in await repository.people(session, organisation_id=organisation_id)]
    }


async def change_role(
    *, session: AsyncSession, person_id: uuid.UUID, organisation_id: uuid.UUID | None, role: str
) -> dict[str, Any]:
    """A new role, effective on the person's very next request (sessions read it each time)."""
    person = await repository.person(session, person_id, organisation_id=organisation_id, lock=True)
    if person is None:
        raise PersonNotFound()
    before = person.role
    if before != role:
        await repository.update_person(session, person.id, role=role)
        await audit.record(
            session,
            "person.role_changed",
            organisation_id=person.organisation_id,
            person_id=person.id,
            detail={"from": before, "to": role},
        )
    await session.refresh(person)
    return person_out(person)


async def disable_person(
    *, session: AsyncSession, person_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> dict[str, Any]:
    """Disable a person: every session of theirs ends and every token they own is revoked, at once."""
    person = await repository.person(session, person_id, organisation_id=organisation_id, lock=True)
    if person is None:
        raise PersonNotFound()
    if person.disabled_at is None:
        await repository.update_person(session, person.id, disabled_at=func.now())
        ended = await repository.end_sessions_of(session, person.id)
        revoked = await revoke_person_tokens(session, person_id=person.id)
        await audit.record(
            session,
            "person.disabled",
            organisation_id=person.organisation_id,
            person_id=person.id,
            detail={"sessions_ended": ended, "tokens_revoked": revoked},
        )
    await session.refresh(person)
    return person_out(person)


async def set_password(*, session: AsyncSession, token: str, password: str) -> None:
    """Spend a set-password link: the password is stored (argon2id) and the person's sessions end."""
    person_id = await repository.use_setup(session, token)
    person = None if person_id is None else await repository.person(session, person_id, organisation_id=None)
    if person is None or person.disabled_at is not None:
        raise SetupLinkInvalid()
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    await repository.update_person(session, person.id, password_hash=password_hash)
    await repository.end_sessions_of(session, person.id)
    await audit.record(
        session,
        "person.password_set",
        organisation_id=person.organisation_id,
        person_id=person.id,
        actor=Actor("person", person.id),
    )


@dataclass(frozen=True)
class Login:
    """What a login came to: a session (its secret goes in the cookie), or a refusal."""

    refused: str | None = None  # "wrong" or "throttled"
    retry_after_s: float = 0.0
    secret: str | None = None
    person: dict[str, Any] | None = None
    session_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    csrf_token: str | None = None


@dataclass(frozen=True)
class ThrottleRules:
    account: ThrottleRule
    address: ThrottleRule
    window_s: float


async def login(
    *,
    session: AsyncSession,
    email: str,
    password: str,
    address: str,
    rules: ThrottleRules,
    session_ttl_s: float,
) -> Login:
    """Check an e-mail and password, unless the account or the client's address is throttled."""
    keys = (account_key(email), address_key(address))
    wait_s = await repository.blocked_for(session, list(keys), lock=keys[0])
    if wait_s > 0:
        return Login(refused="throttled", retry_after_s=wait_s)
    person = await repository.person_by_email(session, normal_email(email))
    password_hash = person.password_hash if person is not None and person.disabled_at is None else None
    if not await asyncio.to_thread(_check, password_hash, password) or person is None:
        for key, rule in ((keys[0], rules.account), (keys[1], rules.address)):
            failures = await repository.count_failure(session, key, window_s=rules.window_s)
            await repository.block(session, key, wait_s=rule.wait_after(failures))
        return Login(refused="wrong")
    await repository.forget_failures(session, keys[0])
    if password_hash is not None and _HASHER.check_needs_rehash(password_hash):
        new_hash = await asyncio.to_thread(_HASHER.hash, password)
        await repository.update_person(session, person.id, password_hash=new_hash)
    secret = new_session_secret()
    row = await repository.add_session(session, person_id=person.id, secret=secret, ttl_s=session_ttl_s)
    await audit.record(
        session,
        "session.started",
        organisation_id=person.organisation_id,
        person_id=person.id,
        actor=Actor("person", person.id),
    )
    return Login(
        secret=secret,
        person=person_out(person),
        session_id=row.id,
        expires_at=row.expires_at,
        csrf_token=csrf_token(secret),
    )


async def logout(
    *, session: AsyncSession, session_id: uuid.UUID, person_id: uuid.UUID, organisation_id: uuid.UUID | None
) -> None:
    await repository.end_session(session, session_id)
    await audit.record(session, "session.ended", organisation_id=organisation_id, person_id=person_id)


async def audit_trail(*, session: AsyncSession, query: audit.AuditFilter) -> dict[str, Any]:
    rows = await audit.entries(session, query)
    return {
        "items": [
            {
                "id": row.id,
                "at": row.at.isoformat(),
                "organisation_id": _text(row.organisation_id),
                "actor": {"kind": row.actor_kind, "id": _text(row.actor_id)},
                "action": row.action,
                "task_id": _text(row.task_id),
                "leg_id": _text(row.leg_id),
                "volunteer_id": _text(row.volunteer_id),
                "person_id": _text(row.person_id),
                "detail": row.detail,
            }
            for row in rows
        ],
        # Pass as `before` for the next (older) page; null when this one was the last.
        "next_before": rows[-1].id if len(rows) == query.limit else None,
    }


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


async def person_view(*, session: AsyncSession, person_id: uuid.UUID) -> dict[str, Any]:
    person = await repository.person(session, person_id, organisation_id=None)
    if person is None:
        raise PersonNotFound()
    return person_out(person)


# Ended sessions and spent links are kept this long (for support questions), then deleted.
SPENT_KEEP_S = 24 * 3600.0


async def purge_spent(session: AsyncSession, *, window_s: float, keep_s: float = SPENT_KEEP_S) -> int:
    """Forget sessions and set-password links long over, and login failures long quiet; how many rows."""
    return await repository.purge_spent(session, keep_s=keep_s, window_s=window_s)
