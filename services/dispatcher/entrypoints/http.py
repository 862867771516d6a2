"""Dispatcher's HTTP API: the volunteer registry for operators and the `/v1/me` app API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from services.dispatcher.adapters.wakeups import VolunteerWakeups
from services.dispatcher.service_layer import dispatch, volunteers
from services.dispatcher.service_layer.locations import LocationBuffer, LocationBufferFull, fix_from_report
from shared.auth import Principal, RateLimiter, Role
from shared.fields import describe_storable_text
from shared.http import (
    Api,
    ProblemError,
    StorableModel,
    decode_json,
    json_response,
    parse_body,
    parse_query,
    path_uuid,
    problem_body,
    validation_problem,
)
from shared.runtime import RUNTIME, authorize, token_revocation

log = structlog.get_logger(__name__)

WAKEUPS = web.AppKey("wakeups", VolunteerWakeups)
LOCATIONS = web.AppKey("locations", LocationBuffer)

api = Api(title="Errands dispatcher")


class WaitQuery(BaseModel):
    wait: float = Field(default=0, ge=0, le=60)


class DeclineIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


class ProblemIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str | None = Field(default=None, max_length=500)


class AssignIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    volunteer_id: uuid.UUID


def _describe_delivery(schema: dict[str, Any], model: type[BaseModel]) -> None:
    describe_storable_text(schema, model)
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("confirmation_code", "photo_sha256")
    ]


class DeliveredIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_describe_delivery)
    confirmation_code: str | None = Field(default=None, min_length=4, max_length=12, pattern=r"^[0-9]+$")
    photo_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _code_or_photo(self) -> DeliveredIn:
        if self.confirmation_code is None and self.photo_sha256 is None:
            raise ValueError("send confirmation_code, or photo_sha256 for a no-contact drop-off")
        return self


# --- responses: they document the answers in /openapi.json (schemathesis checks answers against them)


class PointOut(BaseModel):
    lat: float
    lon: float


class FixOut(BaseModel):
    lat: float | None
    lon: float | None
    at: datetime


class VolunteerOut(BaseModel):
    id: uuid.UUID
    name: str
    phone: str | None
    languages: list[str]
    skills: list[str]
    vehicle: volunteers.Vehicle
    capacity_kg: float
    insured: bool
    max_active_legs: int
    home: PointOut | None
    on_duty: bool
    status: Literal["on_duty", "off_duty"]
    active_legs: int
    location: FixOut | None
    deactivated_at: datetime | None = Field(
        default=None, description="When an operator deactivated the volunteer; null while active."
    )


class VolunteerCreatedOut(VolunteerOut):
    token: str = Field(description="The volunteer app's token, shown this once.")
    token_id: uuid.UUID = Field(description="The token's id, to revoke it by.")


class VolunteerTokenOut(BaseModel):
    id: uuid.UUID = Field(description="The token's id, to revoke it by.")
    token: str = Field(description="The volunteer app's new token, shown this once.")


class VolunteerPageOut(BaseModel):
    items: list[VolunteerOut]
    next_cursor: str | None


LegStatus = Literal[
    "pending", "offered", "assigned", "picked_up", "delivered", "confirmed", "failed", "cancelled"
]


class LegOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatus
    kind: str | None
    priority: str
    deliver_by: str | None
    pickup: dict[str, Any]
    dropoff: dict[str, Any] = Field(description="The recipient's name and phone only once the leg is yours.")
    items: list[dict[str, Any]]
    flagged: bool = Field(
        default=False,
        description="Too many wrong codes: the leg takes no delivery report until an operator resolves it.",
    )


class OfferOut(BaseModel):
    id: uuid.UUID
    expires_at: datetime
    distance_m: float
    leg: LegOut


class AssignmentsOut(BaseModel):
    offers: list[OfferOut]
    legs: list[LegOut]


class AssignedOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    status: LegStatus
    volunteer_id: uuid.UUID


class OfferDeclinedOut(BaseModel):
    id: uuid.UUID
    status: Literal["declined"]


class LegStatusOut(BaseModel):
    id: uuid.UUID
    status: LegStatus


async def _volunteer(request: web.Request) -> uuid.UUID:
    principal = await authorize(request, Role.VOLUNTEER)
    assert principal.volunteer_id is not None
    return principal.volunteer_id


@api.route(
    "POST",
    "/v1/volunteers",
    summary="Register a volunteer",
    body=volunteers.VolunteerIn,
    response=VolunteerCreatedOut,
    status=201,
    roles=("operator",),
)
async def post_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    body = await parse_body(request, volunteers.VolunteerIn)
    assert principal.organisation_id is not None
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await volunteers.register_volunteer(
            session=session, organisation_id=principal.organisation_id, body=body
        )
    return json_response(created, status=201, headers={"Location": f"/v1/volunteers/{created['id']}"})


def _scope(principal: Principal) -> uuid.UUID | None:
    """Operators see their own organisation only; ops and admin see all."""
    return principal.organisation_id if principal.role is Role.OPERATOR else None


@api.route(
    "GET",
    "/v1/volunteers",
    summary="List volunteers",
    response=VolunteerPageOut,
    roles=("operator", "ops", "admin"),
    query=volunteers.VolunteerListQuery,
)
async def list_volunteers(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    query = parse_query(request, volunteers.VolunteerListQuery)
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await volunteers.list_volunteers(
            session=session, organisation_id=_scope(principal), query=query
        )
    return json_response(page)


@api.route(
    "PATCH",
    "/v1/volunteers/{volunteer_id}",
    summary="Change a volunteer",
    body=volunteers.VolunteerPatch,
    response=VolunteerOut,
    roles=("operator", "admin"),
    errors=(409,),
)
async def patch_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.ADMIN)
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    patch = await parse_body(request, volunteers.VolunteerPatch)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row = await volunteers.update_volunteer(
            session=session, volunteer_id=volunteer_id, organisation_id=_scope(principal), patch=patch
        )
        view = volunteers.volunteer_view(row)
    return json_response(view)


@api.route(
    "POST",
    "/v1/volunteers/{volunteer_id}/tokens",
    summary="A new token for a volunteer's app; every token they held before is revoked at once",
    response=VolunteerTokenOut,
    status=201,
    roles=("operator",),
    errors=(409,),
)
async def post_volunteer_token(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await volunteers.rotate_token(
            session=session, volunteer_id=volunteer_id, organisation_id=principal.organisation_id
        )
    return json_response(created, status=201)


@api.route(
    "DELETE",
    "/v1/volunteers/{volunteer_id}/tokens/{token_id}",
    summary="Revoke a volunteer's token",
    status=204,
    roles=("operator",),
)
async def delete_volunteer_token(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    token_id = path_uuid(request, "token_id", "token")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await volunteers.revoke_token_of(
            session=session,
            volunteer_id=volunteer_id,
            organisation_id=principal.organisation_id,
            token_id=token_id,
        )
    return web.Response(status=204)


@api.route(
    "POST",
    "/v1/volunteers/{volunteer_id}/deactivate",
    summary="Deactivate a volunteer: tokens revoked, off duty, no more offers, unpicked legs handed back",
    response=VolunteerOut,
    roles=("operator",),
)
async def post_deactivate_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row = await volunteers.deactivate_volunteer(
            session=session, volunteer_id=volunteer_id, organisation_id=principal.organisation_id
        )
        view = volunteers.volunteer_view(row)
    return json_response(view)


@api.route(
    "POST",
    "/v1/legs/{leg_id}/assign",
    summary="Assign a leg by hand",
    body=AssignIn,
    response=AssignedOut,
    roles=("operator",),
    errors=(409,),
)
async def post_assign(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, AssignIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        leg = await dispatch.assign_by_hand(
            session, leg_id=leg_id, volunteer_id=body.volunteer_id, organisation_id=principal.organisation_id
        )
    return json_response(
        {
            "id": str(leg.id),
            "task_id": str(leg.task_id),
            "status": leg.status,
            "volunteer_id": str(leg.volunteer_id),
        }
    )


@api.route(
    "GET",
    "/v1/volunteers/{volunteer_id}",
    summary="A volunteer",
    response=VolunteerOut,
    roles=("operator", "ops", "admin"),
)
async def get_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    scope = _scope(principal)
    async with request.app[RUNTIME].sessionmaker() as session:
        row = await volunteers.get_volunteer(
            session=session, volunteer_id=volunteer_id, organisation_id=scope
        )
    return json_response(volunteers.volunteer_view(row))


@api.route(
    "PUT",
    "/v1/me/duty",
    summary="Go on or off duty",
    body=volunteers.DutyIn,
    response=VolunteerOut,
    roles=("volunteer",),
)
async def put_duty(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    body = await parse_body(request, volunteers.DutyIn)
    settings = request.app[RUNTIME].settings
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        view = await volunteers.set_duty(
            session=session,
            volunteer_id=volunteer_id,
            on_duty=body.on_duty,
            shift_cap=timedelta(seconds=settings.shift_max_on_duty_s),
            rest=timedelta(seconds=settings.shift_rest_s),
        )
    return json_response(view)


def _buffer_full() -> ProblemError:
    return ProblemError(
        503,
        "Service unavailable",
        "Too many location reports are waiting to be written; send this one again shortly.",
        headers={"Retry-After": "1"},
    )


def _take_fix(buffer: LocationBuffer, volunteer_id: uuid.UUID, body: volunteers.LocationIn) -> None:
    """One validated report into the buffer, whichever channel it came by; a 503 problem when full."""
    fix = fix_from_report(lat=body.lat, lon=body.lon, accuracy_m=body.accuracy_m, at=body.at)
    try:
        buffer.add(volunteer_id, fix)
    except LocationBufferFull as exc:
        raise _buffer_full() from exc


@api.route(
    "POST",
    "/v1/me/location",
    summary="Report where I am",
    body=volunteers.LocationIn,
    status=202,
    roles=("volunteer",),
)
async def post_location(request: web.Request) -> web.Response:
    """Buffered, not written here: see services.dispatcher.service_layer.locations for the guarantees."""
    volunteer_id = await _volunteer(request)
    body = await parse_body(request, volunteers.LocationIn)
    _take_fix(request.app[LOCATIONS], volunteer_id, body)
    return web.Response(status=202)


# --- the location stream: one WebSocket per app for a whole shift, fixes as text messages
#
# One HTTP request per fix costs a Python process more than the fix itself (parsing, auth, answer),
# so a process cannot absorb the target rate that way; on an open WebSocket a fix costs its JSON and
# validation only. Each message is taken whole or refused whole, in order, so the cumulative
# `{"accepted": N}` acknowledgements and the problem messages (which carry the `accepted` count of
# the moment) tell the app exactly which of its messages were taken.

STREAM_MAX_MESSAGE_BYTES = 64 * 1024  # an offline backlog of several hundred fixes fits
# Bounds what validating one message (and the problem listing its errors) can cost; 40 minutes of
# fixes every 5 s. Only the newest is written anyway: the buffer coalesces.
STREAM_MAX_FIXES_PER_MESSAGE = 500
STREAM_HEARTBEAT_S = 30.0  # a phone that vanished (tunnel, battery) is noticed within 45 s
STREAM_ACK_INTERVAL_S = 0.1  # acknowledgements are cumulative and at most this often
STREAM_CLOSE_S = 5.0  # how long a closing stream may spend on its last ack and close handshake

_FIX_ARRAY: TypeAdapter[list[volunteers.LocationIn]] = TypeAdapter(
    Annotated[list[volunteers.LocationIn], Field(min_length=1, max_length=STREAM_MAX_FIXES_PER_MESSAGE)]
)


class LocationStreams:
    """This process's open location streams, and the message budget per volunteer they share.

    The budget (the same token bucket as HTTP requests, its own buckets) is per volunteer rather
    than per connection, so an app cannot multiply it by opening more connections. A message costs
    one token whatever it holds: its size cap bounds what parsing it costs.
    """

    def __init__(self, *, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.closing = False
        self._open: set[LocationStream] = set()

    def opened(self, stream: LocationStream) -> None:
        self._open.add(stream)

    def closed(self, stream: LocationStream) -> None:
        self._open.discard(stream)

    def __len__(self) -> int:
        return len(self._open)

    async def close(self) -> None:
        """Stopping: every open stream gets its last acknowledgement and a 1001 close, all at once.

        Runs at shutdown before the requests drain, so no handler holds the stop for a whole shift;
        what the streams took is in the buffer, which the flusher writes after the requests drained.
        """
        self.closing = True
        await asyncio.gather(
            *(stream.stop(WSCloseCode.GOING_AWAY, b"server stopping") for stream in list(self._open)),
            return_exceptions=True,
        )


LOCATION_STREAMS = web.AppKey("location_streams", LocationStreams)


class LocationStream:
    """One app's open stream: reads fixes, buffers them, acknowledges them, answers problems.

    Everything happens in the request's own task, the close handshake too: a close started from
    another task while this one waits in `receive()` would drop the connection before the app
    answers it. So `stop` (at shutdown) interrupts the wait and lets this task close.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        volunteer_id: uuid.UUID,
        buffer: LocationBuffer,
        limiter: RateLimiter,
    ) -> None:
        self._ws = ws
        self._volunteer_id = volunteer_id
        self._buffer = buffer
        self._limiter = limiter
        self.accepted = 0
        self._acked = 0
        self._unacked = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._stop: tuple[int, bytes] | None = None
        self._closing = False
        self._done = asyncio.Event()

    async def run(self) -> None:
        """Until the app closes, the connection dies, or `stop`; never raises but (foreign) cancellation."""
        self._task = asyncio.current_task()
        acks = asyncio.create_task(self._send_acks())
        try:
            try:
                code, reason = await self._read()
            except asyncio.CancelledError:
                if self._stop is None:
                    raise  # aiohttp gave up on us (shutdown past its grace): nothing more to say
                if self._task is not None:
                    self._task.uncancel()
                code, reason = self._stop
            finally:
                acks.cancel()
            await self._close(acks, code, reason)
        finally:
            self._done.set()

    async def _read(self) -> tuple[int, bytes]:
        """Take messages until the stream ends; the close code and reason to end it with."""
        ws = self._ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    reply = self.take(msg.data)
                    if reply is not None:
                        await ws.send_str(reply)
                elif msg.type is WSMsgType.BINARY:
                    return WSCloseCode.UNSUPPORTED_DATA, b"fixes are JSON text messages"
                else:
                    # The app closed (CLOSE), or aiohttp closed the connection already: a message over
                    # the size cap (1009), bad UTF-8 (1007), a protocol error, a missed heartbeat.
                    return WSCloseCode.OK, b""
        except ConnectionResetError:
            return WSCloseCode.OK, b""  # the app went away while we answered it
        except Exception:
            log.exception("location_stream.failed", volunteer_id=str(self._volunteer_id))
            return WSCloseCode.INTERNAL_ERROR, b"internal error"

    def take(self, text: str) -> str | None:
        """Buffer a message's fixes, all or none; None when taken, else the problem message to send."""
        wait_s = self._limiter.take(self._volunteer_id, now=time.monotonic())
        if wait_s > 0:
            retry = max(1, math.ceil(wait_s))
            problem = ProblemError(
                429, "Too many requests", "This app is sending messages faster than allowed; slow down."
            )
            return self._problem(problem, retry_after=retry)
        try:
            value = decode_json(text, what="message")
            try:
                reports = (
                    _FIX_ARRAY.validate_python(value)
                    if isinstance(value, list)
                    else [volunteers.LocationIn.model_validate(value)]
                )
            except ValidationError as exc:
                raise validation_problem(exc) from exc
            taken = 0
            try:
                for report in reports:
                    _take_fix(self._buffer, self._volunteer_id, report)
                    taken += 1
            finally:
                # All or none in practice: once a volunteer is buffered, further fixes only replace.
                if taken:
                    self.accepted += taken
                    self._unacked.set()
        except ProblemError as exc:
            return self._problem(exc, retry_after=1 if exc.status == 503 else None)
        return None

    def _problem(self, exc: ProblemError, *, retry_after: int | None) -> str:
        body = problem_body(exc.status, exc.title, exc.detail, errors=exc.errors)
        body["accepted"] = self.accepted
        if retry_after is not None:
            body["retry_after"] = retry_after
        return json.dumps(body)

    async def _send_ack(self) -> None:
        self._acked = self.accepted
        await self._ws.send_str(f'{{"accepted": {self._acked}}}')

    async def _send_acks(self) -> None:
        """Cumulative acknowledgements, at most every STREAM_ACK_INTERVAL_S, while fixes are taken."""
        try:
            while True:
                await self._unacked.wait()
                self._unacked.clear()
                if self.accepted != self._acked:
                    await self._send_ack()
                await asyncio.sleep(STREAM_ACK_INTERVAL_S)
        except ConnectionResetError:
            return  # the connection is gone; the reading side notices too

    async def _close(self, acks: asyncio.Task[None], code: int, reason: bytes) -> None:
        """The last acknowledgement, then the close handshake, within STREAM_CLOSE_S."""
        self._closing = True
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await acks
        ws = self._ws
        try:
            async with asyncio.timeout(STREAM_CLOSE_S):
                if self.accepted != self._acked and not ws.closed:
                    await self._send_ack()
                await ws.close(code=code, message=reason)
        except (TimeoutError, ConnectionResetError):
            pass  # a peer that reads nothing: aiohttp has dropped the connection

    def request_stop(self, code: int, reason: bytes) -> None:
        """Have the stream close with `code`, unless it is closing already; returns at once."""
        if self._stop is None and not self._closing and self._task is not None:
            self._stop = (code, reason)
            self._task.cancel()

    async def stop(self, code: int, reason: bytes) -> None:
        """Have the stream close with `code` (unless it is closing already) and wait until it has."""
        self.request_stop(code, reason)
        await self._done.wait()


