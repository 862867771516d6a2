"""POSTing signed deliveries over HTTP, with a timeout and a resolver that refuses non-public addresses."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from shared.outbound import BlockedAddressError, is_public_address


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses any answer that is not a public address.

    Checking at connect time (not only when the URL was registered) defeats DNS rebinding.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            if not is_public_address(answer["host"]):
                raise BlockedAddressError(f"{host} resolves to a non-public address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class PostResult:
    status_code: int | None
    retry_after: str | None
    latency_ms: float
    error: str | None


class WebhookSender:
    """One HTTP client for all deliveries; every call is bounded by `timeout_s`, and of each answer
    no more than `max_response_bytes` of the body is read."""

    def __init__(self, *, timeout_s: float, allow_private: bool, max_response_bytes: int = 64 * 1024) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow_private = allow_private
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=None if self._allow_private else PublicOnlyResolver(), limit=100, force_close=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers={"User-Agent": "errands-notifier/1"}
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
        assert self._session is not None, "open() the sender first"
        started = time.perf_counter()
        status: int | None = None
        retry_after: str | None = None
        error: str | None = None
        try:
            if not self._allow_private:
                await _literal_address_check(url)
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                # Only the status counts; a receiver's body, however long, is not ours to hold.
                await _read_at_most(response, self._max_response_bytes)
                if status >= 300:
                    error = f"HTTP {status}"
        except BlockedAddressError as exc:
            error = f"refused: {exc}"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            cause: Any = exc.__cause__ if isinstance(exc.__cause__, BlockedAddressError) else exc
            error = f"refused: {cause}" if cause is not exc else f"{type(exc).__name__}: {exc}"[:500]
        return PostResult(status, retry_after, round((time.perf_counter() - started) * 1000, 2), error)


async def _literal_address_check(url: str) -> None:
    # An IP literal never reaches the resolver, so it is checked here.
    host = urlsplit(url).hostname or ""
    try:
        public = is_public_address(host)
    except ValueError:
        return
    if not public:
        raise BlockedAddressError(f"{host} is not a public address")


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> None:
    read = 0
    while read < limit:
        chunk = await response.content.read(limit - read)
        if not chunk:
            return
        read += len(chunk)
