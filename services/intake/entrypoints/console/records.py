"""The centre's records in the console: the register of people served (search, add, edit, consent,
erase), saved places, and recurring deliveries with a preview of their next occurrences.

Each form is read into the API's own body model and handed to the same service-layer functions the
API's routes call, so a form and a request refuse the same things in the same words (by field).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from services.intake.entrypoints.console.common import (
    FieldErrors,
    Staff,
    check_form_csrf,
    field_errors,
    not_found,
    render_console,
    staff_page,
)
from services.intake.entrypoints.http import REGISTER
from services.intake.entrypoints.pages import CATALOGUE
from services.intake.entrypoints.schemas import (
    PlaceIn,
    PlaceListQuery,
    RecipientIn,
    RecipientListQuery,
    RecipientPatchIn,
    ScheduleIn,
    ScheduleListQuery,
)
from services.intake.service_layer import register, schedules
from shared.auth import Role
from shared.errors import COMMON_STATUSES, DomainError, answer_for
from shared.http.problems import validation_problem
from shared.runtime import RUNTIME
from shared.web.i18n import request_language

routes = web.RouteTableDef()

M = TypeVar("M", bound=BaseModel)

LANGUAGES = ("zh", "en", "ko", "ja", "yue", "wuu")
PLACE_KINDS = ("kitchen", "depot", "checkpoint", "hospital", "shelter", "other")
TASK_KINDS = ("meal", "errand", "supply_run")
PRIORITIES = ("routine", "urgent", "critical")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
RECIPIENT_FIELDS = (
    "name",
    "phone",
    "email",
    "language",
    "address",
    "lat",
    "lon",
    "vulnerable",
    "no_contact",
    "access_notes",
    "consent",
    "consent_given_by",
)
PLACE_FIELDS = (
    "name",
    "kind",
    "address",
    "lat",
    "lon",
    "contact_name",
    "contact_phone",
    "opening_hours",
    "notes",
)
SCHEDULE_FIELDS = ("name", "days", "time", "start_date", "place_id", "recipient_id", "kind", "priority")
NOTICES = frozenset({"added", "saved", "erased", "archived", "paused", "resumed", "ended"})


class FormRefused(Exception):
    """A form the API's rules refuse: the problem, as the API would answer it."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail"))
        self.problem = problem


def _problem_of_domain(error: DomainError) -> dict[str, Any]:
    answer = answer_for(error, COMMON_STATUSES)
    return {"status": answer.status if answer else 422, "detail": error.message, "errors": error.errors or []}


