"""The console's tasks: the list with its filters (kept current by polling), a new task, one task's page."""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from aiohttp import web

from services.intake.adapters import console_queries
from services.intake.domain.model import Kind, Priority, TaskStatus
from services.intake.entrypoints.console.common import (
    FieldErrors,
    district_label,
    form_time,
    language_of,
    local_zone,
    render_console,
    request_text,
    staff_page,
)
from shared.auth import Role
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
        before=int(before) if before.isdigit() and len(before) < 19 else None,
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
