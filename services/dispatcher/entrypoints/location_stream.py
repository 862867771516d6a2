"""The location stream: one WebSocket per app for a whole shift, fixes as text messages.

One HTTP request per fix costs a Python process more than the fix itself (parsing, auth, answer),
so a process cannot absorb the target rate that way; on an open WebSocket a fix costs its JSON and
validation only. Each message is taken whole or refused whole, in order, so the cumulative
`{"accepted": N}` acknowledgements and the problem messages (which carry the `accepted` count of
the moment) tell the app exactly which of its messages were taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from typing import Annotated, Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict
from pydantic import Field, TypeAdapter, ValidationError

from services.dispatcher.entrypoints.api import acting_volunteer, api
from services.dispatcher.entrypoints.schemas import LocationIn
from services.dispatcher.service_layer.locations import LocationBuffer, LocationBufferFull, fix_from_report
from shared.auth import RateLimiter
from shared.http import ProblemError, decode_json, problem_body, validation_problem
from shared.runtime import token_revocation

log = structlog.get_logger(__name__)

LOCATIONS = web.AppKey("locations", LocationBuffer)


def _buffer_full() -> ProblemError:
    return ProblemError(
        503,
        "Service unavailable",
        "Too many location reports are waiting to be written; send this one again shortly.",
        headers={"Retry-After": "1"},
    )


def take_fix(buffer: LocationBuffer, volunteer_id: uuid.UUID, body: LocationIn) -> None:
    """One validated report into the buffer, whichever channel it came by; a 503 problem when full."""
    fix = fix_from_report(lat=body.lat, lon=body.lon, accuracy_m=body.accuracy_m, at=body.at)
    try:
        buffer.add(volunteer_id, fix)
    except LocationBufferFull as exc:
        raise _buffer_full() from exc


STREAM_MAX_MESSAGE_BYTES = 64 * 1024  # an offline backlog of several hundred fixes fits
# Bounds what validating one message (and the problem listing its errors) can cost; 40 minutes of
# fixes every 5 s. Only the newest is written anyway: the buffer coalesces.
STREAM_MAX_FIXES_PER_MESSAGE = 500
STREAM_HEARTBEAT_S = 30.0  # a phone that vanished (tunnel, battery) is noticed within 45 s
STREAM_ACK_INTERVAL_S = 0.1  # acknowledgements are cumulative and at most this often
STREAM_CLOSE_S = 5.0  # how long a closing stream may spend on its last ack and close handshake

_FIX_ARRAY: TypeAdapter[list[LocationIn]] = TypeAdapter(
    Annotated[list[LocationIn], Field(min_length=1, max_length=STREAM_MAX_FIXES_PER_MESSAGE)]
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

# A browser cannot set `Authorization` on a WebSocket handshake, but it can offer subprotocols: the
# app offers `["errands.v1", "bearer.<token>"]` and the server picks (echoes) `errands.v1` only, so
# the token is never sent back, and never in a URL (addresses end up in logs and histories).
STREAM_PROTOCOL = "errands.v1"
BEARER_PROTOCOL_PREFIX = "bearer."


def _protocol_authorised(request: web.Request) -> web.Request:
    """The request as `authorize` reads it: a token offered as a subprotocol becomes its bearer header.

    An `Authorization` header, when sent, wins. A token offered without `errands.v1`, or two tokens,
    is a 401: the browser would fail a handshake whose subprotocol the server does not echo anyway.
    """
    if "Authorization" in request.headers:
        return request
    offered = [
        value.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", [])
        for value in header.split(",")
    ]
    tokens = [
        value[len(BEARER_PROTOCOL_PREFIX) :] for value in offered if value.startswith(BEARER_PROTOCOL_PREFIX)
    ]
    if not tokens:
        return request
    if len(tokens) > 1 or STREAM_PROTOCOL not in offered:
        raise ProblemError(
            401,
            "Unauthorized",
            f"Offer the subprotocols `{STREAM_PROTOCOL}` and one `{BEARER_PROTOCOL_PREFIX}<token>`.",
        )
    headers = CIMultiDict(request.headers)
    headers["Authorization"] = f"Bearer {tokens[0]}"
    return request.clone(headers=headers)


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
                    else [LocationIn.model_validate(value)]
                )
            except ValidationError as exc:
                raise validation_problem(exc) from exc
            taken = 0
            try:
                for report in reports:
                    take_fix(self._buffer, self._volunteer_id, report)
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

    The token comes in `Authorization`, or, from a browser, as the subprotocol `bearer.<token>`
    beside `errands.v1` (which the answer names in `Sec-WebSocket-Protocol`).

    Each text message is a `LocationIn` object or a non-empty array of them, validated and buffered
    exactly as `POST /v1/me/location` does (see services.dispatcher.service_layer.locations).
    """
    authorised = _protocol_authorised(request)
    volunteer_id = await acting_volunteer(authorised)
    streams = request.app[LOCATION_STREAMS]
    ws = web.WebSocketResponse(
        heartbeat=STREAM_HEARTBEAT_S,
        max_msg_size=STREAM_MAX_MESSAGE_BYTES,
        # Off: the close handshake waits for the last acknowledgement (see LocationStream.stop).
        autoclose=False,
        # Fixes are tiny: deflate would cost more CPU per message than it saves bytes.
        compress=False,
        protocols=(STREAM_PROTOCOL,),
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
        async with token_revocation(authorised) as revoked:

            def close_revoked(task: asyncio.Task[None]) -> None:
                # 1008 (policy violation), after the last acknowledgement of what was taken.
                if not task.cancelled():
                    stream.request_stop(WSCloseCode.POLICY_VIOLATION, b"token revoked")

            revoked.add_done_callback(close_revoked)
            await stream.run()
    finally:
        streams.closed(stream)
    return ws
