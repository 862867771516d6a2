"""Every statement on staff accounts: people, set-password links, sessions and the login throttle.

The tables are in the `auth` schema (`shared.auth`), which every service reads to accept a session;
only intake writes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import LoginThrottle, PasswordSetup, Person, StaffSession, hash_token


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def email_taken(session: AsyncSession, email: str) -> bool:
    return (await session.execute(select(Person.id).where(Person.email == email))).first() is not None


async def add_person(
    session: AsyncSession, *, person_id: uuid.UUID, organisation_id: uuid.UUID, email: str, role: str
) -> Person:
    person = Person(id=person_id, organisation_id=organisation_id, email=email, role=role)
    session.add(person)
    await session.flush()
    await session.refresh(person)
    return person


async def person(
    session: AsyncSession, person_id: uuid.UUID, *, organisation_id: uuid.UUID | None, lock: bool = False
) -> Person | None:
    query = select(Person).where(Person.id == person_id)
    if organisation_id is not None:
        query = query.where(Person.organisation_id == organisation_id)
    if lock:
        query = query.with_for_update()
    found: Person | None = (await session.execute(query)).scalar_one_or_none()
    return found


async def person_by_email(session: AsyncSession, email: str) -> Person | None:
    found: Person | None = (
        await session.execute(select(Person).where(Person.email == email))
    ).scalar_one_or_none()
    return found


async def people(session: AsyncSession, *, organisation_id: uuid.UUID | None) -> list[Person]:
    query = select(Person).order_by(Person.created_at, Person.id)
    if organisation_id is not None:
        query = query.where(Person.organisation_id == organisation_id)
    return list((await session.execute(query)).scalars())


async def update_person(session: AsyncSession, person_id: uuid.UUID, **values: object) -> None:
    await session.execute(update(Person).where(Person.id == person_id).values(**values))


async def add_setup(session: AsyncSession, *, person_id: uuid.UUID, token: str, ttl_s: float) -> datetime:
    """A new set-password link; every earlier unused link of the person stops working. Its expiry."""
    await session.execute(
        update(PasswordSetup)
        .where(PasswordSetup.person_id == person_id, PasswordSetup.used_at.is_(None))
        .values(used_at=func.now())
    )
    expires_at: datetime = (
        await session.execute(
            insert(PasswordSetup)
            .values(
                token_hash=hash_token(token), person_id=person_id, expires_at=func.now() + _seconds(ttl_s)
            )
            .returning(PasswordSetup.expires_at)
        )
    ).scalar_one()
    return expires_at


async def use_setup(session: AsyncSession, token: str) -> uuid.UUID | None:
    """Spend a live link (once: the update is the check); the person it was for, or None."""
    person_id: uuid.UUID | None = (
        await session.execute(
            update(PasswordSetup)
            .where(
                PasswordSetup.token_hash == hash_token(token),
                PasswordSetup.used_at.is_(None),
                PasswordSetup.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(PasswordSetup.person_id)
        )
    ).scalar_one_or_none()
    return person_id


async def add_session(
    session: AsyncSession, *, person_id: uuid.UUID, secret: str, ttl_s: float
) -> StaffSession:
    row = (
        await session.execute(
            insert(StaffSession)
            .values(
                id=uuid.uuid4(),
                token_hash=hash_token(secret),
                person_id=person_id,
                expires_at=func.now() + _seconds(ttl_s),
            )
            .returning(StaffSession)
        )
    ).scalar_one()
    return row


async def end_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.ended_at.is_(None))
        .values(ended_at=func.now())
    )


async def end_sessions_of(session: AsyncSession, person_id: uuid.UUID) -> int:
    result = await session.execute(
        update(StaffSession)
        .where(StaffSession.person_id == person_id, StaffSession.ended_at.is_(None))
        .values(ended_at=func.now())
        .returning(StaffSession.id)
    )
    return len(result.all())


# --- the login throttle ------------------------------------------------------------------------------


async def blocked_for(session: AsyncSession, keys: list[str], *, lock: str) -> float:
    """Seconds until every one of `keys` may try again (0: now), by the database clock.

    The row of `lock` (the account's) stays locked until the transaction ends, so tries on one
    account, in any replica, are checked one after another: none slips past a count still being
    written. (An address's tries are not serialised: many people may share one.)
    """
    # A row to lock even before the first failure (an uncounted one: `failures` 0).
    await session.execute(
        insert(LoginThrottle)
        .values(key=lock, failures=0, last_failure_at=func.now())
        .on_conflict_do_nothing(index_elements=[LoginThrottle.key])
    )
    await session.execute(select(LoginThrottle.key).where(LoginThrottle.key == lock).with_for_update())
    wait = (
        await session.execute(
            select(func.max(func.extract("epoch", LoginThrottle.blocked_until - func.now()))).where(
                LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > func.now()
            )
        )
    ).scalar_one_or_none()
    return float(wait or 0.0)


async def count_failure(session: AsyncSession, key: str, *, window_s: float) -> int:
    """One more wrong password for `key` (the count restarts after a quiet window); the new count.

    The upsert locks the row until the transaction ends, so replicas count one after another.
    """
    statement = insert(LoginThrottle).values(key=key, failures=1, last_failure_at=func.now())
    failures: int = (
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[LoginThrottle.key],
                set_={
                    "failures": case(
                        (LoginThrottle.last_failure_at < func.now() - _seconds(window_s), 1),
                        else_=LoginThrottle.failures + 1,
                    ),
                    "last_failure_at": func.now(),
                },
            ).returning(LoginThrottle.failures)
        )
    ).scalar_one()
    return failures


async def block(session: AsyncSession, key: str, *, wait_s: float) -> None:
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(blocked_until=func.now() + _seconds(wait_s) if wait_s > 0 else None)
    )


async def forget_failures(session: AsyncSession, key: str) -> None:
    await session.execute(
        update(LoginThrottle).where(LoginThrottle.key == key).values(failures=0, blocked_until=None)
    )


async def purge_spent(session: AsyncSession, *, keep_s: float, window_s: float) -> int:
    """Delete sessions and set-password links over for `keep_s`, and throttle counts gone quiet."""
    over = func.now() - _seconds(keep_s)
    deleted = 0
    for statement in (
        delete(StaffSession).where(func.coalesce(StaffSession.ended_at, StaffSession.expires_at) < over),
        delete(PasswordSetup).where(func.coalesce(PasswordSetup.used_at, PasswordSetup.expires_at) < over),
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < func.now() - _seconds(window_s),
            func.coalesce(LoginThrottle.blocked_until, LoginThrottle.last_failure_at) < func.now(),
        ),
    ):
        deleted += len((await session.execute(statement.returning(literal(1)))).all())
    return deleted
