"""structlog set-up: JSON off a terminal, readable on one; stdlib loggers go through the same renderer."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from shared.settings import Settings

# Keys whose values must never reach a log line, whatever a caller binds.
_SECRET_KEYS = frozenset({"token", "secret", "confirmation_code", "password", "authorization"})


def _drop_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_KEYS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


# Credentials a line may quote without naming them: an `Authorization` header echoed by the HTTP
# parser's error, a traceback, a URL. `Bearer` is followed by whatever was sent (up to a quote,
# backslash or space, as rendered in a repr or JSON); API tokens are `erk_<role>_` + url-safe base64
# (shared/auth.py) and webhook secrets `whsec_` + base64, wherever they stand.
_CREDENTIAL = re.compile(
    r"(?P<scheme>\bbearer(?:\s|%20|\+|\\[tnr])+)[^\s\"'\\,;<>]+"
    r"|(?<![A-Za-z0-9])(?:erk_[a-z]+_[A-Za-z0-9_-]+|whsec_[A-Za-z0-9+/=]+)",
    re.IGNORECASE,
)


def scrub_credentials(text: str) -> str:
    """`text` with every bearer token and webhook secret in it replaced by `[redacted]`."""
    return _CREDENTIAL.sub(lambda m: (m.group("scheme") or "") + "[redacted]", text)


def _scrub_rendered(_: Any, __: str, line: Any) -> str:
    # Last, after the renderer, over its line: exception text and tracebacks included, whoever logged.
    return scrub_credentials(str(line))


def configure_logging(settings: Settings, *, service: str) -> None:
    """Route structlog and stdlib logging through one renderer, with contextvars merged into every line."""
    on_terminal = sys.stderr.isatty()
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not on_terminal)
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=on_terminal)
    )
    structlog.configure(
        processors=[
            # Drop below-level lines before any work is spent rendering them.
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.processors.format_exc_info if as_json else structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Stdlib records (aiohttp's parse errors among them) carry exc_info as a tuple until here.
            *([structlog.processors.format_exc_info] if as_json else []),
            renderer,
            _scrub_rendered,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Library chatter stays at WARNING unless asked for: aiokafka logs every rebalance step at INFO.
    for noisy in ("aiokafka", "aiohttp.access", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
