"""Staff browser sessions: the cookie, its CSRF token, and the lookup every service's `authorize` uses.

A session is a row in `auth.sessions` holding the hash of the cookie's random value; it is read on
every request (no cache), so logging out or disabling the person refuses the cookie at once, in every
service. The CSRF token is derived from the cookie's secret (an HMAC), so it is tied to the session
without being stored; unsafe methods authenticated by the cookie must echo it in `X-CSRF-Token`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import structlog
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Person, Principal, Role, StaffSession, hash_token
from shared.http import ProblemError

log = structlog.get_logger(__name__)

SESSION_COOKIE = "errands_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PREFIX = "ers_"


def new_session_secret() -> str:
    return _PREFIX + secrets.token_urlsafe(32)


def csrf_token(session_secret: str) -> str:
    """The session's CSRF token: an HMAC of a fixed label under the cookie's secret."""
    return hmac.new(session_secret.encode(), b"errands-csrf-v1", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionView:
    principal: Principal
    email: str
    expires_at: datetime
    csrf_token: str


def _valid_secret(value: str | None) -> str | None:
    if not value or len(value) > 200 or not value.startswith(_PREFIX) or not value.isascii():
        return None
    return value if value.isprintable() else None


async def lookup_session(session: AsyncSession, secret: str) -> SessionView | None:
    """The live session behind a cookie's secret, with its person (not disabled), or None."""
    row = (
        await session.execute(
            select(StaffSession.id, StaffSession.expires_at, Person)
            .join(Person, Person.id == StaffSession.person_id)
            .where(
                StaffSession.token_hash == hash_token(secret),
                StaffSession.ended_at.is_(None),
                StaffSession.expires_at > func.now(),
                Person.disabled_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    person: Person = row.Person
    return SessionView(
        principal=Principal(
            token_id=row.id,
            role=Role(person.role),
            organisation_id=person.organisation_id,
            person_id=person.id,
            session_id=row.id,
        ),
        email=person.email,
        expires_at=row.expires_at,
        csrf_token=csrf_token(secret),
    )


class SessionVerifier:
    """Checks a request's session cookie, and its CSRF token when the method changes something."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def current(self, request: web.Request) -> SessionView:
        """The request's live session, or a 401 problem (no CSRF check: see `verify`)."""
        secret = _valid_secret(request.cookies.get(SESSION_COOKIE))
        if secret is None:
            raise ProblemError(401, "Unauthorized", "Log in, or send `Authorization: Bearer <token>`.")
        async with self._sessionmaker() as session:
            found = await lookup_session(session, secret)
        if found is None:
            raise ProblemError(401, "Unauthorized", "The session has ended; log in again.")
        return found

    async def verify(self, request: web.Request) -> Principal:
        """The principal of the request's session; 403 for an unsafe method without its CSRF token."""
        found = await self.current(request)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(errors="replace"), found.csrf_token.encode()):
                raise ProblemError(
                    403,
                    "Forbidden",
                    f"Requests that change something need the session's CSRF token in {CSRF_HEADER}.",
                    errors=[{"field": f"header:{CSRF_HEADER}", "message": "missing or not this session's"}],
                )
        return found.principal

    async def until_ended(self, request: web.Request, *, every_s: float = 5.0) -> None:
        """Return once the request's session has ended (looked up every `every_s`), for streams."""
        secret = _valid_secret(request.cookies.get(SESSION_COOKIE))
        while secret is not None:
            try:
                async with self._sessionmaker() as session:
                    if await lookup_session(session, secret) is None:
                        return
            except Exception:  # the database is away for now: look again, rather than end the stream
                log.warning("auth.session_recheck_failed", exc_info=True)
            await asyncio.sleep(every_s)


def is_https(request: web.Request, *, trusted_proxy: bool) -> bool:
    """Whether the client reached us over HTTPS (a trusted proxy's X-Forwarded-Proto says so)."""
    if request.secure:
        return True
    if trusted_proxy:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def client_address(request: web.Request, *, trusted_proxy: bool) -> str:
    """The client's address: the peer's, or behind a trusted proxy the one it appended last."""
    if trusted_proxy:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if forwarded and forwarded[-1].isascii() and forwarded[-1].isprintable():
            return forwarded[-1][:100]
    return request.remote or "unknown"
