"""Intake's HTTP API for operators and administrators: parse, call the service layer, serialise."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from aiohttp import web

from services.intake.domain.errors import GeocoderUnavailable, OrganisationNotFound, OrganisationRequired
from services.intake.domain.model import ListPosition
from services.intake.domain.staff import ThrottleRule
from services.intake.entrypoints import pages
from services.intake.entrypoints.schemas import (
    AuditPageOut,
    AuditQuery,
    CancelIn,
    DailyReportQuery,
    ErasureIn,
    ErasureOut,
    ExportQuery,
    OrganisationCreatedOut,
    OrganisationIn,
    PasswordSetupIn,
    PeopleOut,
    PeopleQuery,
    PersonIn,
    PersonOut,
    PersonSetupOut,
    PlaceIn,
    PlaceListQuery,
    PlaceOut,
    PlacePageOut,
    PlacePatchIn,
    RecipientIn,
    RecipientListQuery,
    RecipientOut,
    RecipientPageOut,
    RecipientPatchIn,
    RoleChangeIn,
    RoleTokenIn,
    ScheduleIn,
    ScheduleListQuery,
    ScheduleOut,
    SchedulePageOut,
    SchedulePatchIn,
    SchedulePreviewOut,
    ScheduleSkipIn,
    SessionIn,
    SessionOut,
    TaskCreatedOut,
    TaskIn,
    TaskListQuery,
    TaskOut,
    TaskPageOut,
    TokenCreatedOut,
    TokenOwnerIn,
)
from services.intake.service_layer import export, personal_data, register, schedules, staff, submission, tasks
from services.intake.service_layer.admin import (
    create_organisation,
    create_organisation_token,
    create_role_token,
    revoke_token,
)
from shared.audit import AuditFilter
from shared.auth import Principal, Role
from shared.db import autocommit
from shared.errors import COMMON_STATUSES, Answer, DomainError
from shared.http import Api, ProblemError, json_response, parse_body, parse_query, path_uuid
from shared.outbound import BlockedAddressError, check_url_is_public
from shared.runtime import RUNTIME, authorize
from shared.staff import SESSION_COOKIE, client_address, is_https

KEYS = web.AppKey("keys", submission.Keys)


@dataclass(frozen=True)
class Register:
    """What the register's routes and task submission need: keys, the geocoder (None: off), retention."""

    keys: register.RegisterKeys
    geocoder: register.Locator | None
    retention_s: float


REGISTER = web.AppKey("register", Register)

# How intake's domain errors are answered over HTTP; the problem's detail is the error's message.
ERROR_STATUSES: dict[type[DomainError], Answer] = {
    **COMMON_STATUSES,
    GeocoderUnavailable: Answer(503, "Service unavailable"),
}

# Bytes of CSV gathered before a write to the streamed export.
EXPORT_CHUNK = 64 * 1024

IDEMPOTENCY_KEY_MAX = 255
# Printable ASCII, as HTTP carries it, without the surrounding blanks HTTP would trim.
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": IDEMPOTENCY_KEY_MAX,
    "pattern": "^[!-~]([ -~]*[!-~])?$",
}


api = Api(title="Errands intake")


