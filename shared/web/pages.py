"""Server-rendered pages: Jinja2 templates through aiohttp-jinja2, in the request's language.

A service that serves pages calls `setup_pages(app, package)` once: its templates live in the
package's `templates/` directory and the vendored libraries are served beside them. A handler
answers with `render_page(request, "name.html", catalogue, {...})`; the template gets `lang`, `t(key,
**values)` for the catalogue's texts in that language, `vendor_url(library, file)` and
`language_names` for the language switch. Choosing a language with `?lang=` is remembered in a
cookie for the next pages.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from shared.web.i18n import LANGUAGE_COOKIE, LANGUAGE_NAMES, LANGUAGES, Catalogue, request_language
from shared.web.static import add_vendor_routes, vendor_url

ONE_YEAR_S = 365 * 24 * 3600


def setup_pages(app: web.Application, package: str) -> None:
    """Templates from `package`'s `templates/` directory, autoescaped; vendored libraries served."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    aiohttp_jinja2.get_env(app).globals.update(vendor_url=vendor_url, language_names=LANGUAGE_NAMES)
    add_vendor_routes(app)


def render_page(
    request: web.Request,
    template: str,
    catalogue: Catalogue,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """`template` rendered in the request's language, never cached by a shared cache."""
    language = request_language(request)
    text = aiohttp_jinja2.render_string(
        template,
        request,
        {**context, "lang": language, "t": functools.partial(catalogue.text, language)},
    )
    response = web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={
            "Content-Language": language,
            "Vary": "Accept-Language, Cookie",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )
    if request.query.get("lang") in LANGUAGES and request.cookies.get(LANGUAGE_COOKIE) != language:
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=ONE_YEAR_S, samesite="Lax", path="/")
    return response
