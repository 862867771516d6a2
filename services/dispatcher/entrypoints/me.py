"""The volunteer app's API, `/v1/me`: duty, whereabouts, offers and the legs in hand.

The location stream, a WebSocket of its own, is in `location_stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.adapters.wakeups import VolunteerWakeups
from services.dispatcher.domain import photo, welfare
from services.dispatcher.entrypoints.api import acting_volunteer, api
from services.dispatcher.entrypoints.location_stream import LOCATIONS, take_fix
from services.dispatcher.entrypoints.schemas import (
    AssignmentsOut,
    DeclineIn,
    DeliveredIn,
    DutyIn,
    LegOut,
    LegStatusOut,
    LocationIn,
    OfferDeclinedOut,
    PhotoOut,
    PickedUpIn,
    PreferencesIn,
    PreferencesOut,
    ProblemIn,
    VolunteerOut,
    WaitQuery,
    check_occurred_at,
    respond,
    volunteer_view,
)
from services.dispatcher.service_layer import (
    deliveries,
    offers,
    photos,
    views,
    volunteer_requests,
    volunteers,
)
from services.dispatcher.service_layer.eta import eta_policy
from shared.http import ProblemError, parse_body, parse_query, path_uuid
from shared.runtime import RUNTIME, token_revocation
from shared.settings import Settings

WAKEUPS = web.AppKey("wakeups", VolunteerWakeups)
PHOTO_STORES = web.AppKey("photo_stores", PhotoStores)
# Bounds the photos decoded at once, and so the memory decoding takes (PHOTO_DECODE_CONCURRENCY).
PHOTO_DECODING = web.AppKey("photo_decoding", asyncio.Semaphore)

IDEMPOTENCY_KEY_MAX = 255
# Optional on the volunteer's actions; printable ASCII, as HTTP carries it, without surrounding blanks.
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": IDEMPOTENCY_KEY_MAX,
    "pattern": "^[!-~]([ -~]*[!-~])?$",
}
IDEMPOTENCY_HEADERS = {"Idempotency-Key": IDEMPOTENCY_KEY_SCHEMA}


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable()):
        raise ProblemError(
            400,
            "Bad request",
            "The Idempotency-Key header must be 1 to 255 printable characters.",
            errors=[{"field": "header:Idempotency-Key", "message": "1 to 255 printable characters"}],
        )
    return key


async def _once(
    request: web.Request,
    session: AsyncSession,
    volunteer_id: uuid.UUID,
    body: BaseModel | None,
    act: Callable[[], Awaitable[volunteer_requests.Answer]],
) -> tuple[volunteer_requests.Answer, bool]:
    """Run `act` in `session`'s transaction, unless its Idempotency-Key already has an answer.

    Returns the answer and whether it is a replay; the answer is stored with the action's effect.
    """
    key = _idempotency_key(request)
    if key is None:
        return await act(), False
    body_json = "" if body is None else body.model_dump_json()
    digest = volunteer_requests.request_hash(request.method, request.path, body_json)
    data_key = request.app[RUNTIME].settings.data_key
    earlier = await volunteer_requests.earlier_answer(
        session, volunteer_id=volunteer_id, key=key, request_hash=digest, data_key=data_key
    )
    if earlier is not None:
        return earlier, True
    answer = await act()
    await volunteer_requests.remember_answer(
        session, volunteer_id=volunteer_id, key=key, request_hash=digest, answer=answer, data_key=data_key
    )
    return answer, False


def _occurred_at(occurred_at: datetime | None, settings: Settings) -> datetime:
    return check_occurred_at(
        occurred_at,
        max_age_s=settings.volunteer_action_max_age_s,
        max_skew_s=settings.volunteer_action_max_skew_s,
    )


def _answer(model: type[Any], answer: volunteer_requests.Answer, replayed: bool) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return respond(model, answer.body, status=answer.status, headers=headers)


@api.route(
    "PUT",
    "/v1/me/duty",
    summary="Go on or off duty",
    body=DutyIn,
    response=VolunteerOut,
    roles=("volunteer",),
    errors=(409,),
)
async def put_duty(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    body = await parse_body(request, DutyIn)
    limits = volunteers.welfare_limits(request.app[RUNTIME].settings)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row = await volunteers.set_duty(
            session=session,
            volunteer_id=volunteer_id,
            on_duty=body.on_duty,
            limits=limits,
        )
        view = volunteer_view(row, volunteers.welfare_status(row, limits))
    return respond(VolunteerOut, view)


def _preferences(row: Any) -> dict[str, Any]:
    return {"sms_on_offer": row.sms_on_offer, "sms_language": row.sms_language, "has_phone": bool(row.phone)}


@api.route(
    "GET",
    "/v1/me/preferences",
    summary="My settings: whether a new offer also comes by SMS",
    response=PreferencesOut,
    roles=("volunteer",),
)
async def get_preferences(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    async with request.app[RUNTIME].sessionmaker() as session:
        row = await volunteers.get_volunteer(session=session, volunteer_id=volunteer_id, organisation_id=None)
    return respond(PreferencesOut, _preferences(row))


@api.route(
    "PUT",
    "/v1/me/preferences",
    summary="Change my settings: an SMS when a new offer waits (browsers' push does not reach everywhere)",
    body=PreferencesIn,
    response=PreferencesOut,
    roles=("volunteer",),
    errors=(409,),
)
async def put_preferences(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    body = await parse_body(request, PreferencesIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row = await volunteers.set_preferences(
            session=session, volunteer_id=volunteer_id, sms_on_offer=body.sms_on_offer, language=body.language
        )
        view = _preferences(row)
    return respond(PreferencesOut, view)


@api.route(
    "POST",
    "/v1/me/location",
    summary="Report where I am",
    body=LocationIn,
    status=202,
    roles=("volunteer",),
)
async def post_location(request: web.Request) -> web.Response:
    """Buffered, not written here: see services.dispatcher.service_layer.locations for the guarantees."""
    volunteer_id = await acting_volunteer(request)
    body = await parse_body(request, LocationIn)
    take_fix(request.app[LOCATIONS], volunteer_id, body)
    return web.Response(status=202)


@api.route(
    "GET",
    "/v1/me/assignments",
    summary="My offers and legs (long poll; 304 when nothing changed since If-None-Match)",
    response=AssignmentsOut,
    roles=("volunteer",),
    empty={304: "Nothing changed since the If-None-Match ETag within `wait` seconds"},
    query=WaitQuery,
)
async def get_assignments(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    wait = parse_query(request, WaitQuery).wait
    runtime = request.app[RUNTIME]
    known = request.headers.get("If-None-Match")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, runtime.settings.long_poll_max_wait_s)
    wakeups = request.app[WAKEUPS]
    async with contextlib.AsyncExitStack() as stack:
        revoked: asyncio.Task[None] | None = None
        with wakeups.waiter(volunteer_id) as changed:
            while True:
                changed.clear()
                async with runtime.sessionmaker() as session:
                    body = await views.assignments(
                        session=session, volunteer_id=volunteer_id, data_key=runtime.settings.data_key
                    )
                AssignmentsOut.model_validate(body)
                text = json.dumps(body)
                etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
                if etag != known:
                    return web.Response(
                        text=text,
                        content_type="application/json",
                        headers={"ETag": etag, "Cache-Control": "no-store"},
                    )
                remaining = deadline - loop.time()
                if remaining <= 0 or wakeups.closing:
                    return web.Response(status=304, headers={"ETag": etag})
                if revoked is None:  # only a poll that waits outlives its token check
                    revoked = await stack.enter_async_context(token_revocation(request))
                woken = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait(
                        (woken, revoked), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()
                if revoked.done():
                    raise ProblemError(401, "Unauthorized", "The token was revoked.")
                if wakeups.closing:
                    # Stopping: answer "nothing new" now; the app polls again against another replica.
                    return web.Response(status=304, headers={"ETag": etag})


@api.route(
    "POST",
    "/v1/me/offers/{offer_id}/accept",
    summary="Accept an offer and every other offer of its route (409 once it expired or was withdrawn)",
    response=LegOut,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
)
async def post_accept(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    offer_id = path_uuid(request, "offer_id", "offer")
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session, session.begin():

        async def accept() -> volunteer_requests.Answer:
            leg = await offers.accept_offer(
                session, offer_id=offer_id, volunteer_id=volunteer_id, eta=eta_policy(runtime.settings)
            )
            return volunteer_requests.Answer(
                200, views.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
            )

        answer, replayed = await _once(request, session, volunteer_id, None, accept)
    return _answer(LegOut, answer, replayed)


@api.route(
    "POST",
    "/v1/me/offers/{offer_id}/decline",
    summary="Decline an offer and every other offer of its route",
    body=DeclineIn,
    response=OfferDeclinedOut,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
)
async def post_decline(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    offer_id = path_uuid(request, "offer_id", "offer")
    body = await parse_body(request, DeclineIn) if request.body_exists else DeclineIn()
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():

        async def decline() -> volunteer_requests.Answer:
            await offers.decline_offer(
                session, offer_id=offer_id, volunteer_id=volunteer_id, reason=body.reason
            )
            return volunteer_requests.Answer(200, {"id": str(offer_id), "status": "declined"})

        answer, replayed = await _once(request, session, volunteer_id, body, decline)
    return _answer(OfferDeclinedOut, answer, replayed)


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/picked-up",
    summary="I have picked it up",
    body=PickedUpIn,
    response=LegOut,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
)
async def post_picked_up(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, PickedUpIn) if request.body_exists else PickedUpIn()
    runtime = request.app[RUNTIME]
    occurred_at = _occurred_at(body.occurred_at, runtime.settings)
    async with runtime.sessionmaker() as session, session.begin():

        async def picked_up() -> volunteer_requests.Answer:
            leg = await deliveries.report_picked_up(
                session,
                leg_id=leg_id,
                volunteer_id=volunteer_id,
                occurred_at=occurred_at,
                eta=eta_policy(runtime.settings),
            )
            return volunteer_requests.Answer(
                200, views.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
            )

        answer, replayed = await _once(request, session, volunteer_id, body, picked_up)
    return _answer(LegOut, answer, replayed)


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/delivered",
    summary="I have delivered it",
    body=DeliveredIn,
    response=LegOut,
    status=202,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
)
async def post_delivered(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, DeliveredIn)
    runtime = request.app[RUNTIME]
    occurred_at = _occurred_at(body.occurred_at, runtime.settings)
    async with runtime.sessionmaker() as session, session.begin():

        async def delivered() -> volunteer_requests.Answer:
            leg = await deliveries.report_delivered(
                session,
                leg_id=leg_id,
                volunteer_id=volunteer_id,
                code_key=runtime.settings.code_key,
                confirmation_code=body.confirmation_code,
                photo_id=body.photo_id,
                photo_sha256=body.photo_sha256,
                note=body.note,
                today=welfare.local_day(datetime.now(UTC), volunteers.welfare_limits(runtime.settings)),
                occurred_at=occurred_at,
            )
            return volunteer_requests.Answer(
                202, views.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
            )

        answer, replayed = await _once(request, session, volunteer_id, body, delivered)
    return _answer(LegOut, answer, replayed)


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/problem",
    summary="I cannot do this leg: hand it back",
    body=ProblemIn,
    response=LegStatusOut,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
)
async def post_problem(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, ProblemIn) if request.body_exists else ProblemIn()
    occurred_at = _occurred_at(body.occurred_at, request.app[RUNTIME].settings)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():

        async def problem() -> volunteer_requests.Answer:
            leg = await deliveries.report_problem(
                session, leg_id=leg_id, volunteer_id=volunteer_id, reason=body.reason, occurred_at=occurred_at
            )
            return volunteer_requests.Answer(200, {"id": str(leg.id), "status": str(leg.status)})

        answer, replayed = await _once(request, session, volunteer_id, body, problem)
    return _answer(LegStatusOut, answer, replayed)


class _Upload(BaseModel):
    """What makes two photo uploads the same request, for their Idempotency-Key: the bytes sent."""

    sha256: str
    media_type: str


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    too_large = ProblemError(
        413,
        "Payload too large",
        f"The photo may be at most {limit} bytes.",
        errors=[{"field": "body", "message": f"at most {limit} bytes"}],
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:  # a chunked body, or one longer than its Content-Length said
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def photo_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "leg_id": str(row.leg_id),
        "sha256": row.sha256,
        "content_type": row.content_type,
        "width": row.width,
        "height": row.height,
        "size_bytes": row.size_bytes,
        "url": photos.photo_path(row.leg_id, row.id),
    }


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/photos",
    summary="Upload a photo of a leg I hold: the proof of a no-contact drop-off (stored without metadata)",
    response=PhotoOut,
    status=201,
    roles=("volunteer",),
    errors=(409,),
    headers=IDEMPOTENCY_HEADERS,
    raw_body=photo.supported_types(),
)
async def post_photo(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    media_type = request.content_type.lower()
    supported = photo.supported_types()
    if media_type not in supported:
        raise ProblemError(
            415,
            "Unsupported media type",
            f"Send the photo's bytes as one of {', '.join(supported)}, not {media_type}.",
            errors=[{"field": "header:Content-Type", "message": f"one of {', '.join(supported)}"}],
        )
    if request.content_length is not None and request.content_length > settings.photo_max_bytes:
        await _read_capped(request, settings.photo_max_bytes)  # refuses before reading anything
    async with runtime.sessionmaker() as session, session.begin():
        # Only a leg the volunteer holds is worth decoding a photo for.
        await deliveries.own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
    data = await _read_capped(request, settings.photo_max_bytes)
    if not data:
        raise photo.PhotoUnreadable("the body is empty")
    # Decoding is CPU work: off the event loop, which keeps serving the other requests meanwhile.
    async with request.app[PHOTO_DECODING]:
        stored = await asyncio.to_thread(
            photo.normalise,
            data,
            media_type=media_type,
            max_side=settings.photo_max_side,
            max_pixels=settings.photo_max_pixels,
        )
    upload = _Upload(sha256=hashlib.sha256(data).hexdigest(), media_type=media_type)
    async with runtime.sessionmaker() as session, session.begin():

        async def store() -> volunteer_requests.Answer:
            row = await photos.add_photo(
                session,
                stores=request.app[PHOTO_STORES],
                leg_id=leg_id,
                volunteer_id=volunteer_id,
                photo=stored,
                max_per_leg=settings.photo_max_per_leg,
            )
            return volunteer_requests.Answer(201, photo_view(row))

        answer, replayed = await _once(request, session, volunteer_id, upload, store)
    return _answer(PhotoOut, answer, replayed)
