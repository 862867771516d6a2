"""A volunteer's action sent with an Idempotency-Key happens once; its retries get the first answer.

The record is written in the transaction of the action itself, so an answer is remembered exactly
when its effect is stored. Keys are the volunteer's own: two volunteers may use the same key.
An answer may hold the recipient's name and phone, so it is kept sealed under the data key.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters import repository
from shared import crypto
from shared.errors import IdempotencyKeyInFlight, IdempotencyKeyReused

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def request_hash(method: str, path: str, body_json: str) -> str:
    """What makes two requests the same: the action, its target and its body as parsed."""
    return hashlib.sha256(f"{method} {path}\n{body_json}".encode()).hexdigest()


async def earlier_answer(
    session: AsyncSession, *, volunteer_id: uuid.UUID, key: str, request_hash: str, data_key: bytes
) -> Answer | None:
    """The answer a request with this key already got, or None when it is the first.

    Holds the key until the transaction ends; a request with the key still running is refused
    (IdempotencyKeyInFlight), and the key used for another request is refused (IdempotencyKeyReused).
    """
    if not await repository.lock_volunteer_request(session, volunteer_id=volunteer_id, key=key):
        raise IdempotencyKeyInFlight()
    previous = await repository.volunteer_request(session, volunteer_id=volunteer_id, key=key)
    if previous is None:
        return None
    if previous.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return Answer(status=previous.status, body=crypto.unseal(data_key, previous.response["sealed"]))


async def remember_answer(
    session: AsyncSession,
    *,
    volunteer_id: uuid.UUID,
    key: str,
    request_hash: str,
    answer: Answer,
    data_key: bytes,
) -> None:
    await repository.add_volunteer_request(
        session,
        volunteer_id=volunteer_id,
        key=key,
        request_hash=request_hash,
        status=answer.status,
        response={"sealed": crypto.seal(data_key, answer.body)},
    )


async def purge(session: AsyncSession, *, retention_s: float) -> int:
    """Forget volunteers' request records older than the retention; answers how many."""
    return await repository.purge_volunteer_requests(session, retention_s=retention_s)
