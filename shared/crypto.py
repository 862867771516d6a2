"""Confirmation codes, their keyed hashes, and sealed/masked personal data for events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def confirmation_code(code_key: bytes, leg_id: uuid.UUID) -> str:
    """The six-digit code for a leg: a keyed PRF of the random leg id, so it is never stored anywhere.

    Deriving instead of storing lets an idempotent replay return the same code while the database,
    the topics and the logs hold only its keyed hash.
    """
    digest = hmac.new(code_key, b"code:" + leg_id.bytes, hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def code_hash(code_key: bytes, leg_id: uuid.UUID, code: str) -> str:
    """Keyed hash of a code as typed for one leg; equal codes on different legs hash differently."""
    message = b"hash:" + leg_id.bytes + b":" + code.strip().encode()
    return hmac.new(code_key, message, hashlib.sha256).hexdigest()


def hashes_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two code hashes."""
    return hmac.compare_digest(expected.encode(), given.encode())


def seal(data_key: bytes, value: dict[str, Any]) -> str:
    """Authenticated encryption (AES-256-GCM) of personal data that a consuming service needs in clear."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(nonce, json.dumps(value, sort_keys=True).encode(), b"errands")
    return base64.urlsafe_b64encode(nonce + ciphertext).decode()


def unseal(data_key: bytes, sealed: str) -> dict[str, Any]:
    """Open what `seal` produced; raises `cryptography.exceptions.InvalidTag` on tampering."""
    raw = base64.urlsafe_b64decode(sealed.encode())
    plain = AESGCM(data_key).decrypt(raw[:12], raw[12:], b"errands")
    result: dict[str, Any] = json.loads(plain)
    return result


def mask_phone(phone: str | None) -> str | None:
    """`+8613812341234` → `+86*******1234`: enough to recognise, not enough to call."""
    if not phone:
        return phone
    keep_head = 3 if phone.startswith("+") else 0
    if len(phone) <= keep_head + 4:
        return "*" * len(phone)
    return phone[:keep_head] + "*" * (len(phone) - keep_head - 4) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """Keep the first character only: `王小明` → `王**`, `Alice` → `A****`."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_email(email: str | None) -> str | None:
    """`alice@example.org` → `a****@example.org`."""
    if not email or "@" not in email:
        return mask_name(email)
    local, _, domain = email.partition("@")
    return (mask_name(local) or "") + "@" + domain


def derived_key(key: bytes, purpose: str) -> bytes:
    """A key for one purpose derived from a configured key, so one secret never serves two uses."""
    return hmac.new(key, b"errands:derive:" + purpose.encode(), hashlib.sha256).digest()


def blind_index(index_key: bytes, scope: str, value: str) -> str:
    """A keyed hash of an already-normalised value, for exact-match search over sealed data.

    `scope` (an organisation id and a field) makes equal values in two organisations or two
    fields hash differently, so the index lets no one correlate them across either.
    """
    message = scope.encode() + b"\x00" + value.encode()
    return hmac.new(index_key, message, hashlib.sha256).hexdigest()[:32]
