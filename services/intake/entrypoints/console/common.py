"""What every page of the operator console shares: who is logged in, CSRF on forms, the page frame,
the escalations count, the console's static files, and the client that asks the dispatcher.

A page handler starts with `staff = await staff_page(request, Role.OPERATOR, ...)` (a person without a
live session is sent to the login page, one with another role gets a 403 page), checks a form with
`check_form_csrf`, and answers with `render_console`. Actions the dispatcher owns go through
`request.app[DISPATCHER]`, which forwards the person's own session cookie and CSRF token, so the
dispatcher authorizes and audits that person.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiMapping

from services.intake.adapters import console_queries
from services.intake.entrypoints.pages import CATALOGUE
from shared.auth import Role
from shared.events import current_actor
from shared.http import ProblemError
from shared.ningbo import DISTRICTS
from shared.runtime import RUNTIME
from shared.staff import CSRF_HEADER, SESSION_COOKIE, is_https
from shared.web.i18n import request_language
from shared.web.pages import render_page

routes = web.RouteTableDef()

STATIC_DIR = resources.files("services.intake.entrypoints").joinpath("static", "console")
CONSOLE_STATIC = "/console/static"
IMMUTABLE = "public, max-age=31536000, immutable"

# Everything the console's pages load comes from this service: scripts and styles as files, images
# (delivery photos) through the console's own routes; no inline script, nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class PageAnswer(Exception):
    """A whole page to answer with at once (a 403 or 404 page), raised from deep in a handler."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages raised as `PageAnswer` are answered as they are (the API's middleware would make
    problem+json of an HTTP error)."""
    try:
        return await handler(request)
    except PageAnswer as answer:
        return answer.response


@dataclass(frozen=True, slots=True)
class Staff:
    """The person behind a console request."""

    person_id: uuid.UUID
    email: str
    role: Role
    organisation_id: uuid.UUID
    csrf_token: str

    @property
    def name(self) -> str:
        """How the console names the person (people are known by their e-mail address)."""
        return self.email

    @property
    def can_change(self) -> bool:
        """Operators act; `ops` only reads (no forms are shown to them)."""
        return self.role is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class NavEntry:
    path: str
    label: str  # catalogue key
    roles: tuple[Role, ...]


# Every console page, in the order of the menu; each shown only to the roles that may use it.
NAV: tuple[NavEntry, ...] = (
    NavEntry("/console/tasks", "nav.tasks", (Role.OPERATOR, Role.OPS)),
    NavEntry("/console/tasks/new", "nav.new_task", (Role.OPERATOR,)),
    NavEntry("/console/board", "nav.board", (Role.OPERATOR, Role.OPS)),
    NavEntry("/console/volunteers", "nav.volunteers", (Role.OPERATOR, Role.OPS)),
    NavEntry("/console/recipients", "nav.recipients", (Role.OPERATOR,)),
    NavEntry("/console/places", "nav.places", (Role.OPERATOR,)),
    NavEntry("/console/schedules", "nav.schedules", (Role.OPERATOR,)),
    NavEntry("/console/files", "nav.files", (Role.OPERATOR, Role.OPS)),
)

CONSOLE_ROLES = (Role.OPERATOR, Role.OPS)


def nav_for(role: Role) -> list[NavEntry]:
    return [entry for entry in NAV if role in entry.roles]


def see_other(location: str, **headers: str) -> web.Response:
    """A 303 to `location` (after a form, or to the login page), never stored."""
    return web.Response(
        status=303, headers={"Location": location, "Cache-Control": "no-store", "Vary": "Cookie", **headers}
    )


def _login_redirect(request: web.Request) -> PageAnswer:
    if request.headers.get("HX-Request") == "true":
        # A poll or an htmx form of a page whose session ended: the whole page goes to the login.
        current = urlsplit(request.headers.get("HX-Current-URL", "/console"))
        page = current.path + (f"?{current.query}" if current.query else "")
        location = f"/console/login?next={quote(page, safe='')}"
        return PageAnswer(web.Response(headers={"HX-Redirect": location, "Cache-Control": "no-store"}))
    target = request.path_qs if request.method == "GET" else request.path
    return PageAnswer(see_other(f"/console/login?next={quote(target, safe='')}"))


async def current_staff(request: web.Request) -> Staff | None:
    """The person of the request's live session, or None (no cookie, ended, disabled, not staff);
    a 403 page for a person of no organisation."""
    if SESSION_COOKIE not in request.cookies:
        return None
    try:
        found = await request.app[RUNTIME].sessions.current(request)
    except ProblemError:
        return None
    principal = found.principal
    if principal.person_id is None:
        return None
    if principal.organisation_id is None:
        # A person of no organisation (an administrator of them all) has no console to use.
        raise PageAnswer(_render(request, "console/forbidden.html", None, {}, status=403))
    return Staff(
        person_id=principal.person_id,
        email=found.email,
        role=principal.role,
        organisation_id=principal.organisation_id,
        csrf_token=found.csrf_token,
    )


async def staff_page(request: web.Request, *roles: Role) -> Staff:
    """The logged-in person, holding one of `roles` (all console roles when none is named).

    No live session: a 303 to the login page that comes back here. Another role: a 403 page.
    The person becomes the actor of what the request changes (the audit trail, events).
    """
    staff = await current_staff(request)
    if staff is None:
        raise _login_redirect(request)
    allowed = roles or CONSOLE_ROLES
    if staff.role not in allowed:
        raise PageAnswer(_render(request, "console/forbidden.html", staff, {}, status=403))
    current_actor.set(f"person:{staff.person_id}")
    return staff


def check_form_csrf(request: web.Request, form: MultiMapping[Any], staff: Staff) -> None:
    """A form's hidden `csrf_token` field, or an htmx request's `X-CSRF-Token`, must be the session's."""
    sent = request.headers.get(CSRF_HEADER) or form.get("csrf_token") or ""
    if not isinstance(sent, str) or not hmac.compare_digest(
        sent.encode(errors="replace"), staff.csrf_token.encode()
    ):
        raise PageAnswer(_render(request, "console/forbidden.html", staff, {"csrf": True}, status=403))