@api.route(
    "GET",
    "/v1/me/location/stream",
    summary="Report where I am, continuously: a WebSocket of fixes (operations.md, location stream)",
    status=101,
    roles=("volunteer",),
    errors=(426,),
)
async def location_stream(request: web.Request) -> web.StreamResponse:
    """Authorised like every `/v1/me` route before the upgrade; then fixes as messages until closed.

    Each text message is a `LocationIn` object or a non-empty array of them, validated and buffered
    exactly as `POST /v1/me/location` does (see services.dispatcher.service_layer.locations).
    """
    volunteer_id = await _volunteer(request)
    streams = request.app[LOCATION_STREAMS]
    ws = web.WebSocketResponse(
        heartbeat=STREAM_HEARTBEAT_S,
        max_msg_size=STREAM_MAX_MESSAGE_BYTES,
        # Off: the close handshake waits for the last acknowledgement (see LocationStream.stop).
        autoclose=False,
        # Fixes are tiny: deflate would cost more CPU per message than it saves bytes.
        compress=False,
    )
    if not ws.can_prepare(request).ok:
        raise ProblemError(
            426,
            "Upgrade required",
            "This is a WebSocket: open it with the upgrade handshake (RFC 6455).",
            headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
        )
    if streams.closing:
        raise ProblemError(
            503,
            "Service unavailable",
            "This process is stopping; connect again.",
            headers={"Retry-After": "1"},
        )
    await ws.prepare(request)
    stream = LocationStream(
        ws, volunteer_id=volunteer_id, buffer=request.app[LOCATIONS], limiter=streams.limiter
    )
    streams.opened(stream)
    try:
        async with token_revocation(request) as revoked:

            def close_revoked(task: asyncio.Task[None]) -> None:
                # 1008 (policy violation), after the last acknowledgement of what was taken.
                if not task.cancelled():
                    stream.request_stop(WSCloseCode.POLICY_VIOLATION, b"token revoked")

            revoked.add_done_callback(close_revoked)
            await stream.run()
    finally:
        streams.closed(stream)
    return ws


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
    volunteer_id = await _volunteer(request)
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
                    body = await dispatch.assignments(
                        session=session, volunteer_id=volunteer_id, data_key=runtime.settings.data_key
                    )
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
    summary="Accept an offer (409 once it expired or was withdrawn)",
    response=LegOut,
    roles=("volunteer",),
    errors=(409,),
)
async def post_accept(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    offer_id = path_uuid(request, "offer_id", "offer")
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session, session.begin():
        leg_id = await dispatch.accept_offer(session, offer_id=offer_id, volunteer_id=volunteer_id)
        leg = await dispatch.own_leg(session, leg_id=leg_id, volunteer_id=volunteer_id)
        view = dispatch.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
    return json_response(view)


@api.route(
    "POST",
    "/v1/me/offers/{offer_id}/decline",
    summary="Decline an offer",
    body=DeclineIn,
    response=OfferDeclinedOut,
    roles=("volunteer",),
    errors=(409,),
)
async def post_decline(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    offer_id = path_uuid(request, "offer_id", "offer")
    body = await parse_body(request, DeclineIn) if request.body_exists else DeclineIn()
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await dispatch.decline_offer(
            session, offer_id=offer_id, volunteer_id=volunteer_id, reason=body.reason
        )
    return json_response({"id": str(offer_id), "status": "declined"})


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/picked-up",
    summary="I have picked it up",
    response=LegOut,
    roles=("volunteer",),
    errors=(409,),
)
async def post_picked_up(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session, session.begin():
        leg = await dispatch.report_picked_up(session, leg_id=leg_id, volunteer_id=volunteer_id)
        view = dispatch.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
    return json_response(view)


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/delivered",
    summary="I have delivered it",
    body=DeliveredIn,
    response=LegOut,
    status=202,
    roles=("volunteer",),
    errors=(409,),
)
async def post_delivered(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, DeliveredIn)
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session, session.begin():
        leg = await dispatch.report_delivered(
            session,
            leg_id=leg_id,
            volunteer_id=volunteer_id,
            code_key=runtime.settings.code_key,
            confirmation_code=body.confirmation_code,
            photo_sha256=body.photo_sha256,
            note=body.note,
        )
        view = dispatch.leg_view(leg, assigned=True, data_key=runtime.settings.data_key)
    return json_response(view, status=202)


@api.route(
    "POST",
    "/v1/me/legs/{leg_id}/problem",
    summary="I cannot do this leg: hand it back",
    body=ProblemIn,
    response=LegStatusOut,
    roles=("volunteer",),
    errors=(409,),
)
async def post_problem(request: web.Request) -> web.Response:
    volunteer_id = await _volunteer(request)
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, ProblemIn) if request.body_exists else ProblemIn()
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        leg = await dispatch.report_problem(
            session, leg_id=leg_id, volunteer_id=volunteer_id, reason=body.reason
        )
    return json_response({"id": str(leg.id), "status": leg.status})
