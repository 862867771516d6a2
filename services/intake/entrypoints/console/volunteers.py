"""Volunteers: sign-ups to vet, registering one and showing its enrolment QR code, each volunteer's
duty, rest owed, insurance end date (lapsing soon said in words), legs today, and disabling one.

The registry is the dispatcher's: every read and change here is a call to its API as the person
logged in, so it checks their role and organisation and records them as the actor.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from services.intake.entrypoints.console.board import listed_volunteers
from services.intake.entrypoints.console.common import (
    DISPATCHER,
    FieldErrors,
    Staff,
    check_form_csrf,
    field_errors,
    form_whole_number,
    not_found,
    render_console,
    staff_page,
)
from services.intake.entrypoints.pages import CATALOGUE
from shared.auth import Role
from shared.runtime import RUNTIME
from shared.web.i18n import request_language

routes = web.RouteTableDef()

# Insurance that ends within this many days is flagged as lapsing soon.
INSURANCE_WARNING_DAYS = 14
VEHICLES = ("foot", "bicycle", "ebike", "car", "van")
NOTICES = frozenset({"approved", "rejected", "disabled"})
REGISTER_FIELDS = ("name", "phone", "languages", "vehicle", "insured", "insured_until", "max_active_legs")
VETTING_FIELDS = ("identity_checked", "training_done", "insured", "insured_until", "note")


@dataclass(frozen=True)
class VolunteerView:
    """A volunteer as the page shows them, with what needs saying in words."""

    id: str
    name: str
    phone: str | None
    languages: list[str]
    vehicle: str
    vetting_status: str
    on_duty: bool
    deactivated: bool
    rest_owed_until: datetime | None
    limit_reached: str | None
    insured: bool
    insured_until: date | None
    insurance: str  # none, lapsed, lapsing, covered, open_ended
    active_legs: int
    legs_done_today: int
    duty_today_min: int


def insurance_state(insured: bool, until: date | None, today: date) -> str:
    """How the volunteer's cover stands today, in one word the page words in the staff's language."""
    if not insured:
        return "none"
    if until is None:
        return "open_ended"
    if until < today:
        return "lapsed"
    if until <= today + timedelta(days=INSURANCE_WARNING_DAYS):
        return "lapsing"
    return "covered"


def _time(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def view_of(item: dict[str, Any], today: date) -> VolunteerView:
    until = date.fromisoformat(item["insured_until"]) if item.get("insured_until") else None
    rest = _time(item.get("rest_owed_until"))
    return VolunteerView(
        id=str(item["id"]),
        name=str(item["name"]),
        phone=item.get("phone"),
        languages=list(item.get("languages") or []),
        vehicle=str(item.get("vehicle") or "foot"),
        vetting_status=str(item.get("vetting_status") or "approved"),
        on_duty=bool(item.get("on_duty")),
        deactivated=item.get("deactivated_at") is not None,
        rest_owed_until=rest if rest is not None and rest > datetime.now(UTC) else None,
        limit_reached=item.get("limit_reached"),
        insured=bool(item.get("insured")),
        insured_until=until,
        insurance=insurance_state(bool(item.get("insured")), until, today),
        active_legs=int(item.get("active_legs") or 0),
        legs_done_today=int(item.get("legs_done_today") or 0),
        duty_today_min=round(float(item.get("duty_today_s") or 0) / 60),
    )


def _today(request: web.Request) -> date:
    return datetime.now(ZoneInfo(request.app[RUNTIME].settings.local_time_zone)).date()


async def _all_volunteers(
    request: web.Request, staff: Staff
) -> tuple[list[VolunteerView], dict[str, Any] | None]:
    items, problem = await listed_volunteers(request, staff)
    today = _today(request)
    return [view_of(item, today) for item in items], problem


async def _render(
    request: web.Request,
    staff: Staff,
    *,
    notice: str | None = None,
    errors: FieldErrors | None = None,
    form: dict[str, str] | None = None,
    vetting_of: str | None = None,
    status: int = 200,
) -> web.Response:
    volunteers, problem = await _all_volunteers(request, staff)
    context = {
        "signups": [v for v in volunteers if v.vetting_status == "pending" and not v.deactivated],
        "volunteers": [v for v in volunteers if v.vetting_status != "pending" or v.deactivated],
        "problem": problem,
        "notice": notice,
        "errors": errors or FieldErrors(),
        "form": form or {},
        "vetting_of": vetting_of,
        "vehicle_choices": [
            (vehicle, CATALOGUE.text(request_language(request), f"vol.vehicle.{vehicle}"))
            for vehicle in VEHICLES
        ],
        "warning_days": INSURANCE_WARNING_DAYS,
    }
    return await render_console(request, "console/volunteers.html", staff, context, status=status)


@routes.get("/console/volunteers")
async def volunteers_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR, Role.OPS)
    notice = request.query.get("notice")
    return await _render(request, staff, notice=notice if notice in NOTICES else None)


def _checked(form: Any, name: str) -> bool:
    return form.get(name) in ("on", "true", "yes", "1")


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _problem_status(problem: dict[str, Any]) -> int:
    status = int(problem.get("status") or 502)
    return status if 400 <= status < 500 else 502


@routes.post("/console/volunteers")
async def register_volunteer(request: web.Request) -> web.Response:
    """Register a volunteer, then show the QR code their phone enrols with."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    values = {name: _text(form, name) for name in REGISTER_FIELDS}
    body: dict[str, Any] = {
        "name": values["name"],
        "vehicle": values["vehicle"] or "foot",
        "insured": _checked(form, "insured"),
    }
    if values["phone"]:
        body["phone"] = values["phone"]
    if values["languages"]:
        body["languages"] = [
            part.strip() for part in values["languages"].replace("，", ",").split(",") if part.strip()
        ]
    if values["insured_until"]:
        body["insured_until"] = values["insured_until"]
        body["insured"] = True
    if values["max_active_legs"]:
        number = form_whole_number(values["max_active_legs"], digits=9)
        body["max_active_legs"] = values["max_active_legs"] if number is None else number
    answer = await request.app[DISPATCHER].call(request, staff, "POST", "/v1/volunteers", json_body=body)
    if not answer.ok:
        errors = field_errors(answer.problem, request_language(request), known_fields=REGISTER_FIELDS)
        return await _render(
            request, staff, errors=errors, form=values, status=_problem_status(answer.problem)
        )
    return await _enrolment(request, staff, answer.body["id"], answer.body["name"], registered=True)


