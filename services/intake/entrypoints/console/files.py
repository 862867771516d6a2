"""Import, export, report: a hotline spreadsheet uploaded and submitted by the existing importer
(each row's outcome, and every problem by row and column, in a table), the tasks export for a range
of local days, and the daily report of a day.

The importer submits each task through `POST /v1/tasks` as the person who uploaded the file (their
session cookie and CSRF token), on the connection's own local address, so the API's validation,
idempotency and audit are exactly those of any other client.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from services.intake.entrypoints.console.common import (
    Staff,
    check_form_csrf,
    render_console,
    staff_page,
)
from services.intake.entrypoints.csv_import import ImportReport, import_csv_text
from shared.auth import Role
from shared.runtime import RUNTIME
from shared.staff import CSRF_HEADER, SESSION_COOKIE

routes = web.RouteTableDef()

# An upload larger than this is refused before it is read (a hotline sheet is a few hundred rows).
MAX_UPLOAD_BYTES = 1024 * 1024
IMPORT_TIMEOUT_S = 120.0


def _local_today(request: web.Request) -> date:
    return datetime.now(ZoneInfo(request.app[RUNTIME].settings.local_time_zone)).date()


async def _page(
    request: web.Request,
    staff: Staff,
    *,
    report: ImportReport | None = None,
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    today = _local_today(request)
    context: dict[str, Any] = {
        "today": today.isoformat(),
        "week_ago": (today - timedelta(days=6)).isoformat(),
        "report": report,
        "problem": problem,
    }
    return await render_console(request, "console/files.html", staff, context, status=status)


@routes.get("/console/files")
async def files_page(request: web.Request) -> web.Response:
    staff = await staff_page(request, Role.OPERATOR, Role.OPS)
    return await _page(request, staff)


def _own_address(request: web.Request) -> str:
    """This server as the request reached it, from inside: the connection's local address."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        raise web.HTTPServiceUnavailable(text="the server's own address is unknown")
    host, port = sockname[0], sockname[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@routes.post("/console/files/import")
async def import_file(request: web.Request) -> web.Response:
    """Submit the uploaded sheet's tasks; the page shows what became of every row."""
    staff = await staff_page(request, Role.OPERATOR)
    if (request.content_length or 0) > MAX_UPLOAD_BYTES + 64 * 1024:
        return await _page(request, staff, problem="files.error.too_big", status=413)
    form = await request.post()
    check_form_csrf(request, form, staff)
    upload = form.get("file")
    raw = upload.file.read(MAX_UPLOAD_BYTES + 1) if isinstance(upload, web.FileField) else b""
    if not raw:
        return await _page(request, staff, problem="files.error.no_file", status=422)
    if len(raw) > MAX_UPLOAD_BYTES:
        return await _page(request, staff, problem="files.error.too_big", status=413)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return await _page(request, staff, problem="files.error.not_utf8", status=422)
    auth = {
        "Cookie": f"{SESSION_COOKIE}={request.cookies.get(SESSION_COOKIE, '')}",
        CSRF_HEADER: staff.csrf_token,
    }
    hint = hashlib.sha256(str(staff.organisation_id).encode()).hexdigest()[:16]
    try:
        report = await import_csv_text(
            text, intake_url=_own_address(request), auth=auth, hint=hint, timeout_s=IMPORT_TIMEOUT_S
        )
    except ValueError:
        return await _page(request, staff, problem="files.error.no_task_column", status=422)
    return await _page(request, staff, report=report)


def _local_midnight(day: date, zone: ZoneInfo) -> str:
    return datetime.combine(day, time(0), tzinfo=zone).isoformat()


@routes.get("/console/files/export")
async def export(request: web.Request) -> web.Response:
    """The tasks created on the chosen local days (first to last, inclusive), as the API's CSV."""
    staff = await staff_page(request, Role.OPERATOR, Role.OPS)
    try:
        first = date.fromisoformat(request.query.get("from_date", ""))
        last = date.fromisoformat(request.query.get("to_date", ""))
    except ValueError:
        return await _page(request, staff, problem="files.error.dates", status=422)
    if last < first:
        return await _page(request, staff, problem="files.error.dates", status=422)
    zone = ZoneInfo(request.app[RUNTIME].settings.local_time_zone)
    query = urlencode(
        {"from": _local_midnight(first, zone), "to": _local_midnight(last + timedelta(days=1), zone)}
    )
    raise web.HTTPSeeOther(f"/v1/exports/tasks.csv?{query}")
