"""The console's tasks: the list with its filters (kept current by polling), a new task, one task's page."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, get_args

from aiohttp import web
from pydantic import ValidationError

from services.intake.adapters import console_queries
from services.intake.domain.errors import PlaceNotFound, RecipientNotFound, TaskNotFound
from services.intake.domain.model import FINISHED_TASK, Kind, Priority, TaskStatus
from services.intake.entrypoints.console.board import listed_volunteers
from services.intake.entrypoints.console.common import (
    DISPATCHER,
    FieldErrors,
    Staff,
    check_form_csrf,
    district_label,
    field_errors,
    form_time,
    form_whole_number,
    language_of,
    local_zone,
    not_found,
    problem_of,
    render_console,
    request_text,
    see_other,
    staff_page,
)
from services.intake.entrypoints.http import REGISTER, submit_task
from services.intake.entrypoints.schemas import CancelIn, PlaceListQuery, RecipientListQuery, TaskIn
from services.intake.service_layer import register
from services.intake.service_layer import staff as staff_service
from services.intake.service_layer import tasks as tasks_service
from services.intake.service_layer.progress import PROGRESS_EVENTS
from shared import audit, crypto
from shared.auth import Role
from shared.errors import DomainError, IdempotencyKeyReused
from shared.http import ProblemError, validation_problem
from shared.ningbo import DISTRICTS
from shared.runtime import RUNTIME

routes = web.RouteTableDef()

KINDS: tuple[str, ...] = get_args(Kind)
PRIORITIES: tuple[str, ...] = get_args(Priority)
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
DISTRICT_NAMES = tuple(district.name for district in DISTRICTS)
TEXT_MAX = 200

# How a status reads at a glance besides its colour: a sign before the word.
STATUS_TONES = {
    "submitted": ("info", "○"),
    "dispatching": ("info", "◔"),
    "in_progress": ("info", "◑"),
    "escalated": ("bad", "⚠"),
    "completed": ("ok", "✓"),
    "cancelled": ("warn", "✗"),
    "failed": ("bad", "✗"),
    "partially_completed": ("warn", "◐"),
    "pending": ("info", "○"),
    "offered": ("info", "◔"),
    "assigned": ("info", "◑"),
    "picked_up": ("info", "◕"),
    "delivered": ("ok", "✓"),
    "confirmed": ("ok", "✓"),
    "needs_decision": ("bad", "⚠"),
}


def _choice(raw: str | None, allowed: tuple[str, ...]) -> str | None:
    return raw if raw in allowed else None


def _local_time(request: web.Request, errors: FieldErrors, name: str) -> datetime | None:
    """A `datetime-local` query value in the service's time zone, or an error under `name`."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return form_time(raw, zone=local_zone(request))
    except ValueError:
        errors.add(name, request_text(request, "error.time"))
        return None


def _filters(request: web.Request) -> tuple[console_queries.TaskFilter, dict[str, str], FieldErrors]:
    query = request.query
    errors = FieldErrors()
    text = (query.get("q") or "").strip()[:TEXT_MAX]
    before = query.get("before", "")
    chosen = console_queries.TaskFilter(
        status=_choice(query.get("status"), TASK_STATUSES),
        kind=_choice(query.get("kind"), KINDS),
        priority=_choice(query.get("priority"), PRIORITIES),
        district=_choice(query.get("district"), DISTRICT_NAMES),
        since=_local_time(request, errors, "since"),
        until=_local_time(request, errors, "until"),
        text=text or None,
        before=form_whole_number(before, digits=18),
    )
    shown = {
        name: query.get(name, "")
        for name in ("status", "kind", "priority", "district", "since", "until", "q")
    }
    return chosen, shown, errors