def _header_text(value: str) -> bool:
    """A header value we can hash and store: printable Unicode that encodes as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return value.isprintable()


@api.route(
    "POST",
    "/v1/tasks",
    summary="Submit a task",
    body=TaskIn,
    response=TaskCreatedOut,
    status=201,
    roles=("operator",),
    errors=(409,),
    headers={"Idempotency-Key": IDEMPOTENCY_KEY_SCHEMA},
)
async def post_task(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    key = request.headers.get("Idempotency-Key", "")
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and _header_text(key)):
        raise ProblemError(
            400,
            "Bad request",
            "The Idempotency-Key header is required (1 to 255 printable characters).",
            errors=[
                {"field": "header:Idempotency-Key", "message": "required, 1 to 255 printable characters"}
            ],
        )
    body = await parse_body(request, TaskIn)
    assert principal.organisation_id is not None
    return _created(await submit_task(request, principal.organisation_id, key, body))


async def submit_task(
    request: web.Request, organisation_id: uuid.UUID, key: str, body: TaskIn
) -> submission.Submission:
    """A task submitted once per Idempotency-Key (the API's and the console's new task), its stops
    filled from the register and the geocoder."""
    runtime = request.app[RUNTIME]
    if body.callback_url is not None and not runtime.settings.webhook_allow_private_urls:
        await _refuse_unless_public(body.callback_url)
    stops = None
    if submission.uses_register(body):
        filled = await _fill_stops_or_replay(request, organisation_id, key, body)
        if isinstance(filled, submission.Submission):
            return filled
        stops = filled
    async with autocommit(runtime.engine) as connection:
        return await submission.submit_task(
            session=connection,
            organisation_id=organisation_id,
            idempotency_key=key,
            body=body,
            keys=request.app[KEYS],
            stops=stops,
        )


async def _fill_stops_or_replay(
    request: web.Request, organisation_id: uuid.UUID, key: str, body: TaskIn
) -> submission.Submission | submission.Stops:
    """A replay's first answer, or the stops filled from the register and the geocoder.

    The records are read in one short session; the geocoder is asked after it closed, so no
    database connection waits on it.
    """
    runtime, settings = request.app[RUNTIME], request.app[REGISTER]
    async with runtime.sessionmaker() as session:
        replayed = await submission.replay(
            session=session,
            organisation_id=organisation_id,
            idempotency_key=key,
            body=body,
            keys=request.app[KEYS],
        )
        if replayed is not None:
            return replayed
        references = await submission.load_references(
            session=session, organisation_id=organisation_id, body=body, keys=settings.keys
        )
    return await submission.resolve_stops(body, references, geocoder=settings.geocoder)


def _created(submitted: submission.Submission) -> web.Response:
    task = TaskCreatedOut.model_validate(submitted.task)
    headers = {"Location": f"/v1/tasks/{task.id}"}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(task, status=201, headers=headers)


async def _refuse_unless_public(callback_url: str) -> None:
    # The notifier checks every address again when it connects; this is the early, clear refusal,
    # the same one a webhook's registration gets.
    try:
        await check_url_is_public(callback_url)
    except BlockedAddressError as exc:
        raise ProblemError(
            422,
            "Validation failed",
            "Callback URLs must resolve to public addresses.",
            errors=[{"field": "$.callback_url", "message": str(exc), "type": "url_not_public"}],
        ) from exc


@api.route(
    "GET",
    "/v1/tasks",
    summary="Tasks, newest arrivals last, filtered and paged by an opaque cursor",
    query=TaskListQuery,
    response=TaskPageOut,
    roles=("operator", "ops", "admin"),
)
async def list_tasks(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    query = parse_query(request, TaskListQuery)
    after = None
    if query.cursor is not None:
        try:
            after = ListPosition.decode(query.cursor)
        except ValueError as exc:
            raise ProblemError(
                400,
                "Bad request",
                "Invalid query parameters.",
                errors=[{"field": "cursor", "message": "not a cursor this API returned"}],
            ) from exc
    scope = principal.organisation_id if principal.role is Role.OPERATOR else None
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await tasks.list_tasks(session=session, organisation_id=scope, query=query, after=after)
    return json_response(TaskPageOut.model_validate(page))


@api.route(
    "GET",
    "/v1/tasks/{task_id}",
    summary="A task with its legs and timeline",
    response=TaskOut,
    roles=("operator", "ops", "admin"),
)
async def get_task(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    task_id = path_uuid(request, "task_id", "task")
    scope = principal.organisation_id if principal.role is Role.OPERATOR else None
    async with request.app[RUNTIME].sessionmaker() as session:
        task = await tasks.get_task(session=session, task_id=task_id, organisation_id=scope)
    return json_response(TaskOut.model_validate(task))


@api.route(
    "POST",
    "/v1/tasks/{task_id}/cancel",
    summary="Cancel a task (idempotent; 409 once it is completed)",
    body=CancelIn,
    response=TaskOut,
    roles=("operator",),
    errors=(409,),
)
async def cancel_task(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR)
    task_id = path_uuid(request, "task_id", "task")
    # The body is optional: an empty one cancels without a reason.
    body = await parse_body(request, CancelIn) if request.can_read_body else CancelIn()
    assert principal.organisation_id is not None
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        task = await tasks.cancel_task(
            session=session, task_id=task_id, organisation_id=principal.organisation_id, reason=body.reason
        )
    return json_response(TaskOut.model_validate(task))


@api.route(
    "POST",
    "/v1/organisations",
    summary="Create an organisation",
    body=OrganisationIn,
    response=OrganisationCreatedOut,
    status=201,
    roles=("admin",),
)
async def post_organisation(request: web.Request) -> web.Response:
    _cross_organisation_admin(await authorize(request, Role.ADMIN))
    body = await parse_body(request, OrganisationIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await create_organisation(session=session, name=body.name)
    return json_response(created, status=201)


@api.route(
    "POST",
    "/v1/organisations/{organisation_id}/tokens",
    summary="Another operator token, owned by a person or named for a service",
    body=TokenOwnerIn,
    response=TokenCreatedOut,
    status=201,
    roles=("admin",),
)
async def post_organisation_token(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    organisation_id = path_uuid(request, "organisation_id", "organisation")
    _own_organisation(principal, organisation_id)
    # The body is optional (tokens made before owners were named had none).
    owner = await parse_body(request, TokenOwnerIn) if request.can_read_body else TokenOwnerIn()
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await create_organisation_token(
            session=session, organisation_id=organisation_id, person_id=owner.person_id, service=owner.service
        )
    return json_response(TokenCreatedOut.model_validate(created), status=201)


@api.route(
    "POST",
    "/v1/tokens",
    summary="A token for the ops or admin role",
    body=RoleTokenIn,
    response=TokenCreatedOut,
    status=201,
    roles=("admin",),
    errors=(404,),
)
async def post_token(request: web.Request) -> web.Response:
    _cross_organisation_admin(await authorize(request, Role.ADMIN))
    body = await parse_body(request, RoleTokenIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await create_role_token(
            session=session, role=body.role, person_id=body.person_id, service=body.service
        )
    return json_response(TokenCreatedOut.model_validate(created), status=201)


@api.route("DELETE", "/v1/tokens/{token_id}", summary="Revoke a token", status=204, roles=("admin",))
async def delete_token(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    token_id = path_uuid(request, "token_id", "token")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await revoke_token(session=session, token_id=token_id, organisation_id=principal.organisation_id)
    return web.Response(status=204)


@api.route(
    "POST",
    "/v1/erasures",
    summary="Erase one person's personal data from every task that names them",
    body=ErasureIn,
    response=ErasureOut,
    roles=("admin",),
    errors=(409,),
)
async def post_erasure(request: web.Request) -> web.Response:
    await authorize(request, Role.ADMIN)
    body = await parse_body(request, ErasureIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        erasure = await personal_data.erase_person(
            session,
            phone=body.phone,
            email=body.email,
            keys=request.app[REGISTER].keys,
            organisation_id=body.organisation_id,
        )
    return json_response(ErasureOut.model_validate(erasure, from_attributes=True))


# --- the register of people served -----------------------------------------------------------------


async def _operator(request: web.Request) -> uuid.UUID:
    principal = await authorize(request, Role.OPERATOR)
    assert principal.organisation_id is not None
    return principal.organisation_id


@api.route(
    "POST",
    "/v1/recipients",
    summary="Register a person the organisation serves (an address without coordinates is geocoded)",
    body=RecipientIn,
    response=RecipientOut,
    status=201,
    roles=("operator",),
)
async def post_recipient(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    body = await parse_body(request, RecipientIn)
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await register.create_recipient(
            session=session,
            organisation_id=organisation_id,
            body=body,
            keys=settings.keys,
            geocoder=settings.geocoder,
            retention_s=settings.retention_s,
        )
    recipient = RecipientOut.model_validate(created)
    return json_response(recipient, status=201, headers={"Location": f"/v1/recipients/{recipient.id}"})


@api.route(
    "GET",
    "/v1/recipients",
    summary="Recipients, masked; `q` finds them by phone, e-mail, or words of the name or address",
    query=RecipientListQuery,
    response=RecipientPageOut,
    roles=("operator",),
)
async def list_recipients(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    query = parse_query(request, RecipientListQuery)
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await register.list_recipients(
            session=session,
            organisation_id=organisation_id,
            query=query,
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    return json_response(RecipientPageOut.model_validate(page))


@api.route(
    "GET",
    "/v1/recipients/{recipient_id}",
    summary="A recipient in full",
    response=RecipientOut,
    roles=("operator",),
)
async def get_recipient(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    recipient_id = path_uuid(request, "recipient_id", "recipient")
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session:
        found = await register.get_recipient(
            session=session,
            organisation_id=organisation_id,
            recipient_id=recipient_id,
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    return json_response(RecipientOut.model_validate(found))


@api.route(
    "PATCH",
    "/v1/recipients/{recipient_id}",
    summary="Change a recipient's details (tasks already submitted keep their copy)",
    body=RecipientPatchIn,
    response=RecipientOut,
    roles=("operator",),
)
async def patch_recipient(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    recipient_id = path_uuid(request, "recipient_id", "recipient")
    body = await parse_body(request, RecipientPatchIn)
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        updated = await register.update_recipient(
            session=session,
            organisation_id=organisation_id,
            recipient_id=recipient_id,
            body=body,
            keys=settings.keys,
            geocoder=settings.geocoder,
            retention_s=settings.retention_s,
        )
    return json_response(RecipientOut.model_validate(updated))


@api.route(
    "POST",
    "/v1/recipients/{recipient_id}/renew",
    summary="Keep a recipient for another retention period",
    response=RecipientOut,
    roles=("operator",),
)
async def renew_recipient(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    recipient_id = path_uuid(request, "recipient_id", "recipient")
    settings = request.app[REGISTER]
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        renewed = await register.renew_recipient(
            session=session,
            organisation_id=organisation_id,
            recipient_id=recipient_id,
            keys=settings.keys,
            retention_s=settings.retention_s,
        )
    return json_response(RecipientOut.model_validate(renewed))


@api.route(
    "DELETE",
    "/v1/recipients/{recipient_id}",
    summary="Erase a recipient now, on request (tasks keep the copy they were submitted with)",
    status=204,
    roles=("operator",),
)
async def delete_recipient(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    recipient_id = path_uuid(request, "recipient_id", "recipient")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await register.erase_recipient(
            session=session, organisation_id=organisation_id, recipient_id=recipient_id
        )
    return web.Response(status=204)


# --- saved places ----------------------------------------------------------------------------------


@api.route(
    "POST",
    "/v1/places",
    summary="Save a place (kitchen, depot, checkpoint, hospital) usable as a pickup or drop-off by id",
    body=PlaceIn,
    response=PlaceOut,
    status=201,
    roles=("operator",),
)
async def post_place(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    body = await parse_body(request, PlaceIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await register.create_place(
            session=session,
            organisation_id=organisation_id,
            body=body,
            geocoder=request.app[REGISTER].geocoder,
        )
    place = PlaceOut.model_validate(created)
    return json_response(place, status=201, headers={"Location": f"/v1/places/{place.id}"})


@api.route(
    "GET",
    "/v1/places",
    summary="Saved places (archived ones only when asked)",
    query=PlaceListQuery,
    response=PlacePageOut,
    roles=("operator",),
)
async def list_places(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    query = parse_query(request, PlaceListQuery)
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await register.list_places(session=session, organisation_id=organisation_id, query=query)
    return json_response(PlacePageOut.model_validate(page))


@api.route("GET", "/v1/places/{place_id}", summary="A saved place", response=PlaceOut, roles=("operator",))
async def get_place(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    place_id = path_uuid(request, "place_id", "place")
    async with request.app[RUNTIME].sessionmaker() as session:
        found = await register.get_place(session=session, organisation_id=organisation_id, place_id=place_id)
    return json_response(PlaceOut.model_validate(found))


@api.route(
    "PATCH",
    "/v1/places/{place_id}",
    summary="Change a saved place (tasks already submitted keep their copy)",
    body=PlacePatchIn,
    response=PlaceOut,
    roles=("operator",),
)
async def patch_place(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    place_id = path_uuid(request, "place_id", "place")
    body = await parse_body(request, PlacePatchIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        updated = await register.update_place(
            session=session,
            organisation_id=organisation_id,
            place_id=place_id,
            body=body,
            geocoder=request.app[REGISTER].geocoder,
        )
    return json_response(PlaceOut.model_validate(updated))


@api.route(
    "DELETE",
    "/v1/places/{place_id}",
    summary="Archive a saved place: it serves no new task (idempotent)",
    status=204,
    roles=("operator",),
)
async def delete_place(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    place_id = path_uuid(request, "place_id", "place")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await register.archive_place(session=session, organisation_id=organisation_id, place_id=place_id)
    return web.Response(status=204)


# --- recurring deliveries -------------------------------------------------------------------------


async def _schedule_body(request: web.Request) -> ScheduleIn:
    body = await parse_body(request, ScheduleIn)
    if body.task.callback_url is not None and not request.app[RUNTIME].settings.webhook_allow_private_urls:
        await _refuse_unless_public(body.task.callback_url)
    return body


@api.route(
    "POST",
    "/v1/schedules/preview",
    summary="The next occurrences a schedule would make, without saving it",
    body=ScheduleIn,
    response=SchedulePreviewOut,
    roles=("operator",),
)
async def preview_schedule(request: web.Request) -> web.Response:
    await _operator(request)
    body = await _schedule_body(request)
    found = await schedules.preview(body, default_zone=request.app[RUNTIME].settings.local_time_zone)
    return json_response(SchedulePreviewOut.model_validate(found))


@api.route(
    "POST",
    "/v1/schedules",
    summary="Save a recurring delivery: each occurrence of its rule becomes a task, once",
    body=ScheduleIn,
    response=ScheduleOut,
    status=201,
    roles=("operator",),
)
async def post_schedule(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    body = await _schedule_body(request)
    zone = request.app[RUNTIME].settings.local_time_zone
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await schedules.create(
            session=session, organisation_id=organisation_id, body=body, default_zone=zone
        )
    schedule = ScheduleOut.model_validate(created)
    return json_response(schedule, status=201, headers={"Location": f"/v1/schedules/{schedule.id}"})


@api.route(
    "GET",
    "/v1/schedules",
    summary="The organisation's schedules",
    query=ScheduleListQuery,
    response=SchedulePageOut,
    roles=("operator",),
)
async def list_schedules(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    query = parse_query(request, ScheduleListQuery)
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await schedules.list_schedules(session=session, organisation_id=organisation_id, query=query)
    return json_response(SchedulePageOut.model_validate(page))


@api.route(
    "GET",
    "/v1/schedules/{schedule_id}",
    summary="A schedule, its next occurrences and the latest tasks it made",
    response=ScheduleOut,
    roles=("operator",),
)
async def get_schedule(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    schedule_id = path_uuid(request, "schedule_id", "schedule")
    async with request.app[RUNTIME].sessionmaker() as session:
        found = await schedules.get(session=session, organisation_id=organisation_id, schedule_id=schedule_id)
    return json_response(ScheduleOut.model_validate(found))


@api.route(
    "PATCH",
    "/v1/schedules/{schedule_id}",
    summary="Change a schedule: only occurrences not made into tasks yet are affected",
    body=SchedulePatchIn,
    response=ScheduleOut,
    roles=("operator",),
    errors=(409,),
)
async def patch_schedule(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    schedule_id = path_uuid(request, "schedule_id", "schedule")
    body = await parse_body(request, SchedulePatchIn)
    settings = request.app[RUNTIME].settings
    if (
        body.task is not None
        and body.task.callback_url is not None
        and not settings.webhook_allow_private_urls
    ):
        await _refuse_unless_public(body.task.callback_url)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        updated = await schedules.update(
            session=session, organisation_id=organisation_id, schedule_id=schedule_id, body=body
        )
    return json_response(ScheduleOut.model_validate(updated))


def _schedule_action(action: str, summary: str, *, errors: tuple[int, ...] = (409,)) -> None:
    change = getattr(schedules, action)

    async def handler(request: web.Request) -> web.Response:
        organisation_id = await _operator(request)
        schedule_id = path_uuid(request, "schedule_id", "schedule")
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            changed = await change(session=session, organisation_id=organisation_id, schedule_id=schedule_id)
        return json_response(ScheduleOut.model_validate(changed))

    handler.__name__ = f"{action}_schedule"
    api.route(
        "POST",
        f"/v1/schedules/{{schedule_id}}/{action}",
        summary=summary,
        response=ScheduleOut,
        roles=("operator",),
        errors=errors,
    )(handler)


_schedule_action("pause", "Pause a schedule: no task is made until it is resumed")
_schedule_action("resume", "Resume a schedule: occurrences that fell while paused are not made")
_schedule_action("end", "End a schedule for good (tasks already made go on)", errors=())


@api.route(
    "POST",
    "/v1/schedules/{schedule_id}/skip",
    summary="Skip one local date: its occurrences not made yet will not be",
    body=ScheduleSkipIn,
    response=ScheduleOut,
    roles=("operator",),
    errors=(409,),
)
async def skip_schedule_date(request: web.Request) -> web.Response:
    organisation_id = await _operator(request)
    schedule_id = path_uuid(request, "schedule_id", "schedule")
    body = await parse_body(request, ScheduleSkipIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        changed = await schedules.skip(
            session=session, organisation_id=organisation_id, schedule_id=schedule_id, day=body.date
        )
    return json_response(ScheduleOut.model_validate(changed))


# --- staff accounts, sessions and the audit trail ------------------------------------------------------


def _own_organisation(principal: Principal, requested: uuid.UUID | None) -> uuid.UUID | None:
    """The organisation an admin acts in: a person's own (asking for another finds nothing), or,
    for an admin token of no organisation, the one asked for (None: all)."""
    if principal.organisation_id is None:
        return requested
    if requested is not None and requested != principal.organisation_id:
        raise OrganisationNotFound(f"No organisation has the id {requested}.")
    return principal.organisation_id


def _cross_organisation_admin(principal: Principal) -> None:
    if principal.organisation_id is not None:
        raise ProblemError(
            403,
            "Forbidden",
            "An organisation's admin acts within it; this needs an admin token of no organisation.",
        )


@api.route(
    "POST",
    "/v1/people",
    summary="Add a member of staff; answers with their one-time set-password link",
    body=PersonIn,
    response=PersonSetupOut,
    status=201,
    roles=("admin",),
    errors=(404, 409),
)
async def post_person(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    body = await parse_body(request, PersonIn)
    organisation_id = _own_organisation(principal, body.organisation_id)
    if organisation_id is None:
        raise OrganisationRequired(
            "Say which organisation the person belongs to.",
            errors=[
                {"field": "$.organisation_id", "message": "required for an admin token of no organisation"}
            ],
        )
    settings = request.app[RUNTIME].settings
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        created = await staff.create_person(
            session=session,
            organisation_id=organisation_id,
            email=body.email,
            role=body.role,
            setup_url=settings.password_setup_url,
            setup_ttl_s=settings.password_setup_ttl_s,
        )
    out = PersonSetupOut.model_validate(created)
    return json_response(out, status=201, headers={"Location": f"/v1/people/{out.id}"})


@api.route(
    "GET",
    "/v1/people",
    summary="Members of staff of the admin's organisation",
    query=PeopleQuery,
    response=PeopleOut,
    roles=("admin",),
    errors=(404,),
)
async def get_people(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    query = parse_query(request, PeopleQuery)
    scope = _own_organisation(principal, query.organisation_id)
    async with request.app[RUNTIME].sessionmaker() as session:
        found = await staff.list_people(session=session, organisation_id=scope)
    return json_response(PeopleOut.model_validate(found))


@api.route(
    "PATCH",
    "/v1/people/{person_id}",
    summary="Change a person's role (effective on their next request)",
    body=RoleChangeIn,
    response=PersonOut,
    roles=("admin",),
)
async def patch_person(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    person_id = path_uuid(request, "person_id", "person")
    body = await parse_body(request, RoleChangeIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        changed = await staff.change_role(
            session=session, person_id=person_id, organisation_id=principal.organisation_id, role=body.role
        )
    return json_response(PersonOut.model_validate(changed))


@api.route(
    "POST",
    "/v1/people/{person_id}/disable",
    summary="Disable a person: all their sessions end and their tokens are revoked, at once",
    response=PersonOut,
    roles=("admin",),
)
async def post_disable_person(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    person_id = path_uuid(request, "person_id", "person")
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        disabled = await staff.disable_person(
            session=session, person_id=person_id, organisation_id=principal.organisation_id
        )
    return json_response(PersonOut.model_validate(disabled))


@api.route(
    "POST",
    "/v1/people/{person_id}/password-setup",
    summary="A new one-time set-password link for a person (earlier links stop working)",
    response=PersonSetupOut,
    status=201,
    roles=("admin",),
)
async def post_setup_link(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN)
    person_id = path_uuid(request, "person_id", "person")
    settings = request.app[RUNTIME].settings
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        issued = await staff.new_setup_link(
            session=session,
            person_id=person_id,
            organisation_id=principal.organisation_id,
            setup_url=settings.password_setup_url,
            setup_ttl_s=settings.password_setup_ttl_s,
        )
    return json_response(PersonSetupOut.model_validate(issued), status=201)


@api.route(
    "POST",
    "/v1/password-setup",
    summary="Set one's password with a one-time link (works once, until it expires)",
    body=PasswordSetupIn,
    status=204,
)
async def post_password_setup(request: web.Request) -> web.Response:
    body = await parse_body(request, PasswordSetupIn)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await staff.set_password(session=session, token=body.token, password=body.password)
    return web.Response(status=204)


@api.route(
    "POST",
    "/v1/sessions",
    summary="Log in: sets the session cookie and answers its CSRF token",
    body=SessionIn,
    response=SessionOut,
    status=201,
    errors=(401, 429),
)
async def post_session(request: web.Request) -> web.Response:
    body = await parse_body(request, SessionIn)
    outcome = await log_in(request, email=body.email, password=body.password)
    if outcome.refused == "throttled":
        raise ProblemError(
            429,
            "Too many requests",
            "Too many wrong passwords for this account or from this address; wait before trying again.",
            headers={"Retry-After": str(retry_after(outcome))},
        )
    if outcome.refused is not None or outcome.secret is None:
        raise ProblemError(401, "Unauthorized", "Wrong e-mail or password.")
    response = json_response(
        SessionOut.model_validate(
            {"person": outcome.person, "csrf_token": outcome.csrf_token, "expires_at": outcome.expires_at}
        ),
        status=201,
    )
    set_session_cookie(request, response, outcome.secret)
    return response


async def log_in(request: web.Request, *, email: str, password: str) -> staff.Login:
    """Check an e-mail and password under the login throttle (the API's and the console's login)."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    rules = staff.ThrottleRules(
        account=ThrottleRule(
            slow_after=settings.login_slow_after,
            lock_after=settings.login_lock_after,
            base_s=settings.login_delay_base_s,
            max_s=settings.login_delay_max_s,
            lock_s=settings.login_lock_s,
        ),
        address=ThrottleRule(
            slow_after=settings.login_address_slow_after,
            lock_after=settings.login_address_lock_after,
            base_s=settings.login_delay_base_s,
            max_s=settings.login_delay_max_s,
            lock_s=settings.login_lock_s,
        ),
        window_s=settings.login_failure_window_s,
    )
    async with runtime.sessionmaker() as session, session.begin():
        return await staff.login(
            session=session,
            email=email,
            password=password,
            address=client_address(request, trusted_proxy=settings.trusted_proxy),
            rules=rules,
            session_ttl_s=settings.session_ttl_s,
        )


