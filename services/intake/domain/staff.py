"""Rules for staff accounts, with no IO: e-mail form, password length, and the login throttle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

STAFF_ROLES = ("admin", "operator", "ops")
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024


def normal_email(email: str) -> str:
    """The form an e-mail address is stored and looked up in."""
    return email.strip().lower()


def account_key(email: str) -> str:
    """The throttle's key for an account: the e-mail's hash, so the table holds no address."""
    return "account:" + hashlib.sha256(normal_email(email).encode()).hexdigest()


def address_key(address: str) -> str:
    return "address:" + address


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """From `slow_after` failures, the next try waits `base_s` doubling per failure (up to `max_s`);
    from `lock_after`, it waits `lock_s`."""

    slow_after: int
    lock_after: int
    base_s: float
    max_s: float
    lock_s: float

    def wait_after(self, failures: int) -> float:
        """Seconds the next try must wait after `failures` recent wrong passwords (0: at once)."""
        if failures >= self.lock_after:
            return self.lock_s
        if failures >= self.slow_after:
            return float(min(self.max_s, self.base_s * 2.0 ** (failures - self.slow_after)))
        return 0.0