@routes.get("/console/tasks")
async def task_list(request: web.Request) -> web.Response:
    staff = await staff_page(request)
    chosen, shown, errors = _filters(request)
    async with request.app[RUNTIME].sessionmaker() as session:
        found, more = await console_queries.task_list(
            session, organisation_id=staff.organisation_id, query=chosen
        )
    rows_only = request.headers.get("HX-Request") == "true" and request.query.get("part") == "rows"
    refresh = {key: value for key, value in shown.items() if value}
    return await render_console(
        request,
        "console/tasks_rows.html" if rows_only else "console/tasks.html",
        staff,
        {
            "tasks": found,
            "more": more,
            "next_before": found[-1].seq if found and more else None,
            "filters": shown,
            "refresh_query": refresh,
            "errors": errors,
            "kinds": KINDS,
            "priorities": PRIORITIES,
            "statuses": TASK_STATUSES,
            "district_choices": [
                (name, district_label(language_of(request), name)) for name in DISTRICT_NAMES
            ],
            "tones": STATUS_TONES,
            "can_change": staff.role is Role.OPERATOR,
        },
    )


# A new task ---------------------------------------------------------------------------------------

PICKUP_SOURCES = ("place", "recipient", "address", "point")
DROPOFF_SOURCES = ("recipient", "typed")
LANGUAGES = ("zh", "en", "ko", "ja")
MAX_DROPOFFS = 20
MAX_ITEMS = 100
REGISTER_OPTIONS = 200


class TaskForm:
    """The new-task form as sent (every value a string), and the API body it makes."""

    def __init__(self, values: Mapping[str, str], request: web.Request) -> None:
        self.values = dict(values)
        self.errors = FieldErrors()
        self._zone = local_zone(request)
        self._request = request
        self.dropoffs = _count(values.get("dropoff_count"), MAX_DROPOFFS)
        self.items = _count(values.get("item_count"), MAX_ITEMS)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name) or default

    def _number(self, name: str, *, integer: bool = False) -> float | int | None:
        raw = self.get(name).strip().replace(",", ".")
        if not raw:
            return None
        try:
            return int(raw) if integer else float(raw)
        except ValueError:
            self.errors.add(name, request_text(self._request, "error.number"))
            return None

    def _time(self, name: str) -> str | None:
        raw = self.get(name).strip()
        if not raw:
            return None
        try:
            return form_time(raw, zone=self._zone).isoformat()
        except ValueError:
            self.errors.add(name, request_text(self._request, "error.time"))
            return None

    def _text(self, name: str) -> str | None:
        return self.get(name).strip() or None

    def body(self, pickup_recipient: Mapping[str, Any] | None) -> dict[str, Any]:
        """The body of `POST /v1/tasks` this form asks for; unreadable numbers and times are noted."""
        source = self.get("pickup_source", "place")
        pickup: dict[str, Any] = {}
        if source == "place":
            pickup["place_id"] = self._text("pickup_place_id")
        elif source == "recipient" and pickup_recipient is not None:
            pickup |= {
                "lat": pickup_recipient.get("lat"),
                "lon": pickup_recipient.get("lon"),
                "address": pickup_recipient.get("address"),
                "contact_name": pickup_recipient.get("name"),
                "contact_phone": pickup_recipient.get("phone"),
            }
        elif source in ("address", "point"):
            # An address with coordinates needs no lookup; a point may say its address too.
            pickup |= {
                "address": self._text("pickup_address"),
                "lat": self._number("pickup_lat"),
                "lon": self._number("pickup_lon"),
            }
        for name in ("contact_name", "contact_phone"):
            if self._text(f"pickup_{name}"):
                pickup[name] = self._text(f"pickup_{name}")
        pickup["ready_at"] = self._time("pickup_ready_at")
        dropoffs = [self._dropoff(index) for index in range(self.dropoffs)]
        items = []
        for index in range(self.items):
            item_name = self._text(f"items_{index}_name")
            quantity = self._number(f"items_{index}_quantity", integer=True)
            weight = self._number(f"items_{index}_weight_kg")
            if item_name is None and quantity is None and weight is None:
                continue  # an empty row of the form is no item
            items.append(
                {
                    "name": item_name or "",
                    "quantity": 1 if quantity is None else quantity,
                    "weight_kg": weight,
                }
            )
        body = {
            "kind": self.get("kind"),
            "priority": self.get("priority", "routine"),
            "pickup": pickup,
            "dropoffs": dropoffs,
            "items": items,
            "deliver_by": self._time("deliver_by"),
            "notes": self._text("notes"),
        }
        cleaned: dict[str, Any] = _without_none(body)
        return cleaned

    def _dropoff(self, index: int) -> dict[str, Any]:
        prefix = f"dropoffs_{index}_"
        if self.get(prefix + "source", "recipient") == "recipient":
            return {"recipient_id": self._text(prefix + "recipient_id")}
        stop: dict[str, Any] = {
            "address": self._text(prefix + "address"),
            "lat": self._number(prefix + "lat"),
            "lon": self._number(prefix + "lon"),
            "recipient_name": self._text(prefix + "recipient_name"),
            "recipient_phone": self._text(prefix + "recipient_phone"),
            "language": self._text(prefix + "language"),
            "notes": self._text(prefix + "notes"),
        }
        return stop


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _count(raw: str | None, most: int) -> int:
    number = form_whole_number(raw, digits=3)
    return min(number, most) if number else 1


