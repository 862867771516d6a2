"""The intake's pages (the operator console, the daily report): their catalogue, styles and formats.

Texts live in `i18n/` (`zh.json` and the other languages, split into parts by area such as
`zh.report.json`); templates in `templates/`. See `shared.web.pages`.

A page's style sheet sits beside its template and is inlined as one `<style>` block that the page's
Content-Security-Policy allows by its hash, so no inline script or other style can run.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import date
from importlib import resources

from aiohttp import web
from markupsafe import Markup

from services.intake.domain.daily_report import Chart, DailyFigures
from shared.web.i18n import Catalogue, request_language
from shared.web.pages import render_page

CATALOGUE = Catalogue(resources.files(__package__).joinpath("i18n"))


@functools.cache
def stylesheet(name: str) -> tuple[Markup, str]:
    """The style sheet `templates/<name>` and its CSP source (`'sha256-…'`)."""
    css = resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    # Our own file, not data: inlined as it is (escaping would change what the hash covers).
    return Markup(css), f"'sha256-{digest}'"  # noqa: S704


def page_policy(style_source: str) -> str:
    """A Content-Security-Policy for a page with no script, one hashed style block and inline SVG;
    forms may only go back to this service."""
    return "; ".join(
        (
            "default-src 'none'",
            f"style-src {style_source}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def long_date(language: str, day: date) -> str:
    """`day` written out as people write dates in `language` (e.g. 2026年12月6日（星期日）)."""
    return CATALOGUE.text(
        language,
        "date.long",
        year=day.year,
        month=CATALOGUE.text(language, f"date.month.{day.month}"),
        day=day.day,
        weekday=CATALOGUE.text(language, f"date.weekday.{day.weekday()}"),
    )


def number(language: str, value: float, digits: int = 0) -> str:
    """`value` with `digits` decimals, grouped in thousands.

    Chinese, English, Korean and Japanese all write 1,234.5 (a comma between thousands, a point before
    decimals); a language that does not would get its own rule here.
    """
    del language  # the same rule for every language the pages speak
    return f"{value:,.{digits}f}"


def daily_report_page(request: web.Request, report: DailyFigures) -> web.Response:
    """The daily report's figures as a page in the request's language."""
    style, style_source = stylesheet("report/daily.css")
    language = request_language(request)
    return render_page(
        request,
        "report/daily.html",
        CATALOGUE,
        {
            "report": report,
            "style": style,
            "date": functools.partial(long_date, language),
            "number": functools.partial(number, language),
            "bar_length": Chart.BAR_LENGTH,
            "known": CATALOGUE.of(language),  # coded labels with a text; others are shown as they are
        },
        headers={
            "Content-Security-Policy": page_policy(style_source),
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        },
    )
