"""The dispatch board: legs nobody holds yet beside a map and one column per volunteer on duty.

Assigning a leg, and moving all of a volunteer's legs to another, are the dispatcher's actions: the
forms post here and are forwarded as the person who sent them. Each leg card carries a plain form
(a volunteer to choose and a button), which works before any script loads and from the keyboard;
`board.js` adds dragging a card onto a column (it fills and sends that same form), the map, and a
refresh of the board every few seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.intake.entrypoints.console.common import (
    DISPATCHER,
    Staff,
    check_form_csrf,
    field_errors,
    render_console,
    staff_page,
)
from services.intake.entrypoints.pages import CATALOGUE
from services.intake.service_layer import board
from shared.auth import Role
from shared.runtime import RUNTIME
from shared.web.i18n import request_language

routes = web.RouteTableDef()

# Notices a redirect after an action may name; anything else in the query is ignored.
NOTICES = frozenset({"assigned", "moved"})
REFRESH_S = 5


@dataclass(frozen=True)
class OnDuty:
    """A volunteer on duty, as the dispatcher describes them to the organisation's staff."""

    id: str
    name: str
    vehicle: str
    active_legs: int
    max_active_legs: int
    lat: float | None
    lon: float | None
    limit_reached: str | None
    insured: bool
    insured_until: date | None

    @property
    def insurance_lapsed(self) -> bool:
        if not self.insured:
            return True
        return self.insured_until is not None and self.insured_until < datetime.now(UTC).date()


def on_duty_from(item: dict[str, Any]) -> OnDuty:
    location = item.get("location") or {}
    until = item.get("insured_until")
    return OnDuty(
        id=str(item["id"]),
        name=str(item.get("name") or ""),
        vehicle=str(item.get("vehicle") or ""),
        active_legs=int(item.get("active_legs") or 0),
        max_active_legs=int(item.get("max_active_legs") or 0),
        lat=location.get("lat"),
        lon=location.get("lon"),
        limit_reached=item.get("limit_reached"),
        insured=bool(item.get("insured")),
        insured_until=date.fromisoformat(until) if isinstance(until, str) else None,
    )


async def volunteers_on_duty(
    request: web.Request, staff: Staff
) -> tuple[list[OnDuty], dict[str, Any] | None]:
    """The organisation's volunteers on duty (all pages), or the dispatcher's problem when it failed."""
    items, problem = await listed_volunteers(request, staff, "status=on_duty")
    found = [
        on_duty_from(item)
        for item in items
        # Only approved volunteers take legs; a sign-up still waiting for vetting is not a column.
        if not item.get("deactivated_at") and item.get("vetting_status", "approved") == "approved"
    ]
    return sorted(found, key=lambda v: (v.name.casefold(), v.id)), problem


