"""Where a confirmation code is checked: whether a reported delivery is proven, what a wrong code costs,
and whether a task is done. No IO here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.crypto import hashes_match

Method = Literal["code", "photo", "operator"]


def check_delivery(
    *, expected_code_hash: str, no_contact: bool, code_hash: str | None, photo_sha256: str | None
) -> Method | None:
    """How the delivery is proven, or None: the right code, or for a no-contact drop-off a photo."""
    if code_hash is not None and hashes_match(expected_code_hash, code_hash):
        return "code"
    if no_contact and photo_sha256:
        return "photo"
    return None


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The report proves the delivery."""

    method: Method


@dataclass(frozen=True, slots=True)
class Failed:
    """The report proves nothing: one more failed attempt, and the leg is flagged once there are too many."""

    attempts: int
    flagged: bool


# A report that changes nothing: the leg is already confirmed, or flagged and waiting for an operator.
Ignored = Literal["already_confirmed", "flagged"]


def judge_report(
    *,
    leg_status: str,
    leg_flagged: bool,
    failed_attempts: int,
    expected_code_hash: str,
    no_contact: bool,
    code_hash: str | None,
    photo_sha256: str | None,
    max_failures: int,
) -> Confirmed | Failed | Ignored:
    """What one delivery report does to its leg.

    A flagged leg refuses every report, even one with the right code: guessing on must not pay off,
    so it waits until an operator resolves the leg.
    """
    if leg_status == "confirmed":
        return "already_confirmed"
    if leg_status == "failed":
        return "flagged"  # an operator failed it: no report changes that
    if leg_flagged:
        return "flagged"
    method = check_delivery(
        expected_code_hash=expected_code_hash,
        no_contact=no_contact,
        code_hash=code_hash,
        photo_sha256=photo_sha256,
    )
    if method is not None:
        return Confirmed(method)
    attempts = failed_attempts + 1
    return Failed(attempts=attempts, flagged=attempts >= max_failures)


def task_is_complete(leg_statuses: list[str]) -> bool:
    """Every leg that was not cancelled is confirmed (and at least one leg was)."""
    live = [status for status in leg_statuses if status != "cancelled"]
    return bool(live) and all(status == "confirmed" for status in live)