async def _enrolment(
    request: web.Request, staff: Staff, volunteer_id: str, name: str, *, registered: bool
) -> web.Response:
    """A fresh one-time enrolment link and its QR code, shown once (the page is never stored)."""
    client = request.app[DISPATCHER]
    issued = await client.call(request, staff, "POST", f"/v1/volunteers/{volunteer_id}/enrolment")
    if issued.status == 404:
        raise not_found(request, staff)
    qr = None
    if issued.ok:
        image = await client.call(request, staff, "GET", issued.body["qr_svg_url"])
        if image.ok and image.data:
            qr = "data:image/svg+xml;base64," + base64.b64encode(image.data).decode()
    context = {
        "volunteer_id": volunteer_id,
        "name": name,
        "registered": registered,
        "link": issued.body.get("link") if issued.ok else None,
        "expires_at": _time(issued.body.get("expires_at")) if issued.ok else None,
        "qr": qr,
        "problem": None if issued.ok else issued.problem,
    }
    return await render_console(
        request,
        "console/volunteer_enrolment.html",
        staff,
        context,
        status=201 if issued.ok else _problem_status(issued.problem),
    )


def _volunteer_id(request: web.Request, staff: Staff) -> str:
    try:
        return str(uuid.UUID(request.match_info["volunteer_id"]))
    except ValueError:
        raise not_found(request, staff) from None


@routes.post("/console/volunteers/{volunteer_id}/enrolment")
async def new_enrolment(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    volunteer_id = _volunteer_id(request, staff)
    found = await request.app[DISPATCHER].call(request, staff, "GET", f"/v1/volunteers/{volunteer_id}")
    if not found.ok:
        raise not_found(request, staff)
    return await _enrolment(request, staff, volunteer_id, found.body["name"], registered=False)


@routes.post("/console/volunteers/{volunteer_id}/vetting")
async def vet(request: web.Request) -> web.Response:
    """Approve or reject a sign-up, recording what was checked (the vetting record)."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    volunteer_id = _volunteer_id(request, staff)
    decision = _text(form, "decision")
    body: dict[str, Any] = {
        "identity_checked": _checked(form, "identity_checked"),
        "training_done": _checked(form, "training_done"),
        "insured": _checked(form, "insured") or bool(_text(form, "insured_until")),
        "decision": decision,
    }
    if _text(form, "insured_until"):
        body["insured_until"] = _text(form, "insured_until")
    if _text(form, "note"):
        body["note"] = _text(form, "note")
    answer = await request.app[DISPATCHER].call(
        request, staff, "POST", f"/v1/volunteers/{volunteer_id}/vetting", json_body=body
    )
    if answer.status == 404:
        raise not_found(request, staff)
    if not answer.ok:
        errors = field_errors(answer.problem, request_language(request), known_fields=VETTING_FIELDS)
        values = {name: _text(form, name) for name in VETTING_FIELDS}
        return await _render(
            request,
            staff,
            errors=errors,
            form=values,
            vetting_of=volunteer_id,
            status=_problem_status(answer.problem),
        )
    raise web.HTTPSeeOther(
        f"/console/volunteers?notice={'approved' if decision == 'approve' else 'rejected'}"
    )


@routes.post("/console/volunteers/{volunteer_id}/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    """Disable a volunteer: their app stops working and the legs they had not picked up go back."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    volunteer_id = _volunteer_id(request, staff)
    answer = await request.app[DISPATCHER].call(
        request, staff, "POST", f"/v1/volunteers/{volunteer_id}/deactivate"
    )
    if answer.status == 404:
        raise not_found(request, staff)
    if not answer.ok:
        errors = field_errors(answer.problem, request_language(request))
        return await _render(request, staff, errors=errors, status=_problem_status(answer.problem))
    raise web.HTTPSeeOther("/console/volunteers?notice=disabled")
