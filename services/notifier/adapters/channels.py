"""Ways to reach a recipient, behind one interface: e-mail over SMTP, SMS through an HTTP gateway."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any, Protocol

import aiohttp
import aiosmtplib

from services.notifier.domain.messages import Message
from shared.crypto import mask_email, mask_phone


class ChannelError(Exception):
    """The channel could not hand the message over; the text never contains the recipient's address."""


class Channel(Protocol):
    name: str

    def address_of(self, contact: dict[str, Any]) -> str | None:
        """Where this channel reaches the recipient, from their unsealed contact details."""

    def masked(self, address: str) -> str | None:
        """The address as it may appear in events and logs."""

    async def send(self, *, to: str, message: Message) -> None:
        """Hand the message over, or raise ChannelError."""


class EmailChannel:
    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout_s: float,
        starttls: bool = False,
        username: str = "",
        password: str = "",
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout_s = timeout_s
        self._starttls = starttls
        self._username = username or None
        self._password = password or None

    def address_of(self, contact: dict[str, Any]) -> str | None:
        email = contact.get("email")
        return str(email) if email else None

    def masked(self, address: str) -> str | None:
        return mask_email(address)

    async def send(self, *, to: str, message: Message) -> None:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Content-Language"] = message.language
        mail.set_content(message.body)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                timeout=self._timeout_s,
                start_tls=self._starttls,
                username=self._username,
                password=self._password,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise ChannelError(_without(f"{type(exc).__name__}: {exc}", to, mask_email(to))) from None


class SmsGatewayChannel:
    """POSTs `{"to", "text", "language"}` as JSON to the gateway; any 2xx means accepted."""

    name = "sms"

    def __init__(self, *, url: str, token: str, timeout_s: float) -> None:
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def address_of(self, contact: dict[str, Any]) -> str | None:
        phone = contact.get("phone")
        return str(phone) if phone else None

    def masked(self, address: str) -> str | None:
        return mask_phone(address)

    async def send(self, *, to: str, message: Message) -> None:
        assert self._session is not None, "open() the channel first"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with self._session.post(
                self._url,
                json={"to": to, "text": message.body, "language": message.language},
                headers=headers,
            ) as response:
                await response.read()
                if response.status >= 300:
                    raise ChannelError(f"SMS gateway answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(_without(f"SMS gateway unreachable: {type(exc).__name__}", to, "")) from None


def _without(text: str, address: str, masked: str | None) -> str:
    """Error texts may echo the address (`550 <a@b>: no such user`); mask it before it is stored."""
    return text.replace(address, masked or "***")[:500]
