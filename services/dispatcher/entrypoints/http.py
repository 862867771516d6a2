"""Dispatcher's HTTP API: the volunteer registry for operators and the `/v1/me` app API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.dispatcher.adapters.wakeups import VolunteerWakeups
from services.dispatcher.service_layer import dispatch, volunteers
from services.dispatcher.service_layer.locations import LocationBuffer, LocationBufferFull, fix_from_report
from shared.auth import Principal, Role
from shared.http import Api, ProblemError, StorableModel, json_response, parse_body, parse_query, path_uuid
from shared.runtime import RUNTIME, authorize

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


class DeliveredIn(StorableModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
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


class VolunteerCreatedOut(VolunteerOut):
    token: str = Field(description="The volunteer app's token, shown this once.")


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
    fix = fix_from_report(lat=body.lat, lon=body.lon, accuracy_m=body.accuracy_m, at=body.at)
    try:
        request.app[LOCATIONS].add(volunteer_id, fix)
    except LocationBufferFull as exc:
        raise ProblemError(
            503,
            "Service unavailable",
            "Too many location reports are waiting to be written; send this one again shortly.",
            headers={"Retry-After": "1"},
        ) from exc
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
    volunteer_id = await _volunteer(request)
    wait = parse_query(request, WaitQuery).wait
    runtime = request.app[RUNTIME]
    known = request.headers.get("If-None-Match")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, runtime.settings.long_poll_max_wait_s)
    wakeups = request.app[WAKEUPS]
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=remaining)
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