async def listed_volunteers(
    request: web.Request, staff: Staff, query: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The volunteers the dispatcher lists to this person (`query` narrowing it), every page, of the
    person's own organisation only; with the dispatcher's problem when a page failed (the pages read
    until then are kept)."""
    found: list[dict[str, Any]] = []
    problem: dict[str, Any] | None = None
    cursor: str | None = None
    while True:
        path = "/v1/volunteers?" + (f"{query}&" if query else "") + "limit=200"
        answer = await request.app[DISPATCHER].call(
            request, staff, "GET", path + (f"&cursor={cursor}" if cursor else "")
        )
        body = answer.body
        if not answer.ok or not isinstance(body, dict) or not isinstance(body.get("items"), list):
            problem = answer.problem
            break
        found.extend(item for item in answer.body["items"] if isinstance(item, dict))
        cursor = answer.body.get("next_cursor")
        if not cursor:
            break
    if staff.role is not Role.OPERATOR:
        # The dispatcher scopes an operator's list itself, but shows `ops` every organisation's.
        async with request.app[RUNTIME].sessionmaker() as session:
            ours = await board.organisation_volunteer_ids(session, organisation_id=staff.organisation_id)
        found = [item for item in found if str(item.get("id")) in ours]
    return found, problem


async def _board_context(request: web.Request, staff: Staff) -> dict[str, Any]:
    async with request.app[RUNTIME].sessionmaker() as session:
        queue = await board.unassigned_legs(session, organisation_id=staff.organisation_id)
        held = await board.held_legs(session, organisation_id=staff.organisation_id)
    volunteers, problem = await volunteers_on_duty(request, staff)
    columns = [(volunteer, held.get(uuid.UUID(volunteer.id), [])) for volunteer in volunteers]
    settings = request.app[RUNTIME].settings
    return {
        "queue": queue,
        "columns": columns,
        "volunteers_problem": problem,
        "tile_url": settings.console_tile_url,
        "tile_attribution": settings.console_tile_attribution,
        "refresh_s": REFRESH_S,
        "now": datetime.now(UTC),
    }


def _with_tiles(response: web.Response, tile_url: str) -> web.Response:
    """Let the map's tiles in: the page's policy allows images from the tile server as well."""
    policy = response.headers.get("Content-Security-Policy")
    if tile_url and policy:
        parts = urlsplit(tile_url)
        origin = f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"
        response.headers["Content-Security-Policy"] = policy.replace(
            "img-src 'self'", f"img-src 'self' {origin}", 1
        )
    return response


async def _render_board(
    request: web.Request,
    staff: Staff,
    *,
    notice: str | None = None,
    errors: list[str] | None = None,
    status: int = 200,
    override_leg: str | None = None,
) -> web.Response:
    context = await _board_context(request, staff)
    context |= {"notice": notice, "errors": errors or [], "override_leg": override_leg}
    template = "console/board_live.html" if request.query.get("part") == "live" else "console/board.html"
    response = await render_console(request, template, staff, context, status=status)
    return _with_tiles(response, context["tile_url"])


@routes.get("/console/board")
async def board_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR, Role.OPS)
    notice = request.query.get("notice")
    return await _render_board(request, staff, notice=notice if notice in NOTICES else None)


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


async def _problem_page(
    request: web.Request, staff: Staff, problem: dict[str, Any], *, leg: str | None
) -> web.Response:
    messages = field_errors(problem, request_language(request))
    flat = [*messages.general, *(m for ms in messages.by_field.values() for m in ms)]
    status = int(problem.get("status") or 502)
    # A rule the dispatcher would bend with a reason (rest owed, no insurance, a cap): offer the reason.
    bendable = status == 409 and leg is not None
    return await _render_board(
        request,
        staff,
        errors=flat,
        status=status if 400 <= status < 500 else 502,
        override_leg=leg if bendable else None,
    )


@routes.post("/console/board/assign")
async def assign(request: web.Request) -> web.Response:
    """Give a leg to a volunteer (the queue's form, also sent when a card is dropped on a column)."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    leg_id, volunteer_id = _uuid(form.get("leg_id")), _uuid(form.get("volunteer_id"))
    if leg_id is None or volunteer_id is None:
        key = "board.error.choose_volunteer" if leg_id else "board.error.no_leg"
        return await _render_board(request, staff, errors=[_t(request, key)], status=422)
    body: dict[str, Any] = {"volunteer_id": volunteer_id}
    reason = str(form.get("override_reason") or "").strip()
    if reason:
        body["override"] = {"reason": reason}
    answer = await request.app[DISPATCHER].call(
        request, staff, "POST", f"/v1/legs/{leg_id}/assign", json_body=body
    )
    if not answer.ok:
        return await _problem_page(request, staff, answer.problem, leg=leg_id)
    raise web.HTTPSeeOther("/console/board?notice=assigned")


@routes.post("/console/board/move")
async def move_all(request: web.Request) -> web.Response:
    """Move every leg a volunteer holds and has not picked up to another volunteer on duty."""
    staff = await staff_page(request, Role.OPERATOR)
    form = await request.post()
    check_form_csrf(request, form, staff)
    source, target = _uuid(form.get("from_volunteer_id")), _uuid(form.get("to_volunteer_id"))
    if source is None or target is None or source == target:
        return await _render_board(
            request, staff, errors=[_t(request, "board.error.choose_other")], status=422
        )
    body: dict[str, Any] = {"to_volunteer_id": target, "reason": "moved from the dispatch board"}
    reason = str(form.get("override_reason") or "").strip()
    if reason:
        body["override"] = {"reason": reason}
    answer = await request.app[DISPATCHER].call(
        request, staff, "POST", f"/v1/volunteers/{source}/legs/release", json_body=body
    )
    if not answer.ok:
        return await _problem_page(request, staff, answer.problem, leg=None)
    raise web.HTTPSeeOther("/console/board?notice=moved")


def _t(request: web.Request, key: str, **values: object) -> str:
    return CATALOGUE.text(request_language(request), key, **values)