def _find_text(raw: str | None) -> str | None:
    """What to look for in the register, as the API's searches take it (none when blank)."""
    text = " ".join((raw or "").split())[:TEXT_MAX]
    return text or None


def _recipient_label(recipient: Mapping[str, Any]) -> str:
    return " · ".join(
        part
        for part in (
            crypto.mask_name(recipient.get("name")) if "name" in recipient else recipient["name_masked"],
            crypto.mask_phone(recipient.get("phone")) if "name" in recipient else recipient["phone_masked"],
            crypto.mask_name(recipient.get("address"))
            if "name" in recipient
            else recipient["address_masked"],
        )
        if part
    )


async def _keep_chosen(
    request: web.Request,
    staff: Staff,
    form: TaskForm,
    places: list[tuple[str, str]],
    recipients: list[tuple[str, str]],
) -> None:
    """The places and recipients the form has chosen stay choosable whatever is looked for since."""
    settings = request.app[REGISTER]
    chosen_recipients = [form.get("pickup_recipient_id")] + [
        form.get(f"dropoffs_{index}_recipient_id") for index in range(form.dropoffs)
    ]
    async with request.app[RUNTIME].sessionmaker() as session:
        raw = form.get("pickup_place_id")
        if raw and raw not in dict(places):
            try:
                place = await register.get_place(
                    session=session, organisation_id=staff.organisation_id, place_id=uuid.UUID(raw)
                )
                places.insert(0, (raw, place["name"]))
            except (ValueError, PlaceNotFound):
                pass
        for raw in chosen_recipients:
            if raw and raw not in dict(recipients):
                try:
                    recipient = await register.get_recipient(
                        session=session,
                        organisation_id=staff.organisation_id,
                        recipient_id=uuid.UUID(raw),
                        keys=settings.keys,
                        retention_s=settings.retention_s,
                    )
                    recipients.insert(0, (raw, _recipient_label(recipient)))
                except (ValueError, RecipientNotFound):
                    pass