def _validated(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        refusal = validation_problem(exc)
        raise FormRefused({"status": 422, "detail": refusal.detail, "errors": refusal.errors or []}) from exc


def _text(form: MultiMapping[Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _number(text: str) -> Any:
    """A coordinate as typed: a number when it reads as one, else the text (the model names the field)."""
    try:
        return float(text)
    except ValueError:
        return text


def _values(form: MultiMapping[Any], names: tuple[str, ...]) -> dict[str, str]:
    return {name: _text(form, name) for name in names}


def _errors(request: web.Request, problem: dict[str, Any], fields: tuple[str, ...]) -> FieldErrors:
    return field_errors(problem, request_language(request), known_fields=fields)


def _status(problem: dict[str, Any]) -> int:
    status = int(problem.get("status") or 422)
    return status if 400 <= status < 500 else 422


def _id(request: web.Request, staff: Staff, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise not_found(request, staff) from None


def _notice(request: web.Request) -> str | None:
    notice = request.query.get("notice")
    return notice if notice in NOTICES else None


def _choices(request: web.Request, prefix: str, values: tuple[str, ...]) -> list[tuple[str, str]]:
    """(value, text) pairs for a select: each value worded from the catalogue in the staff's language."""
    lang = request_language(request)
    return [(value, CATALOGUE.text(lang, prefix + value)) for value in values]


def _language_choices(request: web.Request) -> list[tuple[str, str]]:
    return _choices(request, "rec.lang.", LANGUAGES)


async def _form(request: web.Request, staff: Staff) -> MultiMapping[Any]:
    form = await request.post()
    check_form_csrf(request, form, staff)
    return form


# --- recipients ----------------------------------------------------------------------------------------


def _recipient_body(values: dict[str, str], form: MultiMapping[Any], *, patch: bool) -> dict[str, Any]:
    """The API body a recipient form stands for; empty optional fields are left out (a patch clears them)."""
    body: dict[str, Any] = {
        "name": values["name"],
        "language": values["language"] or "zh",
        "vulnerable": form.get("vulnerable") == "on",
        "no_contact": form.get("no_contact") == "on",
    }
    for name in ("phone", "email", "address", "access_notes", "consent_given_by"):
        if values[name] or patch:
            body[name] = values[name] or None
    if values["lat"] or values["lon"]:
        body["lat"], body["lon"] = _number(values["lat"]), _number(values["lon"])
    return body


async def _recipients_page(
    request: web.Request,
    staff: Staff,
    *,
    errors: FieldErrors | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    query_text = request.query.get("q", "").strip()[:200]
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await register.list_recipients(
            session=session,
            organisation_id=staff.organisation_id,
            query=RecipientListQuery(q=query_text or None, limit=50),
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    context = {
        "q": query_text,
        "recipients": page["items"],
        "more": page["has_more"],
        "errors": errors or FieldErrors(),
        "form": form or {},
        "languages": LANGUAGES,
        "language_choices": _language_choices(request),
        "notice": _notice(request),
    }
    return await render_console(request, "console/records_recipients.html", staff, context, status=status)


@routes.get("/console/recipients")
async def recipients_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    return await _recipients_page(request, staff)


@routes.post("/console/recipients")
async def add_recipient(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    form = await _form(request, staff)
    values = _values(form, RECIPIENT_FIELDS)
    body = _recipient_body(values, form, patch=False)
    if form.get("consent") == "on":
        body["consent_given_at"] = datetime.now(UTC).isoformat()
    settings = request.app[REGISTER]
    try:
        model = _validated(RecipientIn, body)
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            created = await register.create_recipient(
                session=session,
                organisation_id=staff.organisation_id,
                body=model,
                keys=settings.keys,
                geocoder=settings.geocoder,
                retention_s=settings.retention_s,
            )
    except FormRefused as refused:
        errors = _errors(request, refused.problem, RECIPIENT_FIELDS)
        return await _recipients_page(
            request, staff, errors=errors, form=values, status=_status(refused.problem)
        )
    except DomainError as error:
        problem = _problem_of_domain(error)
        errors = _errors(request, problem, RECIPIENT_FIELDS)
        return await _recipients_page(request, staff, errors=errors, form=values, status=_status(problem))
    raise web.HTTPSeeOther(f"/console/recipients/{created['id']}?notice=added")


async def _recipient_page(
    request: web.Request,
    staff: Staff,
    recipient_id: uuid.UUID,
    *,
    errors: FieldErrors | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    settings = request.app[REGISTER]
    try:
        async with request.app[RUNTIME].sessionmaker() as session:
            found = await register.get_recipient(
                session=session,
                organisation_id=staff.organisation_id,
                recipient_id=recipient_id,
                keys=settings.keys,
                retention_s=settings.retention_s,
            )
    except DomainError:
        raise not_found(request, staff) from None
    shown = form or {
        name: "" if found.get(name) is None else str(found[name])
        for name in RECIPIENT_FIELDS
        if name not in ("vulnerable", "no_contact", "consent")
    } | {
        "vulnerable": "on" if found["vulnerable"] else "",
        "no_contact": "on" if found["no_contact"] else "",
        "consent": "on" if found["consent_given_at"] else "",
    }
    context = {
        "recipient": found,
        "errors": errors or FieldErrors(),
        "form": shown,
        "languages": LANGUAGES,
        "language_choices": _language_choices(request),
        "notice": _notice(request),
    }
    return await render_console(request, "console/records_recipient.html", staff, context, status=status)


@routes.get("/console/recipients/{recipient_id}")
async def recipient_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    return await _recipient_page(request, staff, _id(request, staff, "recipient_id"))


@routes.post("/console/recipients/{recipient_id}")
async def edit_recipient(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    recipient_id = _id(request, staff, "recipient_id")
    form = await _form(request, staff)
    values = _values(form, RECIPIENT_FIELDS)
    body = _recipient_body(values, form, patch=True)
    if form.get("consent") == "on" and form.get("consent_before") != "on":
        body["consent_given_at"] = datetime.now(UTC).isoformat()
    elif form.get("consent") != "on":
        body["consent_given_at"] = None
    settings = request.app[REGISTER]
    try:
        model = _validated(RecipientPatchIn, body)
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await register.update_recipient(
                session=session,
                organisation_id=staff.organisation_id,
                recipient_id=recipient_id,
                body=model,
                keys=settings.keys,
                geocoder=settings.geocoder,
                retention_s=settings.retention_s,
            )
    except FormRefused as refused:
        errors = _errors(request, refused.problem, RECIPIENT_FIELDS)
        return await _recipient_page(request, staff, recipient_id, errors=errors, form=values, status=422)
    except DomainError as error:
        problem = _problem_of_domain(error)
        if problem["status"] == 404:
            raise not_found(request, staff) from None
        errors = _errors(request, problem, RECIPIENT_FIELDS)
        return await _recipient_page(
            request, staff, recipient_id, errors=errors, form=values, status=_status(problem)
        )
    raise web.HTTPSeeOther(f"/console/recipients/{recipient_id}?notice=saved")


@routes.post("/console/recipients/{recipient_id}/erase")
async def erase_recipient(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    recipient_id = _id(request, staff, "recipient_id")
    await _form(request, staff)
    try:
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await register.erase_recipient(
                session=session, organisation_id=staff.organisation_id, recipient_id=recipient_id
            )
    except DomainError:
        raise not_found(request, staff) from None
    raise web.HTTPSeeOther("/console/recipients?notice=erased")


# --- places ----------------------------------------------------------------------------------------------


async def _places_page(
    request: web.Request,
    staff: Staff,
    *,
    errors: FieldErrors | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await register.list_places(
            session=session, organisation_id=staff.organisation_id, query=PlaceListQuery(limit=200)
        )
    context = {
        "places": page["items"],
        "errors": errors or FieldErrors(),
        "form": form or {},
        "kind_choices": _choices(request, "place.kind.", PLACE_KINDS),
        "notice": _notice(request),
    }
    return await render_console(request, "console/records_places.html", staff, context, status=status)


@routes.get("/console/places")
async def places_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    return await _places_page(request, staff)


@routes.post("/console/places")
async def add_place(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    form = await _form(request, staff)
    values = _values(form, PLACE_FIELDS)
    body: dict[str, Any] = {"name": values["name"], "kind": values["kind"] or "other"}
    for name in ("address", "contact_name", "contact_phone", "opening_hours", "notes"):
        if values[name]:
            body[name] = values[name]
    if values["lat"] or values["lon"]:
        body["lat"], body["lon"] = _number(values["lat"]), _number(values["lon"])
    try:
        model = _validated(PlaceIn, body)
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await register.create_place(
                session=session,
                organisation_id=staff.organisation_id,
                body=model,
                geocoder=request.app[REGISTER].geocoder,
            )
    except FormRefused as refused:
        errors = _errors(request, refused.problem, PLACE_FIELDS)
        return await _places_page(request, staff, errors=errors, form=values, status=422)
    except DomainError as error:
        problem = _problem_of_domain(error)
        return await _places_page(
            request,
            staff,
            errors=_errors(request, problem, PLACE_FIELDS),
            form=values,
            status=_status(problem),
        )
    raise web.HTTPSeeOther("/console/places?notice=added")


@routes.post("/console/places/{place_id}/archive")
async def archive_place(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    place_id = _id(request, staff, "place_id")
    await _form(request, staff)
    try:
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await register.archive_place(
                session=session, organisation_id=staff.organisation_id, place_id=place_id
            )
    except DomainError:
        raise not_found(request, staff) from None
    raise web.HTTPSeeOther("/console/places?notice=archived")


# --- recurring deliveries ---------------------------------------------------------------------------


def _schedule_body(form: MultiMapping[Any], values: dict[str, str]) -> dict[str, Any]:
    """A weekly schedule from the form: days of the week at a time of day, from a start date; the
    pickup a saved place, the drop-off a recipient of the register (or a place)."""
    days = [day for day in form.getall("days", []) if day in WEEKDAYS]
    rule = "FREQ=WEEKLY" + (f";BYDAY={','.join(days)}" if days else "")
    dropoff: dict[str, Any] = {}
    target = values["recipient_id"]
    if target.startswith("place:"):
        dropoff["place_id"] = target.removeprefix("place:")
    elif target:
        dropoff["recipient_id"] = target
    pickup: dict[str, Any] = {"place_id": values["place_id"]} if values["place_id"] else {}
    return {
        "name": values["name"],
        "rrule": rule,
        "dtstart": f"{values['start_date']}T{values['time'] or '00:00'}" if values["start_date"] else "",
        "task": {
            "kind": values["kind"] or "meal",
            "priority": values["priority"] or "routine",
            "pickup": pickup,
            "dropoffs": [dropoff],
        },
    }


# The API's fields of a schedule, as the form's.
SCHEDULE_ALIASES = {
    "rrule": "days",
    "dtstart": "start_date",
    "task.pickup": "place_id",
    "task.dropoffs": "recipient_id",
    "task.kind": "kind",
    "task.priority": "priority",
}


async def _schedules_page(
    request: web.Request,
    staff: Staff,
    *,
    errors: FieldErrors | None = None,
    form: dict[str, Any] | None = None,
    preview: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await schedules.list_schedules(
            session=session, organisation_id=staff.organisation_id, query=ScheduleListQuery(limit=200)
        )
        places = await register.list_places(
            session=session, organisation_id=staff.organisation_id, query=PlaceListQuery(limit=200)
        )
        recipients = await register.list_recipients(
            session=session,
            organisation_id=staff.organisation_id,
            query=RecipientListQuery(limit=200),
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    context = {
        "schedules": page["items"],
        "places": places["items"],
        "recipients": recipients["items"],
        "errors": errors or FieldErrors(),
        "form": form or {"days": [], "kind": "meal", "priority": "routine", "time": "11:30"},
        "preview": preview,
        "weekdays": WEEKDAYS,
        "kind_choices": _choices(request, "board.kind.", TASK_KINDS),
        "priority_choices": _choices(request, "board.priority.", PRIORITIES),
        "place_choices": [(str(place["id"]), place["name"]) for place in places["items"]],
        "notice": _notice(request),
    }
    return await render_console(request, "console/records_schedules.html", staff, context, status=status)


@routes.get("/console/schedules")
async def schedules_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    return await _schedules_page(request, staff)


@routes.post("/console/schedules")
async def add_schedule(request: web.Request) -> web.Response:
    """Preview the next occurrences of the form's schedule, or save it (the button pressed says which)."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await _form(request, staff)
    values = _values(form, SCHEDULE_FIELDS)
    shown: dict[str, Any] = {**values, "days": form.getall("days", [])}
    zone = request.app[RUNTIME].settings.local_time_zone
    lang = request_language(request)
    try:
        model = _validated(ScheduleIn, _schedule_body(form, values))
        if form.get("action") == "preview":
            found = await schedules.preview(model, default_zone=zone)
            return await _schedules_page(request, staff, form=shown, preview=found)
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await schedules.create(
                session=session, organisation_id=staff.organisation_id, body=model, default_zone=zone
            )
    except (FormRefused, DomainError) as refused:
        problem = refused.problem if isinstance(refused, FormRefused) else _problem_of_domain(refused)
        errors = field_errors(problem, lang, aliases=SCHEDULE_ALIASES, known_fields=SCHEDULE_FIELDS)
        return await _schedules_page(request, staff, errors=errors, form=shown, status=_status(problem))
    raise web.HTTPSeeOther("/console/schedules?notice=added")


async def _schedule_action(request: web.Request, action: str, notice: str) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    schedule_id = _id(request, staff, "schedule_id")
    await _form(request, staff)
    change = getattr(schedules, action)
    try:
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await change(session=session, organisation_id=staff.organisation_id, schedule_id=schedule_id)
    except DomainError as error:
        problem = _problem_of_domain(error)
        if problem["status"] == 404:
            raise not_found(request, staff) from None
        errors = field_errors(problem, request_language(request))
        return await _schedules_page(request, staff, errors=errors, status=_status(problem))
    raise web.HTTPSeeOther(f"/console/schedules?notice={notice}")


@routes.post("/console/schedules/{schedule_id}/pause")
async def pause_schedule(request: web.Request) -> web.Response:
    return await _schedule_action(request, "pause", "paused")


@routes.post("/console/schedules/{schedule_id}/resume")
async def resume_schedule(request: web.Request) -> web.Response:
    return await _schedule_action(request, "resume", "resumed")


@routes.post("/console/schedules/{schedule_id}/end")
async def end_schedule(request: web.Request) -> web.Response:
    return await _schedule_action(request, "end", "ended")
