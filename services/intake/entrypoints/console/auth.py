"""Logging in and out of the console, and setting one's password from a one-time link.

The same login as `POST /v1/sessions` (its throttle and lockout, its cookie); logging out ends the
session in every service at once and tells the browser to drop what it kept of the pages.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from services.intake.domain.errors import SetupLinkInvalid
from services.intake.entrypoints.console.common import (
    FieldErrors,
    check_form_csrf,
    check_same_origin,
    current_staff,
    field_errors,
    language_of,
    render_console,
    request_text,
    see_other,
    staff_page,
)
from services.intake.entrypoints.http import log_in, retry_after, set_session_cookie
from services.intake.entrypoints.schemas import PasswordSetupIn, SessionIn
from services.intake.service_layer import staff as staff_service
from shared.http import validation_problem
from shared.runtime import RUNTIME
from shared.staff import SESSION_COOKIE

routes = web.RouteTableDef()

HOME = "/console/tasks"


def _safe_next(raw: str | None) -> str:
    """Where to go after logging in: a console path of this site only, never another site."""
    if not raw:
        return HOME
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/console") or raw.startswith("//"):
        return HOME
    if parts.path in ("/console/login", "/console/logout"):
        return HOME
    return raw


@routes.get("/console")
async def console_home(request: web.Request) -> web.Response:
    return see_other(HOME)


@routes.get("/console/login")
async def login_page(request: web.Request) -> web.Response:
    target = _safe_next(request.query.get("next"))
    if await current_staff(request) is not None:
        return see_other(target)
    return await render_console(
        request,
        "console/login.html",
        None,
        {"next": target, "email": "", "errors": None, "logged_out": request.query.get("logged_out") == "1"},
    )


@routes.post("/console/login")
async def login(request: web.Request) -> web.Response:
    check_same_origin(request)
    form = await request.post()
    target = _safe_next(str(form.get("next") or ""))
    email = str(form.get("email") or "")
    context = {"next": target, "email": email, "logged_out": False}
    lang = language_of(request)
    try:
        body = SessionIn.model_validate({"email": email, "password": str(form.get("password") or "")})
    except ValidationError as exc:
        problem = validation_problem(exc)
        errors = field_errors({"errors": problem.errors}, lang, known_fields=("email", "password"))
        return await render_console(
            request, "console/login.html", None, {**context, "errors": errors}, status=422
        )
    outcome = await log_in(request, email=body.email, password=body.password)
    if outcome.refused == "throttled":
        errors = FieldErrors.message(request_text(request, "login.throttled", seconds=retry_after(outcome)))
        response = await render_console(
            request, "console/login.html", None, {**context, "errors": errors}, status=429
        )
        response.headers["Retry-After"] = str(retry_after(outcome))
        return response
    if outcome.refused is not None or outcome.secret is None:
        errors = FieldErrors.message(request_text(request, "login.wrong"))
        return await render_console(
            request, "console/login.html", None, {**context, "errors": errors}, status=401
        )
    response = see_other(target)
    set_session_cookie(request, response, outcome.secret)
    return response


@routes.post("/console/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session everywhere; the browser forgets the cookie and every page it kept."""
    staff = await staff_page(request)
    form = await request.post()
    check_form_csrf(request, form, staff)
    found = await request.app[RUNTIME].sessions.current(request)
    async with request.app[RUNTIME].sessionmaker() as session, session.begin():
        await staff_service.logout(
            session=session,
            session_id=found.principal.session_id or found.principal.token_id,
            person_id=staff.person_id,
            organisation_id=staff.organisation_id,
        )
    response = see_other("/console/login?logged_out=1", **{"Clear-Site-Data": '"cache"'})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/password-setup")
async def password_setup_page(request: web.Request) -> web.Response:
    """The page a one-time link opens (`#token=...`; a script moves it into the form's token field)."""
    return await render_console(
        request, "console/password_setup.html", None, {"errors": None, "done": False, "token": ""}
    )


@routes.post("/password-setup")
async def password_setup(request: web.Request) -> web.Response:
    check_same_origin(request)
    form = await request.post()
    token = str(form.get("token") or "")
    lang = language_of(request)
    context = {"token": token, "done": False}
    try:
        body = PasswordSetupIn.model_validate({"token": token, "password": str(form.get("password") or "")})
    except ValidationError as exc:
        errors = field_errors(
            {"errors": validation_problem(exc).errors}, lang, known_fields=("token", "password")
        )
        return await render_console(
            request, "console/password_setup.html", None, {**context, "errors": errors}, status=422
        )
    try:
        async with request.app[RUNTIME].sessionmaker() as session, session.begin():
            await staff_service.set_password(session=session, token=body.token, password=body.password)
    except SetupLinkInvalid:
        errors = FieldErrors.message(request_text(request, "password_setup.invalid_link"))
        return await render_console(
            request, "console/password_setup.html", None, {**context, "errors": errors}, status=400
        )
    return await render_console(
        request, "console/password_setup.html", None, {**context, "errors": None, "done": True}
    )
