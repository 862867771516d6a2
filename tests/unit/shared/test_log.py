"""Log lines never carry a credential, whoever wrote them and however the credential got there."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import structlog
from aiohttp import web

from shared.http import Api, ProblemAppRunner, create_base_app
from shared.log import configure_logging, scrub_credentials
from shared.settings import Settings

TOKEN = "erk_op_" + "Zk3-Qx_9" * 5


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        f"b'Authorization: bearer {TOKEN}\\x01'",
        f"Got more than 8190 bytes when reading: b'Bearer {TOKEN}pppppppppp...'.",
        '"authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"',
        f"GET /v1/tasks?access_token={TOKEN}",
        f"token={TOKEN.replace('erk_op_', 'erk_vol_')}",
        "secret whsec_c2VjcmV0LWtleS1ieXRlcw== rotated",
    ],
)
def test_credentials_are_scrubbed_wherever_they_stand(text: str) -> None:
    scrubbed = scrub_credentials(text)
    assert "[redacted]" in scrubbed
    for secret in (TOKEN, TOKEN[7:], "eyJhbGciOi", "c2VjcmV0LWtleS1ieXRlcw"):
        assert secret not in scrubbed


def test_text_without_credentials_is_left_as_it_is() -> None:
    text = "clerk_name_x asked for the Bearer scheme's docs at https://example.org/erk"
    assert scrub_credentials(text) == text.replace("Bearer scheme's", "Bearer [redacted]'s")
    assert scrub_credentials("leg.assigned to volunteer 42") == "leg.assigned to volunteer 42"


@pytest.fixture
def configured_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        yield
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize(
    "header",
    [b"Bearer " + TOKEN.encode() + b"\x01", b"Bearer " + TOKEN.encode() + b"p" * 9000],
    ids=["control byte", "8 KiB of padding"],
)
async def test_a_malformed_request_carrying_a_token_logs_no_token(
    configured_logging: None, capsys: pytest.CaptureFixture[str], log_format: str, header: bytes
) -> None:
    configure_logging(Settings(log_format=log_format), service="test")
    runner = ProblemAppRunner(create_base_app(api=Api(title="t"), readiness=[]))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: " + header + b"\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:100]
    logged = capsys.readouterr().err
    assert "Error handling request" in logged, "aiohttp's own error line went through our renderer"
    assert "[redacted]" in logged
    assert TOKEN not in logged and TOKEN[7:20] not in logged
