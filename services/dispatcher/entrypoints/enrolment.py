"""Routes of volunteer enrolment and vetting: one-time links and their QR codes, the phone's
exchange, devices, invite codes and sign-ups, and the operator's vetting."""

from __future__ import annotations

from aiohttp import web

from services.dispatcher.entrypoints.api import acting_volunteer, api, organisation_scope
from services.dispatcher.entrypoints.schemas import (
    DeviceListOut,
    EnrolmentExchangeOut,
    EnrolmentOut,
    InviteCodeIn,
    InviteCodeOut,
    SignupIn,
    SignupOut,
    VettingIn,
    VettingOut,
    VolunteerOut,
    respond,
    volunteer_view,
)
from services.dispatcher.service_layer import enrolment, volunteers
from shared.auth import Role
from shared.http import parse_body, path_uuid
from shared.runtime import RUNTIME, authorize

QR_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _vetting_view(row: object, records: object) -> dict[str, object]:
    return {
        "volunteer_id": str(row.id),  # type: ignore[attr-defined]
        "vetting_status": row.vetting_status,  # type: ignore[attr-defined]
        "records": [
            {
                "id": str(r.id),
                "checked_by": r.checked_by,
                "identity_checked": r.identity_checked,
                "insured_until": r.insured_until.isoformat() if r.insured_until else None,
                "training_done": r.training_done,
                "decision": r.decision,
                "note": r.note,
                "at": r.at.isoformat(),
            }
            for r in records  # type: ignore[attr-defined]
        ],
    }


