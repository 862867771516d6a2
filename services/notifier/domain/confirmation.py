"""Whether a reported delivery is proven, and whether a task is done. No IO here."""

from __future__ import annotations

from typing import Literal

from shared.crypto import hashes_match

Method = Literal["code", "photo"]


def check_delivery(
    *, expected_code_hash: str, no_contact: bool, code_hash: str | None, photo_sha256: str | None
) -> Method | None:
    """How the delivery is proven, or None: the right code, or for a no-contact drop-off a photo."""
    if code_hash is not None and hashes_match(expected_code_hash, code_hash):
        return "code"
    if no_contact and photo_sha256:
        return "photo"
    return None


def task_is_complete(leg_statuses: list[str]) -> bool:
    """Every leg that was not cancelled is confirmed (and at least one leg was)."""
    live = [status for status in leg_statuses if status != "cancelled"]
    return bool(live) and all(status == "confirmed" for status in live)