def check_same_origin(request: web.Request) -> None:
    """A form sent before any session exists (login, setting a password) must come from our own
    pages: a browser's `Origin` naming another site is refused, so no site can log a person in as
    someone else. (Forms of a session are protected by its CSRF token and SameSite cookie.)"""
    origin, site = request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
    trusted = request.app[RUNTIME].settings.trusted_proxy
    scheme = "https" if is_https(request, trusted_proxy=trusted) else "http"
    foreign = origin not in (None, "null", f"{scheme}://{request.host}")
    if foreign or site in ("cross-site", "same-site"):
        raise PageAnswer(_render(request, "console/forbidden.html", None, {"csrf": True}, status=403))


def not_found(request: web.Request, staff: Staff) -> PageAnswer:
    """The console's 404 page: also what another organisation's record looks like."""
    return PageAnswer(_render(request, "console/not_found.html", staff, {}, status=404))


def _page_headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Vary": "Accept-Language, Cookie",
        "Content-Security-Policy": PAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def _render(
    request: web.Request,
    template: str,
    staff: Staff | None,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    escalations: console_queries.Escalations | None = None,
) -> web.Response:
    return render_page(
        request,
        template,
        CATALOGUE,
        {
            "staff": staff,
            "nav": nav_for(staff.role) if staff else [],
            "escalations": escalations or console_queries.Escalations(total=0, tasks=[]),
            "static_url": static_url,
            "current_path": request.path,
            "page_url": page_url(request),
            "when": functools.partial(local_time, zone=local_zone(request)),
            "choices": functools.partial(choices, request),
            "district_label": functools.partial(district_label, language_of(request)),
            **context,
        },
        status=status,
        headers=_page_headers(),
    )


async def escalations_of(request: web.Request, staff: Staff) -> console_queries.Escalations:
    async with request.app[RUNTIME].sessionmaker() as session:
        return await console_queries.escalations(session, organisation_id=staff.organisation_id)


