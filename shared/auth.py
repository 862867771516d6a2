"""Bearer tokens for the four roles: random, shown once, stored only as hashes in the `auth` schema."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import schema_metadata
from shared.http import ProblemError
from shared.listen import PgListener

log = structlog.get_logger(__name__)


class AuthBase(DeclarativeBase):
    metadata = schema_metadata("auth")


class Role(enum.StrEnum):
    OPERATOR = "operator"
    VOLUNTEER = "volunteer"
    OPS = "ops"
    ADMIN = "admin"


class Organisation(AuthBase):
    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiToken(AuthBase):
    __tablename__ = "tokens"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.organisations.id")
    )
    # A volunteer token's owner lives in the dispatcher's schema, which this one must not reference.
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who a machine's token acts for: a person (revoked when they are disabled) or a named service.
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.people.id"), index=True
    )
    service_name: Mapped[str | None] = mapped_column(Text)


class Person(AuthBase):
    """A member of staff: an admin, operator or ops person of one organisation, who logs in by e-mail."""

    __tablename__ = "people"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("auth.organisations.id"), index=True
    )
    # Stored lower-cased; one account per address across organisations.
    email: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text)
    # argon2id (argon2-cffi's defaults); None until the person has used their set-password link.
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordSetup(AuthBase):
    """A one-time link to set a person's password: stored as the hash of its token."""

    __tablename__ = "password_setups"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("auth.people.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StaffSession(AuthBase):
    """A browser session: the cookie's hash, so a session can be ended server-side at once."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    person_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("auth.people.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginThrottle(AuthBase):
    """Recent failed logins of one account or one client address, and until when they are refused."""

    __tablename__ = "login_throttle"

    # "account:<sha256 of the e-mail>" or "address:<client address>"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(AuthBase):
    """One command and who gave it, by ids only: no names, phones, addresses or free text."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # person, volunteer (their device's token), service (a named token), token (an unnamed one), system
    actor_kind: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    action: Mapped[str] = mapped_column(Text)
    task_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    leg_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    person_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, and the organisation or volunteer it is scoped to."""

    token_id: uuid.UUID
    role: Role
    organisation_id: uuid.UUID | None = None
    volunteer_id: uuid.UUID | None = None
    # The person behind a browser session or a token they own, or the service a token is named for.
    person_id: uuid.UUID | None = None
    service_name: str | None = None
    # Set when the caller came with a session cookie rather than a bearer token.
    session_id: uuid.UUID | None = None

    @property
    def actor(self) -> Actor:
        """Who the audit trail and events say acted: the person, the volunteer, or the token itself."""
        if self.person_id is not None:
            return Actor("person", self.person_id)
        if self.volunteer_id is not None:
            return Actor("volunteer", self.volunteer_id)
        if self.service_name is not None:
            return Actor("service", self.token_id)
        return Actor("token", self.token_id)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who gave a command, by kind and id: `person:<id>`, `volunteer:<id>`, `service:<token id>`..."""

    kind: str
    id: uuid.UUID | None

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id is not None else self.kind


_PREFIX = {Role.OPERATOR: "erk_op_", Role.VOLUNTEER: "erk_vol_", Role.OPS: "erk_ops_", Role.ADMIN: "erk_adm_"}


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is enough to make the stored form useless."""
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession,
    *,
    role: Role,
    organisation_id: uuid.UUID | None = None,
    volunteer_id: uuid.UUID | None = None,
    person_id: uuid.UUID | None = None,
    service_name: str | None = None,
) -> tuple[uuid.UUID, str]:
    """Create a token in the caller's transaction; returns its id and the only copy of its secret."""
    token = _PREFIX[role] + secrets.token_urlsafe(32)
    row = ApiToken(
        id=uuid.uuid4(),
        token_hash=hash_token(token),
        role=role.value,
        organisation_id=organisation_id,
        volunteer_id=volunteer_id,
        person_id=person_id,
        service_name=service_name,
    )
    session.add(row)
    await session.flush()
    return row.id, token


async def revoke_token(
    session: AsyncSession,
    *,
    token_id: uuid.UUID,
    volunteer_id: uuid.UUID | None = None,
    organisation_id: uuid.UUID | None = None,
) -> bool:
    """Revoke a token, only if it is this volunteer's (or this organisation's) when one is named;
    False when there is none live."""
    where = [ApiToken.id == token_id]
    if volunteer_id is not None:
        where.append(ApiToken.volunteer_id == volunteer_id)
    if organisation_id is not None:
        where.append(ApiToken.organisation_id == organisation_id)
    return bool(await _revoke(session, *where))


async def revoke_person_tokens(session: AsyncSession, *, person_id: uuid.UUID) -> int:
    """Revoke every live token a person owns; how many there were."""
    return len(await _revoke(session, ApiToken.person_id == person_id))


async def revoke_volunteer_tokens(session: AsyncSession, *, volunteer_id: uuid.UUID) -> int:
    """Revoke every live token of a volunteer; how many there were."""
    return len(await _revoke(session, ApiToken.volunteer_id == volunteer_id))


async def _revoke(session: AsyncSession, *where: ColumnElement[bool]) -> list[str]:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.revoked_at.is_(None), *where)
        .values(revoked_at=func.now())
        .returning(ApiToken.token_hash)
    )
    token_hashes = sorted(result.scalars())
    if token_hashes:
        # Every process drops the tokens from its cache, and ends the streams they opened, when this
        # commits (see TokenVerifier).
        await session.execute(
            text("SELECT pg_notify(:channel, h) FROM unnest(CAST(:hashes AS text[])) AS h"),
            {"channel": REVOKED_CHANNEL, "hashes": token_hashes},
        )
    return token_hashes


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller, in process memory: each replica enforces its own share."""

    def __init__(self, *, per_s: float, burst: int) -> None:
        self._per_s = per_s
        self._burst = burst
        self._buckets: dict[uuid.UUID, _Bucket] = {}

    def take(self, key: uuid.UUID, *, now: float) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(tokens=float(self._burst), updated=now)
        # Callers read the clock before awaiting (a token lookup), so `now` can arrive out of order: an
        # earlier instant refills nothing, rather than draining the bucket by the time it lags behind.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._per_s)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._per_s


REVOKED_CHANNEL = "auth_token_revoked"


class TokenVerifier:
    """Looks tokens up by hash and caches the answers, so the hot paths cost no extra round trip.

    A revocation reaches every process at once through NOTIFY on `REVOKED_CHANNEL`; the cache's
    lifetime only bounds how long a missed notification could matter (the listener also clears
    the whole cache whenever it reconnects). Unknown tokens are cached briefly, against floods.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        listener: PgListener | None = None,
        ttl_s: float = 300.0,
        unknown_ttl_s: float = 10.0,
        max_entries: int = 500_000,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ttl_s = ttl_s
        self._unknown_ttl_s = unknown_ttl_s
        self._limiter = limiter
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._max_entries = max_entries
        # Open streams (SSE, WebSocket, long polls) outlive the check at their start: each waits
        # on an Event here, set when a notice may concern its token.
        self._streams: dict[str, set[asyncio.Event]] = {}
        if listener is not None:
            listener.subscribe(REVOKED_CHANNEL, self._forget)

    def _forget(self, token_hash: str) -> None:
        if token_hash:
            self._cache.pop(token_hash, None)
            notices = self._streams.get(token_hash, set())
        else:  # the listener reconnected: revocations may have been missed
            self._cache.clear()
            notices = {notice for waiting in self._streams.values() for notice in waiting}
        for notice in notices:
            notice.set()

    async def verify(self, authorization: str | None) -> Principal:
        """The principal behind an `Authorization: Bearer` header, or a 401 problem."""
        token_hash = _token_hash(authorization)
        now = time.monotonic()
        principal = await self._principal(token_hash, now)
        if principal is None:
            raise ProblemError(401, "Unauthorized", "The token is not valid.")
        if self._limiter is not None:
            wait_s = self._limiter.take(principal.token_id, now=now)
            if wait_s > 0:
                raise ProblemError(
                    429,
                    "Too many requests",
                    "This token is sending requests faster than allowed; slow down.",
                    headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
                )
        return principal

    async def until_revoked(self, authorization: str | None) -> None:
        """Return once the token of a stream verified with this header is revoked.

        Every revocation notice naming the token, and every reconnect of the listener (notices may
        have been lost meanwhile), has the token looked up again; nothing else costs a query.
        """
        token_hash = _token_hash(authorization)
        notice = asyncio.Event()
        if token_hash not in self._cache:  # a notice may have come since the stream was verified
            notice.set()
        self._streams.setdefault(token_hash, set()).add(notice)
        try:
            while True:
                await notice.wait()
                notice.clear()
                try:
                    principal = await self._principal(token_hash, time.monotonic())
                except Exception:
                    # The database is away for now: look again shortly rather than end the stream.
                    log.warning("auth.recheck_failed", exc_info=True)
                    await asyncio.sleep(1.0)
                    notice.set()
                    continue
                if principal is None:
                    return
        finally:
            waiting = self._streams.get(token_hash)
            if waiting is not None:
                waiting.discard(notice)
                if not waiting:
                    del self._streams[token_hash]

    async def _principal(self, token_hash: str, now: float) -> Principal | None:
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        principal = await self._lookup(token_hash)
        if len(self._cache) >= self._max_entries:
            # Evict the oldest insertions (dicts keep order) rather than everyone at once.
            for stale in list(itertools.islice(self._cache, self._max_entries // 10)):
                del self._cache[stale]
        ttl = self._ttl_s if principal is not None else self._unknown_ttl_s
        self._cache[token_hash] = (principal, now + ttl)
        return principal

    async def _lookup(self, token_hash: str) -> Principal | None:
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(ApiToken).where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
                )
            ).scalar_one_or_none()
        if row is None:
            return None
        return Principal(
            token_id=row.id,
            role=Role(row.role),
            organisation_id=row.organisation_id,
            volunteer_id=row.volunteer_id,
            person_id=row.person_id,
            service_name=row.service_name,
        )


def _token_hash(authorization: str | None) -> str:
    """The hash of the token in an `Authorization: Bearer` header, or a 401 problem."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ProblemError(401, "Unauthorized", "Send `Authorization: Bearer <token>`.")
    token = authorization[len("Bearer ") :].strip()
    # Undecodable header bytes arrive as lone surrogates; no token of ours is anything but ASCII.
    if not token or len(token) > 200 or not token.isascii() or not token.isprintable():
        raise ProblemError(401, "Unauthorized", "The token is not valid.")
    return hash_token(token)


def require_role(principal: Principal, *roles: Role) -> None:
    """403 unless the principal holds one of `roles`."""
    if principal.role not in roles:
        raise ProblemError(
            403, "Forbidden", f"This needs one of the roles: {', '.join(r.value for r in roles)}."
        )