def retry_after(outcome: staff.Login) -> int:
    """Whole seconds to wait after a throttled login."""
    return max(1, math.ceil(outcome.retry_after_s))


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    """The session cookie of a login: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    settings = request.app[RUNTIME].settings
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(settings.session_ttl_s),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=is_https(request, trusted_proxy=settings.trusted_proxy),
    )


def _session_of(principal: Principal) -> uuid.UUID:
    """The session a cookie-authenticated principal came with; 401 for a bearer token."""
    if principal.session_id is None:
        raise ProblemError(401, "Unauthorized", "This needs the session cookie of a person who logged in.")
    return principal.session_id


@api.route(
    "GET",
    "/v1/sessions/current",
    summary="Who is logged in with this session cookie, and the session's CSRF token",
    response=SessionOut,
    roles=("admin", "operator", "ops"),
)
async def get_current_session(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    _session_of(await authorize(request, Role.ADMIN, Role.OPERATOR, Role.OPS))
    current = await runtime.sessions.current(request)
    assert current.principal.person_id is not None
    async with runtime.sessionmaker() as session:
        person = await staff.person_view(session=session, person_id=current.principal.person_id)
    return json_response(
        SessionOut.model_validate(
            {"person": person, "csrf_token": current.csrf_token, "expires_at": current.expires_at}
        ),
        headers={"Cache-Control": "no-store"},
    )


@api.route(
    "DELETE",
    "/v1/sessions/current",
    summary="Log out: the session ends, and its cookie is refused from now on",
    status=204,
    roles=("admin", "operator", "ops"),
)
async def delete_current_session(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    # With the cookie, `authorize` also requires the CSRF token, as for every change.
    principal = await authorize(request, Role.ADMIN, Role.OPERATOR, Role.OPS)
    session_id = _session_of(principal)
    assert principal.person_id is not None
    async with runtime.sessionmaker() as session, session.begin():
        await staff.logout(
            session=session,
            session_id=session_id,
            person_id=principal.person_id,
            organisation_id=principal.organisation_id,
        )
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@api.route(
    "GET",
    "/v1/audit",
    summary="Who did what: commands with their actor, by task, volunteer, person and time",
    query=AuditQuery,
    response=AuditPageOut,
    roles=("admin", "ops"),
)
async def get_audit(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.ADMIN, Role.OPS)
    query = parse_query(request, AuditQuery)
    async with request.app[RUNTIME].sessionmaker() as session:
        page = await staff.audit_trail(
            session=session,
            query=AuditFilter(
                organisation_id=principal.organisation_id,
                task_id=query.task_id,
                volunteer_id=query.volunteer_id,
                person_id=query.person_id,
                since=query.since,
                until=query.until,
                before_id=query.before,
                limit=query.limit,
            ),
        )
    return json_response(AuditPageOut.model_validate(page), headers={"Cache-Control": "no-store"})


@api.route(
    "GET",
    "/v1/exports/tasks.csv",
    summary="Tasks and their legs created in a time range, as CSV streamed row by row (no personal data)",
    query=ExportQuery,
    roles=("operator", "ops", "admin"),
    raw_response=("text/csv",),
)
async def get_tasks_export(request: web.Request) -> web.StreamResponse:
    principal = await authorize(request, Role.OPERATOR, Role.OPS, Role.ADMIN)
    query = parse_query(request, ExportQuery)
    operator = principal.role is Role.OPERATOR
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="tasks.csv"',
            "Cache-Control": "no-store",
        }
    )
    async with request.app[RUNTIME].sessionmaker() as session:
        lines = export.export_lines(
            session=session,
            organisation_id=principal.organisation_id if operator else None,
            start=query.from_,
            end=query.to,
            volunteer_names=operator,
        )
        # The query runs before the answer starts, so an unreachable database is still a 503.
        first = await anext(lines)
        await response.prepare(request)
        chunk = [first]
        size = len(first)
        async for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK:
                await response.write("".join(chunk).encode())
                chunk, size = [], 0
        if chunk:
            await response.write("".join(chunk).encode())
    await response.write_eof()
    return response


@api.route(
    "GET",
    "/v1/reports/daily",
    summary="The daily report of the tasks created on a local day, as an HTML page with charts, in the "
    "reader's language (`?lang=`, else the `lang` cookie, else Accept-Language; Chinese by default)",
    query=DailyReportQuery,
    roles=("operator", "ops"),
    raw_response=("text/html",),
)
async def get_daily_report(request: web.Request) -> web.Response:
    principal = await authorize(request, Role.OPERATOR, Role.OPS)
    query = parse_query(request, DailyReportQuery)
    runtime = request.app[RUNTIME]
    async with runtime.sessionmaker() as session:
        report = await export.daily_report(
            session=session,
            organisation_id=principal.organisation_id if principal.role is Role.OPERATOR else None,
            day=query.date,
            time_zone=runtime.settings.local_time_zone,
        )
    return pages.daily_report_page(request, report)