async def render_console(
    request: web.Request,
    template: str,
    staff: Staff | None,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """A console page: the frame (person, menu, escalations, language switch) around `template`.

    Never stored by the browser or a cache (`no-store`, `Vary: Cookie`): after logging out, the back
    button cannot show a page again.
    """
    escalations = await escalations_of(request, staff) if staff is not None else None
    return _render(request, template, staff, context, status=status, escalations=escalations)


def page_url(request: web.Request) -> Any:
    """`page_url(lang="en")`: this page's address with one query parameter set (the language switch)."""

    def build(**values: str) -> str:
        query = {**request.query, **values}
        return str(request.rel_url.with_query(query))

    return build


def local_zone(request: web.Request) -> ZoneInfo:
    """The time zone the console shows and reads times in (the service's local one)."""
    return ZoneInfo(request.app[RUNTIME].settings.local_time_zone)


def local_time(moment: datetime | str | None, *, zone: ZoneInfo) -> str:
    """A time as the console shows it: local, to the minute; empty for none."""
    if moment is None or moment == "":
        return ""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def choices(request: web.Request, values: Iterable[str], group: str) -> list[tuple[str, str]]:
    """Options for a select: each value with its catalogue wording (`group.value`)."""
    return [(value, request_text(request, f"{group}.{value}")) for value in values]


def district_label(lang: str, name: str | None) -> str:
    """A district as the staff's language writes it (its Chinese name in Chinese)."""
    if name is None:
        return ""
    district = next((d for d in DISTRICTS if d.name == name), None)
    if district is None:
        return name
    return district.name_zh if lang in ("zh", "ja") else district.name


def form_time(raw: str, *, zone: ZoneInfo) -> datetime:
    """A `datetime-local` field's value (no zone) as a time in `zone`; ValueError if it is none, or is
    a moment with no UTC time (the first hours of year 1 east of Greenwich, which the database and
    every comparison with an aware time would fail on)."""
    value = datetime.fromisoformat(raw)
    value = value if value.tzinfo else value.replace(tzinfo=zone)
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{raw!r} has no UTC time") from exc
    return value


def form_whole_number(raw: str | None, *, digits: int) -> int | None:
    """A field's value as a whole number of at most `digits` ASCII digits, else None (`str.isdigit`
    also accepts digits `int` refuses, such as superscripts)."""
    if raw and len(raw) <= digits and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def language_of(request: web.Request) -> str:
    return request_language(request)


def request_text(request: web.Request, key: str, **values: object) -> str:
    """A catalogue text in the request's language."""
    return CATALOGUE.text(language_of(request), key, **values)


# Field errors ---------------------------------------------------------------------------------------

# Pydantic's error types, as the API's problem+json names them, and the catalogue's wording of each.
_ERROR_KEYS = {
    "missing": "error.missing",
    "string_too_short": "error.missing",
    "string_too_long": "error.too_long",
    "too_short": "error.missing",
    "too_long": "error.too_many",
    "greater_than": "error.too_small",
    "greater_than_equal": "error.too_small",
    "less_than": "error.too_large",
    "less_than_equal": "error.too_large",
    "float_parsing": "error.number",
    "int_parsing": "error.number",
    "float_type": "error.number",
    "int_type": "error.number",
    "uuid_parsing": "error.choose",
    "uuid_type": "error.choose",
    "literal_error": "error.choose",
    "datetime_parsing": "error.time",
    "datetime_from_date_parsing": "error.time",
    "timezone_aware": "error.time",
    "string_pattern_mismatch": "error.invalid",
    "location_missing": "error.location_missing",
}
# A rule's own refusal (`value_error`) worded by what its message says; others keep the API's words.
_RULE_KEYS = (
    ("lat and lon go together", "error.lat_lon"),
    ("give lat and lon, or", "error.where"),
    ("must be in the future", "error.future"),
)


# The dispatcher's refusals of a volunteer for a leg, by the problem's title, and their wording.
_REFUSAL_KEYS = {
    "Volunteer off duty": "refusal.off_duty",
    "Insurance lapsed": "refusal.insurance",
    "Rest owed": "refusal.rest",
    "Daily cap reached": "refusal.daily_cap",
    "Volunteer not vetted": "refusal.not_vetted",
}


def _error_key(error: Mapping[str, Any]) -> str | None:
    kind, message = str(error.get("type") or ""), str(error.get("message") or "")
    if kind == "value_error":
        return next((key for text, key in _RULE_KEYS if text in message), None)
    return _ERROR_KEYS.get(kind)


@dataclass
class FieldErrors:
    """Messages for a form, each under the name of the field it is about, in the staff's language.

    Built from a problem's `errors[{field, message, type}]`: `aliases` maps the API's field paths
    (`$.pickup.lat`, `volunteer_id`) to the form's field names (`pickup_lat`); a path not mapped keeps
    its own name with `$.` taken off and dots as underscores. Known error types are worded from the
    catalogue; others show the API's own message. `general` holds what belongs to no field.
    """

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    @classmethod
    def message(cls, text: str) -> FieldErrors:
        """Errors that are one message about the whole form."""
        return cls(general=[text])

    def get(self, name: str) -> list[str]:
        return self.by_field.get(name, [])

    def add(self, name: str | None, message: str) -> None:
        if name is None:
            self.general.append(message)
        else:
            self.by_field.setdefault(name, []).append(message)


def form_field_name(api_field: str, aliases: Mapping[str, str] | None = None) -> str:
    plain = api_field.removeprefix("$.").removeprefix("$").removeprefix("body.")
    if aliases:
        for prefix, name in sorted(aliases.items(), key=lambda item: -len(item[0])):
            if plain == prefix or plain.startswith(prefix + ".") or plain.startswith(prefix + "["):
                return name
    return plain.replace(".", "_").replace("[", "_").replace("]", "")


def field_errors(
    problem: Mapping[str, Any],
    lang: str,
    *,
    aliases: Mapping[str, str] | None = None,
    known_fields: Iterable[str] | None = None,
    refusal_field: str | None = None,
) -> FieldErrors:
    """A problem+json answer's errors as per-field messages in `lang` (see `FieldErrors`); a known
    refusal without field errors (a volunteer off duty, uninsured...) is said under `refusal_field`."""
    result = FieldErrors()
    fields = set(known_fields) if known_fields is not None else None
    for error in problem.get("errors") or []:
        api_field = str(error.get("field") or "")
        key = _error_key(error)
        message = (
            CATALOGUE.text(lang, key)
            if key
            else str(error.get("message") or "").removeprefix("Value error, ")
        )
        name = form_field_name(api_field, aliases) if api_field else None
        if name is not None and fields is not None and name not in fields:
            result.add(None, message if key is None else f"{name}: {message}")
        else:
            result.add(name, message)
    if not result:
        key = _REFUSAL_KEYS.get(str(problem.get("title") or ""))
        message = (
            CATALOGUE.text(lang, key) if key else str(problem.get("detail") or problem.get("title") or "")
        )
        result.add(refusal_field if key else None, message)
    return result


def problem_of(error: ProblemError) -> dict[str, Any]:
    return {
        "status": error.status,
        "title": error.title,
        "detail": error.detail,
        "errors": error.errors or [],
    }


# The dispatcher ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatcherAnswer:
    status: int
    body: Any
    content_type: str
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> dict[str, Any]:
        if isinstance(self.body, dict):
            return self.body
        return {"status": self.status, "title": "Error", "detail": f"The dispatcher answered {self.status}."}


class DispatcherClient:
    """The dispatcher's HTTP API, called as the logged-in person (their session cookie and CSRF token).

    The dispatcher checks the session against the same `auth.sessions` table, so it authorizes and
    audits that person; nothing here holds a credential of its own.
    """

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def context(self, _: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar())
        try:
            yield
        finally:
            await self._session.close()
            self._session = None

    async def call(
        self, request: web.Request, staff: Staff, method: str, path: str, *, json_body: Any = None
    ) -> DispatcherAnswer:
        """`method path` on the dispatcher as the person of `request`; a problem answer when it is away.

        `path` is a path of the dispatcher's (some come from what the dispatcher said, e.g. a photo's
        address): anything else, such as `@host/...` that would make the base address a user name
        and send the person's session to another host, is refused before any connection."""
        assert self._session is not None, "the dispatcher client is opened with the app"
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            return DispatcherAnswer(
                502,
                {"status": 502, "title": "Bad gateway", "detail": "No such address on the dispatcher."},
                "application/problem+json",
            )
        secret = request.cookies.get(SESSION_COOKIE, "")
        headers = {
            "Cookie": f"{SESSION_COOKIE}={secret}",
            CSRF_HEADER: staff.csrf_token,
            "Accept": "application/json",
            "Accept-Language": language_of(request),
        }
        if "traceparent" in request.headers:
            headers["traceparent"] = request.headers["traceparent"]
        try:
            async with self._session.request(
                method,
                f"{self.base_url}{path}",
                json=json_body,
                headers=headers,
                allow_redirects=False,
            ) as response:
                data = await response.read()
                content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError):
            return DispatcherAnswer(
                503,
                {"status": 503, "title": "Service unavailable", "detail": "The dispatcher did not answer."},
                "application/problem+json",
            )
        body: Any = None
        if content_type.endswith("json") and data:
            try:
                body = json.loads(data)
            except ValueError:
                body = None
        return DispatcherAnswer(response.status, body, content_type, data)


DISPATCHER = web.AppKey("dispatcher", DispatcherClient)


# Static files ---------------------------------------------------------------------------------------


@functools.cache
def _static_version(name: str) -> str:
    return hashlib.sha256(STATIC_DIR.joinpath(name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """A console static file's address, with its content hash so browsers may keep it for a year."""
    return f"{CONSOLE_STATIC}/{name}?v={_static_version(name)}"


_STATIC_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".wav": "audio/wav",
}


@routes.get(CONSOLE_STATIC + "/{name}")
async def console_static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _STATIC_TYPES:
        raise web.HTTPNotFound()
    resource = STATIC_DIR.joinpath(name)
    if not resource.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=resource.read_bytes(),
        content_type=_STATIC_TYPES[suffix],
        charset=None if suffix == ".wav" else "utf-8",
        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
    )


# Escalations on every page ----------------------------------------------------------------------------


@routes.get("/console/escalations")
async def escalations_fragment(request: web.Request) -> web.Response:
    """The frame's escalations, polled by every page to keep its badge and the tab's title current."""
    staff = await staff_page(request)
    escalations = await escalations_of(request, staff)
    return _render(
        request, "console/_escalations.html", staff, {"escalations": escalations}, escalations=escalations
    )
