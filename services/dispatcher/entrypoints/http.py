"""The dispatcher's HTTP API: the volunteer registry, and assigning and moving legs by hand, for operators.

`api` carries every route: these, the app's `/v1/me` (`me`) and its location stream
(`location_stream`). `ERROR_STATUSES` says how each domain error is answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from aiohttp import web

from services.dispatcher.adapters.tables import LegRow
from services.dispatcher.domain.errors import (
    DailyCapReached,
    EnrolmentLinkSpent,
    InsuranceLapsed,
    NoPhoneOnRecord,
    RestOwed,
    TokenNoLongerValid,
    VolunteerNotVetted,
    VolunteerOffDuty,
)
from services.dispatcher.entrypoints import enrolment, location_stream, me
from services.dispatcher.entrypoints.api import api, organisation_scope
from services.dispatcher.entrypoints.me import PHOTO_STORES
from services.dispatcher.entrypoints.schemas import (
    AssignedOut,
    AssignIn,
    DecisionIn,
    DecisionOut,
    MoveIn,
    ReleasedOut,
    ReleaseIn,
    VolunteerCreatedOut,
    VolunteerIn,
    VolunteerListQuery,
    VolunteerOut,
    VolunteerPageOut,
    VolunteerPatch,
    VolunteerTokenOut,
    decode_cursor,
    encode_cursor,
    respond,
    volunteer_view,
)
from services.dispatcher.service_layer import decisions, legs, photos, volunteers
from services.dispatcher.service_layer.eta import eta_policy
from services.dispatcher.service_layer.matcher import policy_from
from shared.auth import Role
from shared.errors import COMMON_STATUSES, Answer, DomainError
from shared.http import parse_body, parse_query, path_uuid
from shared.runtime import RUNTIME, authorize

# `me`, `enrolment` and `location_stream` are imported for the routes they register on `api`.
__all__ = ["ERROR_STATUSES", "api", "enrolment", "location_stream", "me"]

# How each of the dispatcher's domain errors is answered; a class not listed answers as its base.
ERROR_STATUSES: dict[type[DomainError], Answer] = {
    **COMMON_STATUSES,
    TokenNoLongerValid: Answer(401, "Unauthorized"),
    RestOwed: Answer(409, "Rest owed"),
    DailyCapReached: Answer(409, "Daily cap reached"),
    VolunteerOffDuty: Answer(409, "Volunteer off duty"),
    InsuranceLapsed: Answer(409, "Insurance lapsed"),
    VolunteerNotVetted: Answer(409, "Volunteer not vetted"),
    EnrolmentLinkSpent: Answer(410, "Enrolment link spent"),
    NoPhoneOnRecord: Answer(409, "No phone on record"),
}


@api.route(
    "POST",
    "/v1/volunteers",
    summary="Register a volunteer",
    body=VolunteerIn,
    response=VolunteerCreatedOut,
    status=201,
    roles=("operator",),
)
async def post_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    body = await parse_body(request, VolunteerIn)
    assert principal.organisation_id is not None
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row, issued = await volunteers.register_volunteer(
            session=session, organisation_id=principal.organisation_id, profile=body.model_dump()
        )
    status = volunteers.welfare_status(row, volunteers.welfare_limits(request.app[RUNTIME].settings))
    created = {**volunteer_view(row, status), "token": issued.token, "token_id": str(issued.id)}
    return respond(VolunteerCreatedOut, created, status=201, headers={"Location": f"/v1/volunteers/{row.id}"})


@api.route(
    "GET",
    "/v1/volunteers",
    summary="List volunteers",
    response=VolunteerPageOut,
    roles=("operator", "ops", "admin"),
    query=VolunteerListQuery,
)
async def list_volunteers(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    query = parse_query(request, VolunteerListQuery)
    after = decode_cursor(query.cursor) if query.cursor else None
    async with request.app[RUNTIME].sessionmaker() as session:
        rows, more = await volunteers.list_volunteers(
            session=session,
            organisation_id=organisation_scope(principal),
            on_duty=None if query.status is None else query.status == "on_duty",
            after=after,
            limit=query.limit,
            insurance_lapses_within_days=query.insurance_lapses_within_days,
            local_time_zone=ZoneInfo(request.app[RUNTIME].settings.local_time_zone),
        )
    limits = volunteers.welfare_limits(request.app[RUNTIME].settings)
    page = {
        "items": [volunteer_view(row, volunteers.welfare_status(row, limits)) for row in rows],
        "next_cursor": encode_cursor(rows[-1]) if more else None,
    }
    return respond(VolunteerPageOut, page)


@api.route(
    "PATCH",
    "/v1/volunteers/{volunteer_id}",
    summary="Change a volunteer",
    body=VolunteerPatch,
    response=VolunteerOut,
    roles=("operator", "admin"),
    errors=(409,),
)
async def patch_volunteer(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.ADMIN)
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    patch = await parse_body(request, VolunteerPatch)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row = await volunteers.update_volunteer(
            session=session,
            volunteer_id=volunteer_id,
            organisation_id=organisation_scope(principal),
            changes=patch.model_dump(exclude_unset=True),
        )
        view = volunteer_view(
            row, volunteers.welfare_status(row, volunteers.welfare_limits(request.app[RUNTIME].settings))
        )
    return respond(VolunteerOut, view)


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
        issued = await volunteers.rotate_token(
            session=session, volunteer_id=volunteer_id, organisation_id=principal.organisation_id
        )
    return respond(VolunteerTokenOut, {"id": str(issued.id), "token": issued.token}, status=201)


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
        view = volunteer_view(
            row, volunteers.welfare_status(row, volunteers.welfare_limits(request.app[RUNTIME].settings))
        )
    return respond(VolunteerOut, view)


@api.route(
    "POST",
    "/v1/legs/{leg_id}/assign",
    summary="Assign a leg by hand (refused for a volunteer off duty, uninsured, owed rest or at a "
    "daily cap, unless overridden with a reason)",
    body=AssignIn,
    response=AssignedOut,
    roles=("operator",),
    errors=(409,),
)
async def post_assign(request: web.Request) -> web.Response:
    return await _give_by_hand(request, AssignIn, legs.assign_by_hand)


async def _give_by_hand(
    request: web.Request, body_type: type[AssignIn | MoveIn], give: Callable[..., Awaitable[LegRow]]
) -> web.Response:
    """Assign or move a leg by hand: the same checks and override, another starting status."""
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, body_type)
    settings = request.app[RUNTIME].settings
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        leg = await give(
            session,
            leg_id=leg_id,
            volunteer_id=body.volunteer_id,
            organisation_id=principal.organisation_id,
            policy=policy_from(settings),
            override_reason=body.override.reason if body.override else None,
            eta=eta_policy(settings),
        )
    return respond(AssignedOut, _assigned_view(leg))


def _assigned_view(leg: LegRow) -> dict[str, str | None]:
    return {
        "id": str(leg.id),
        "task_id": str(leg.task_id),
        "status": str(leg.status),
        "volunteer_id": None if leg.volunteer_id is None else str(leg.volunteer_id),
    }


@api.route(
    "POST",
    "/v1/legs/{leg_id}/move",
    summary="Move an assigned leg, not yet picked up, to another volunteer (checked as a hand assignment)",
    body=MoveIn,
    response=AssignedOut,
    roles=("operator",),
    errors=(409,),
)
async def post_move(request: web.Request) -> web.Response:
    return await _give_by_hand(request, MoveIn, legs.move_leg)


@api.route(
    "POST",
    "/v1/volunteers/{volunteer_id}/legs/release",
    summary="Take every leg a volunteer holds and has not picked up: to another volunteer, or back to "
    "pending; legs already picked up are listed for a decision",
    body=ReleaseIn,
    response=ReleasedOut,
    roles=("operator",),
    errors=(409,),
)
async def post_release_legs(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    body = await parse_body(request, ReleaseIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        released = await legs.release_volunteers_legs(
            session,
            volunteer_id=volunteer_id,
            organisation_id=principal.organisation_id,
            policy=policy_from(request.app[RUNTIME].settings),
            to_volunteer_id=body.to_volunteer_id,
            override_reason=body.override.reason if body.override else None,
            reason=body.reason,
        )
    view = {
        "volunteer_id": str(volunteer_id),
        "legs": [_assigned_view(leg) for leg in released.legs],
        "needs_decision": [
            {"id": str(leg.id), "task_id": str(leg.task_id), "status": str(leg.status)}
            for leg in released.needs_decision
        ],
    }
    return respond(ReleasedOut, view)


@api.route(
    "POST",
    "/v1/legs/{leg_id}/decision",
    summary=(
        "Decide about a leg handed back after pickup (return to pickup, hand over, fail) or a delivery "
        "flagged for wrong codes (confirm by other proof, fail)"
    ),
    body=DecisionIn,
    response=DecisionOut,
    roles=("operator",),
    errors=(409,),
)
async def post_decision(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    leg_id = path_uuid(request, "leg_id", "leg")
    body = await parse_body(request, DecisionIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        leg = await decisions.decide_leg(
            session,
            leg_id=leg_id,
            organisation_id=principal.organisation_id,
            action=body.action,
            volunteer_id=body.volunteer_id,
            note=body.note,
        )
    return respond(
        DecisionOut,
        {
            "id": str(leg.id),
            "task_id": str(leg.task_id),
            "status": str(leg.status),
            "volunteer_id": str(leg.volunteer_id) if leg.volunteer_id is not None else None,
            "pickup": {"lat": leg.pickup_lat, "lon": leg.pickup_lon},
        },
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
    scope = organisation_scope(principal)
    async with request.app[RUNTIME].sessionmaker() as session:
        row = await volunteers.get_volunteer(
            session=session, volunteer_id=volunteer_id, organisation_id=scope
        )
    status = volunteers.welfare_status(row, volunteers.welfare_limits(request.app[RUNTIME].settings))
    return respond(VolunteerOut, volunteer_view(row, status))


@api.route(
    "GET",
    "/v1/legs/{leg_id}/photos/{photo_id}",
    summary="A leg's proof-of-delivery photo, as stored (the task's organisation only)",
    roles=("operator", "ops"),
    raw_response=("image/jpeg", "image/png"),
)
async def get_photo(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS)
    leg_id = path_uuid(request, "leg_id", "leg")
    photo_id = path_uuid(request, "photo_id", "photo")
    async with request.app[RUNTIME].sessionmaker() as session:
        row, data = await photos.read_photo(
            session,
            stores=request.app[PHOTO_STORES],
            leg_id=leg_id,
            photo_id=photo_id,
            organisation_id=organisation_scope(principal),
        )
    return web.Response(
        body=data,
        content_type=row.content_type,
        headers={
            # A recipient's door: kept by no shared cache, nor by the browser once the tab is closed.
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{row.sha256}"',
        },
    )