@api.route(
    "POST",
    "/v1/volunteers/{volunteer_id}/enrolment",
    summary="A one-time enrolment link for one more of the volunteer's devices, and its QR code",
    response=EnrolmentOut,
    status=201,
    roles=("operator",),
    errors=(409,),
)
async def post_enrolment(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    settings = request.app[RUNTIME].settings
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        issued = await enrolment.issue_enrolment_link(
            session=session,
            volunteer_id=volunteer_id,
            organisation_id=principal.organisation_id,
            ttl_s=settings.enrolment_link_ttl_s,
            base_url=settings.enrolment_url,
        )
    qr = f"/v1/volunteers/{volunteer_id}/enrolment/{issued.token}/qr"
    body = {
        "link": issued.link,
        "expires_at": issued.expires_at.isoformat(),
        "qr_png_url": f"{qr}.png",
        "qr_svg_url": f"{qr}.svg",
    }
    return respond(EnrolmentOut, body, status=201)


async def _qr(request: web.Request, kind: str) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    async with request.app[RUNTIME].sessionmaker() as session:
        data = await enrolment.enrolment_qr(
            session=session,
            volunteer_id=volunteer_id,
            organisation_id=principal.organisation_id,
            token=request.match_info["token"],
            base_url=request.app[RUNTIME].settings.enrolment_url,
            kind=kind,
        )
    return web.Response(
        body=data, content_type=QR_TYPES[kind], headers={"Cache-Control": "private, no-store"}
    )


@api.route(
    "GET",
    "/v1/volunteers/{volunteer_id}/enrolment/{token}/qr.png",
    summary="A live enrolment link as a QR code, PNG",
    roles=("operator",),
    raw_response=("image/png",),
    errors=(410,),
)
async def get_enrolment_png(request: web.Request) -> web.Response:
    return await _qr(request, "png")


@api.route(
    "GET",
    "/v1/volunteers/{volunteer_id}/enrolment/{token}/qr.svg",
    summary="A live enrolment link as a QR code, SVG",
    roles=("operator",),
    raw_response=("image/svg+xml",),
    errors=(410,),
)
async def get_enrolment_svg(request: web.Request) -> web.Response:
    return await _qr(request, "svg")


@api.route(
    "POST",
    "/v1/enrolments/{token}",
    summary="The phone exchanges a one-time enrolment link for its device token (once, before it expires)",
    response=EnrolmentExchangeOut,
    status=201,
    errors=(404, 410),
)
async def post_enrolment_exchange(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        volunteer_id, issued = await enrolment.exchange_enrolment_link(
            session=session, token=request.match_info["token"]
        )
    body = {"volunteer_id": str(volunteer_id), "volunteer_token": issued.token, "device_id": str(issued.id)}
    return respond(EnrolmentExchangeOut, body, status=201)


@api.route(
    "GET",
    "/v1/me",
    summary="My own record: duty, welfare, and whether an operator approved me yet",
    response=VolunteerOut,
    roles=("volunteer",),
)
async def get_me(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.VOLUNTEER)
    assert principal.volunteer_id is not None
    async with request.app[RUNTIME].sessionmaker() as session:
        row = await volunteers.get_volunteer(
            session=session, volunteer_id=principal.volunteer_id, organisation_id=principal.organisation_id
        )
    status = volunteers.welfare_status(row, volunteers.welfare_limits(request.app[RUNTIME].settings))
    return respond(VolunteerOut, volunteer_view(row, status))


@api.route(
    "GET", "/v1/me/devices", summary="My devices' tokens", response=DeviceListOut, roles=("volunteer",)
)
async def get_my_devices(request: web.Request) -> web.Response:
    volunteer_id = await acting_volunteer(request)
    async with request.app[RUNTIME].sessionmaker() as session:
        rows = await enrolment.devices(session=session, volunteer_id=volunteer_id)
    items = [
        {
            "id": str(r.id),
            "created_at": r.created_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in rows
    ]
    return respond(DeviceListOut, {"items": items})


@api.route(
    "DELETE",
    "/v1/me/devices/{device_id}",
    summary="Revoke one of my devices",
    status=204,
    roles=("volunteer",),
)
async def delete_my_device(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.VOLUNTEER)
    assert principal.volunteer_id is not None
    device_id = path_uuid(request, "device_id", "device")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await enrolment.revoke_device(
            session=session,
            volunteer_id=principal.volunteer_id,
            organisation_id=principal.organisation_id,
            device_id=device_id,
        )
    return web.Response(status=204)


@api.route(
    "POST",
    "/v1/invite-codes",
    summary="A new invite code volunteers of the organisation sign up with",
    body=InviteCodeIn,
    response=InviteCodeOut,
    status=201,
    roles=("operator",),
)
async def post_invite_code(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    body = await parse_body(request, InviteCodeIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row, code = await enrolment.create_invite_code(
            session=session, organisation_id=principal.organisation_id, valid_for_s=body.valid_for_s
        )
    out = {
        "id": str(row.id),
        "code": code,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }
    return respond(InviteCodeOut, out, status=201)


@api.route(
    "POST",
    "/v1/signups",
    summary="A volunteer signs up with an invite code: pending, no offers, until an operator approves",
    body=SignupIn,
    response=SignupOut,
    status=201,
    errors=(404,),
)
async def post_signup(request: web.Request) -> web.Response:
    body = await parse_body(request, SignupIn)
    profile = body.model_dump(exclude={"invite_code"})
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row, issued = await enrolment.sign_up(session=session, invite_code=body.invite_code, profile=profile)
    out = {
        "volunteer_id": str(row.id),
        "vetting_status": row.vetting_status,
        "volunteer_token": issued.token,
        "device_id": str(issued.id),
    }
    return respond(SignupOut, out, status=201)


@api.route(
    "POST",
    "/v1/volunteers/{volunteer_id}/vetting",
    summary="Record a vetting (identity, insurance, training) and approve or reject the volunteer",
    body=VettingIn,
    response=VettingOut,
    roles=("operator",),
    errors=(409,),
)
async def post_vetting(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    body = await parse_body(request, VettingIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        row, records = await enrolment.vet(
            session=session,
            volunteer_id=volunteer_id,
            organisation_id=principal.organisation_id,
            identity_checked=body.identity_checked,
            insured=body.insured,
            insured_until=body.insured_until,
            training_done=body.training_done,
            decision=body.decision,
            note=body.note,
        )
        view = _vetting_view(row, records)
    return respond(VettingOut, view)


@api.route(
    "GET",
    "/v1/volunteers/{volunteer_id}/vetting",
    summary="A volunteer's vetting status and every record of it: who checked what, and when",
    response=VettingOut,
    roles=("operator", "ops", "admin"),
)
async def get_vetting(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    volunteer_id = path_uuid(request, "volunteer_id", "volunteer")
    async with request.app[RUNTIME].sessionmaker() as session:
        row, records = await enrolment.vetting_of(
            session=session, volunteer_id=volunteer_id, organisation_id=organisation_scope(principal)
        )
        view = _vetting_view(row, records)
    return respond(VettingOut, view)
