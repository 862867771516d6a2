"""Refusals aiohttp makes on a connection before any middleware runs, answered as problems too.

A request line or header over aiohttp's size limits, or a request it cannot parse, never reaches the
application: aiohttp's `RequestHandler.handle_error` answers it in text/plain. aiohttp (3.14) has no
setting for that answer. `web.Server` takes a request factory and a handler, but `Server.__call__`
always builds a plain `RequestHandler` for each connection, and `AppRunner` builds its `web.Server`
inside `Application._make_handler`. So the narrowest change is two subclasses: a request handler
that answers its refusals as problems, and a server that builds it, which `ProblemAppRunner` makes
from the settings of the server the application built.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from shared.http.problems import problem_response


class _ProblemRequestHandler(RequestHandler):
    """Refusals aiohttp makes before any middleware runs (a request line or header over its size
    limits, a malformed request) answered as problem+json too, instead of aiohttp's text/plain."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if an answer already began
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        # Never echo the request back (it may carry a token); name only what kind of refusal it is.
        if status >= 500:
            detail = "Something went wrong on our side."
        else:
            detail = f"The request could not be read ({type(exc).__name__ if exc else phrase})."
        response = problem_response(status, phrase, detail)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    """A `web.Server` whose connections are handled by `_ProblemRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer even aiohttp's own parse errors as problem+json."""

    async def _make_server(self) -> web.Server:
        built = await super()._make_server()  # starts the application and freezes it
        # The same application handler, request factory and connection settings, on our server class.
        return _ProblemServer(
            built.request_handler,
            request_factory=built.request_factory,
            handler_cancellation=built.handler_cancellation,
            **built._kwargs,
        )