async def _register_choices(
    request: web.Request, staff: Staff, form: TaskForm, find: str | None
) -> dict[str, Any]:
    """The organisation's places and recipients to choose from (recipients masked, as the API lists
    them): the first `REGISTER_OPTIONS`, or those `find` matches (a recipient by the register's
    blind-index search: name or address words, a phone or an e-mail; a place by words of its name)."""
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session:
        places = await register.list_places(
            session=session,
            organisation_id=staff.organisation_id,
            query=PlaceListQuery(q=find, limit=REGISTER_OPTIONS),
        )
        recipients = await register.list_recipients(
            session=session,
            organisation_id=staff.organisation_id,
            query=RecipientListQuery(q=find, limit=REGISTER_OPTIONS),
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    place_choices = [(str(place["id"]), place["name"]) for place in places["items"]]
    recipient_choices = [
        (str(recipient["id"]), _recipient_label(recipient)) for recipient in recipients["items"]
    ]
    await _keep_chosen(request, staff, form, place_choices, recipient_choices)
    return {
        "find": find or "",
        "register_options": REGISTER_OPTIONS,
        "more_in_register": bool(places["has_more"] or recipients["has_more"]),
        "places": place_choices,
        "recipients": recipient_choices,
        "found": (len(places["items"]), len(recipients["items"])),
        "geocoder": settings.geocoder is not None,
    }


async def _new_task_page(
    request: web.Request, staff: Staff, form: TaskForm, *, status: int = 200
) -> web.Response:
    return await render_console(
        request,
        "console/task_new.html",
        staff,
        {
            "form": form,
            "errors": form.errors,
            "kinds": KINDS,
            "priorities": PRIORITIES,
            "pickup_sources": PICKUP_SOURCES,
            "dropoff_sources": DROPOFF_SOURCES,
            "languages": LANGUAGES,
            **await _register_choices(request, staff, form, _find_text(form.get("find"))),
        },
        status=status,
    )


@routes.get("/console/tasks/new")
async def new_task(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    form = TaskForm(
        {
            "idempotency_key": str(uuid.uuid4()),
            "kind": "errand",
            "priority": "routine",
            "find": _find_text(request.query.get("find")) or "",
        },
        request,
    )
    return await _new_task_page(request, staff, form)


@routes.post("/console/tasks/new")
async def submit_new_task(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    posted = await request.post()
    check_form_csrf(request, posted, staff)
    values = {key: value for key, value in posted.items() if isinstance(value, str)}
    lang = language_of(request)
    form = TaskForm(values, request)
    action = values.get("action", "submit")
    if action == "find":
        # Look in the register and come back with everything typed so far, scripts or not.
        return await _new_task_page(request, staff, form)
    if action in ("add_dropoff", "add_item", "remove_dropoff", "remove_item"):
        if action == "add_dropoff":
            form.dropoffs = min(form.dropoffs + 1, MAX_DROPOFFS)
        elif action == "add_item":
            form.items = min(form.items + 1, MAX_ITEMS)
        elif action == "remove_dropoff":
            form.dropoffs = max(form.dropoffs - 1, 1)
        else:
            form.items = max(form.items - 1, 1)
        return await _new_task_page(request, staff, form)
    pickup_recipient = None
    if form.get("pickup_source") == "recipient":
        pickup_recipient = await _pickup_recipient(request, staff, form)
    body = form.body(pickup_recipient)
    key = form.get("idempotency_key")
    if form.errors:
        return await _new_task_page(request, staff, form, status=422)
    try:
        task_in = TaskIn.model_validate(body)
        if not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
            raise ProblemError(400, "Bad request", "The form has lost its key; open a new form.")
        submitted = await submit_task(request, staff.organisation_id, key, task_in)
    except ValidationError as exc:
        form.errors = field_errors({"errors": validation_problem(exc).errors}, lang)
        return await _new_task_page(request, staff, form, status=422)
    except ProblemError as exc:
        form.errors = field_errors(problem_of(exc), lang)
        return await _new_task_page(request, staff, form, status=exc.status)
    except IdempotencyKeyReused:
        form.errors = FieldErrors.message(request_text(request, "task_new.key_reused"))
        form.values["idempotency_key"] = str(uuid.uuid4())
        return await _new_task_page(request, staff, form, status=409)
    except DomainError as exc:
        form.errors = field_errors({"errors": exc.errors or [], "detail": exc.message}, lang)
        return await _new_task_page(request, staff, form, status=422)
    return await render_console(
        request,
        "console/task_created.html",
        staff,
        {"task": submitted.task, "replayed": submitted.replayed},
        status=201 if not submitted.replayed else 200,
    )


async def _pickup_recipient(request: web.Request, staff: Staff, form: TaskForm) -> dict[str, Any] | None:
    raw = form.get("pickup_recipient_id")
    try:
        recipient_id = uuid.UUID(raw)
        settings = request.app[REGISTER]
        async with request.app[RUNTIME].sessionmaker() as session:
            return await register.get_recipient(
                session=session,
                organisation_id=staff.organisation_id,
                recipient_id=recipient_id,
                keys=settings.keys,
                retention_s=settings.retention_s,
            )
    except (ValueError, RecipientNotFound):
        form.errors.add("pickup_recipient_id", request_text(request, "error.choose"))
        return None


# One task -----------------------------------------------------------------------------------------

# What can be done with a leg, by its status.
ASSIGNABLE = ("pending", "offered")
MOVABLE = ("assigned",)
DECISIONS = {"needs_decision": ("return_to_pickup", "hand_over", "fail"), "delivered": ("confirm", "fail")}


def _task_id(request: web.Request, staff: Staff) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["task_id"])
    except ValueError:
        raise not_found(request, staff) from None


async def _read_task(request: web.Request, staff: Staff, task_id: uuid.UUID) -> dict[str, Any]:
    try:
        async with request.app[RUNTIME].sessionmaker() as session:
            return await tasks_service.get_task(
                session=session, task_id=task_id, organisation_id=staff.organisation_id
            )
    except TaskNotFound:
        raise not_found(request, staff) from None


def _leg_of(task: Mapping[str, Any], raw: str, request: web.Request, staff: Staff) -> dict[str, Any]:
    leg = next((leg for leg in task["legs"] if leg["id"] == raw), None)
    if leg is None:
        raise not_found(request, staff)
    return dict(leg)


async def _people_names(request: web.Request, staff: Staff) -> dict[str, str]:
    """`person:<id>` of the organisation's staff, each with the e-mail the console names them by."""
    async with request.app[RUNTIME].sessionmaker() as session:
        people = await staff_service.list_people(session=session, organisation_id=staff.organisation_id)
    return {f"person:{person['id']}": person["email"] for person in people["items"]}


def _actor_label(
    request: web.Request, actor: str | None, people: Mapping[str, str], volunteers: Mapping[str, str]
) -> str:
    """Who did something, in words: a member of staff by e-mail, a volunteer by name, else the system."""
    if actor is None:
        return request_text(request, "actor.system")
    if actor in people:
        return people[actor]
    kind, _, ident = actor.partition(":")
    if kind == "volunteer":
        name = volunteers.get(ident)
        if name:
            return request_text(request, "actor.volunteer_named", name=name)
        return request_text(request, "actor.volunteer")
    if kind == "token":
        return request_text(request, "actor.api")
    return request_text(request, "actor.staff")


# Commands on the audit trail that no event of the timeline tells: who submitted the task, who gave a
# leg to a volunteer by hand, moved it, or released it.
COMMANDS = ("task.submitted", "leg.assigned_by_hand", "leg.moved", "leg.released")
EVENT_TYPES = (*COMMANDS, "task.cancelled", *PROGRESS_EVENTS)


# Why a leg was escalated (the dispatcher's codes, and the read model's own for a flagged delivery).
ESCALATION_REASONS = (
    "waited_too_long",
    "deadline_near",
    "waited_too_long_pending",
    "waited_too_long_offered",
    "waited_too_long_assigned",
    "waited_too_long_picked_up",
    "will_miss_deliver_by",
    "leg_needs_decision",
    "delivery_flagged",
)


async def _commands(request: web.Request, staff: Staff, task_id: uuid.UUID) -> list[dict[str, Any]]:
    """The task's commands from the audit trail, as timeline entries with their actor."""
    async with request.app[RUNTIME].sessionmaker() as session:
        rows = await audit.entries(
            session, audit.AuditFilter(organisation_id=staff.organisation_id, task_id=task_id, limit=200)
        )
    return [
        {
            "type": row.action,
            "time": row.at.isoformat(),
            "leg_id": str(row.leg_id) if row.leg_id else None,
            "reason": None,
            "actor": f"{row.actor_kind}:{row.actor_id}" if row.actor_id else None,
        }
        for row in rows
        if row.action in COMMANDS
    ]


async def _volunteers(request: web.Request, staff: Staff) -> list[dict[str, Any]]:
    """The organisation's volunteers (every page), as the dispatcher lists them to this person (on duty
    first)."""
    items, _ = await listed_volunteers(request, staff)
    found = [v for v in items if not v.get("deactivated_at")]
    return sorted(found, key=lambda v: (not v.get("on_duty"), v.get("name") or ""))


async def _task_page(
    request: web.Request,
    staff: Staff,
    task_id: uuid.UUID,
    *,
    errors: Mapping[str, FieldErrors] | None = None,
    done: str | None = None,
    status: int = 200,
) -> web.Response:
    task = await _read_task(request, staff, task_id)
    people = await _people_names(request, staff)
    can_change = staff.can_change
    volunteers = await _volunteers(request, staff)
    # Volunteers by their full names, as the dispatcher tells them to this person (the task's read
    # model keeps only what its event carried, which may be masked).
    names = {str(v["id"]): v["name"] for v in volunteers}
    for leg in task["legs"]:
        volunteer = leg.get("volunteer")
        if volunteer:
            names.setdefault(volunteer["id"], volunteer.get("name") or "")
            volunteer["name"] = names[volunteer["id"]] or volunteer.get("name")
    entries = [*task["timeline"], *await _commands(request, staff, task_id)]
    entries.sort(key=lambda entry: datetime.fromisoformat(entry["time"]))
    timeline = [
        {**entry, "who": _actor_label(request, entry.get("actor"), people, names)} for entry in entries
    ]
    leg_numbers = {leg["id"]: leg["index"] + 1 for leg in task["legs"]}
    template = "console/task_live.html" if request.query.get("part") == "live" else "console/task.html"
    return await render_console(
        request,
        template,
        staff,
        {
            "task": task,
            "timeline": list(reversed(timeline)),
            "leg_numbers": leg_numbers,
            "tones": STATUS_TONES,
            "known_events": {f"event.{name}" for name in EVENT_TYPES},
            "known_reasons": {f"escalation_reason.{code}" for code in ESCALATION_REASONS},
            "can_change": can_change,
            "volunteers": volunteers,
            "assignable": ASSIGNABLE,
            "movable": MOVABLE,
            "decisions": DECISIONS,
            "action_errors": errors or {},
            "done": done,
            "finished": task["status"] in FINISHED_TASK,
        },
        status=status,
    )


@routes.get("/console/tasks/{task_id}")
async def task_page(request: web.Request) -> web.Response:
    staff = await staff_page(request)
    done = request.query.get("done")
    return await _task_page(request, staff, _task_id(request, staff), done=done if done in DONE else None)


DONE = ("cancelled", "assigned", "moved", "decided")


@routes.post("/console/tasks/{task_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR)
    task_id = _task_id(request, staff)
    form = await request.post()
    check_form_csrf(request, form, staff)
    reason = str(form.get("reason") or "").strip() or None
    lang = language_of(request)
    try:
        body = CancelIn.model_validate({"reason": reason})
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await tasks_service.cancel_task(
                session=session, task_id=task_id, organisation_id=staff.organisation_id, reason=body.reason
            )
    except TaskNotFound:
        raise not_found(request, staff) from None
    except ValidationError as exc:
        errors = field_errors({"errors": validation_problem(exc).errors}, lang)
        return await _task_page(request, staff, task_id, errors={"cancel": errors}, status=422)
    except DomainError:
        errors = FieldErrors.message(request_text(request, "task.cancel_refused"))
        return await _task_page(request, staff, task_id, errors={"cancel": errors}, status=409)
    return see_other(f"/console/tasks/{task_id}?done=cancelled")


async def _leg_action(
    request: web.Request, *, action: str, path: str, body_of: Any, done: str
) -> web.Response:
    """A leg's action that the dispatcher owns, sent as this person; its refusal shown by the leg."""
    staff = await staff_page(request, Role.OPERATOR)
    task_id = _task_id(request, staff)
    form = await request.post()
    check_form_csrf(request, form, staff)
    task = await _read_task(request, staff, task_id)
    leg = _leg_of(task, request.match_info["leg_id"], request, staff)
    values = {key: value.strip() for key, value in form.items() if isinstance(value, str)}
    lang = language_of(request)
    key = f"{action}:{leg['id']}"
    body = body_of(values)
    answer = await request.app[DISPATCHER].call(
        request, staff, "POST", path.format(leg=leg["id"]), json_body=body
    )
    if answer.ok:
        return see_other(f"/console/tasks/{task_id}?done={done}#leg-{leg['index'] + 1}")
    errors = field_errors(
        answer.problem,
        lang,
        aliases=_LEG_FIELDS,
        known_fields=_LEG_FIELDS.values(),
        refusal_field="volunteer_id",
    )
    return await _task_page(request, staff, task_id, errors={key: errors}, status=answer.status)


# The dispatcher's field paths, and the names of the task page's fields they are about.
_LEG_FIELDS = {
    "volunteer_id": "volunteer_id",
    "override.reason": "override_reason",
    "override": "override_reason",
    "note": "note",
    "action": "decision",
}


def _hand_body(values: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"volunteer_id": values.get("volunteer_id") or None}
    if values.get("override_reason"):
        body["override"] = {"reason": values["override_reason"]}
    return body


def _decision_body(values: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"action": values.get("decision") or None}
    if values.get("volunteer_id"):
        body["volunteer_id"] = values["volunteer_id"]
    if values.get("note"):
        body["note"] = values["note"]
    return body


@routes.post("/console/tasks/{task_id}/legs/{leg_id}/assign")
async def assign(request: web.Request) -> web.Response:
    return await _leg_action(
        request, action="assign", path="/v1/legs/{leg}/assign", body_of=_hand_body, done="assigned"
    )


@routes.post("/console/tasks/{task_id}/legs/{leg_id}/move")
async def move(request: web.Request) -> web.Response:
    return await _leg_action(
        request, action="move", path="/v1/legs/{leg}/move", body_of=_hand_body, done="moved"
    )


@routes.post("/console/tasks/{task_id}/legs/{leg_id}/decision")
async def decide(request: web.Request) -> web.Response:
    return await _leg_action(
        request, action="decision", path="/v1/legs/{leg}/decision", body_of=_decision_body, done="decided"
    )


@routes.get("/console/tasks/{task_id}/legs/{leg_id}/photos/{photo_id}")
async def photo(request: web.Request) -> web.Response:
    """A delivery photo of one of the organisation's legs, fetched from the dispatcher as this person."""
    staff = await staff_page(request)
    task = await _read_task(request, staff, _task_id(request, staff))
    leg = _leg_of(task, request.match_info["leg_id"], request, staff)
    wanted = request.match_info["photo_id"]
    known = next((p for p in leg["photos"] if p["id"] == wanted), None)
    if known is None:
        raise not_found(request, staff)
    answer = await request.app[DISPATCHER].call(request, staff, "GET", known["url"])
    if not answer.ok or answer.content_type not in ("image/jpeg", "image/png"):
        raise not_found(request, staff)
    return web.Response(
        body=answer.data,
        content_type=answer.content_type,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
