"""An offer's life: open for a while to one volunteer, then accepted, declined, expired or withdrawn.

No IO here. An offer is open until `expires_at` (its round's time plus the offer's time to live);
from then on it cannot be accepted or declined, and the next expiry pass closes it and sends its leg
back to pending without that volunteer (`domain.leg.TRANSITIONS`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from services.dispatcher.domain.errors import OfferClosed


class OfferStatus(StrEnum):
    LIVE = "live"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


def expiry(*, offered_at: datetime, ttl: timedelta) -> datetime:
    """When an offer made at `offered_at` stops being open."""
    return offered_at + ttl


def has_lapsed(*, status: str, expires_at: datetime, now: datetime) -> bool:
    """An open offer past its time: the expiry pass closes it (`repository.lock_lapsed_offers` in SQL)."""
    return status == OfferStatus.LIVE and expires_at <= now


def ensure_open(*, status: str, expires_at: datetime, now: datetime) -> None:
    """Refuse (OfferClosed) to act on an offer no longer open: decided, withdrawn, or past its time."""
    if status != OfferStatus.LIVE or has_lapsed(status=status, expires_at=expires_at, now=now):
        said = "expired" if status == OfferStatus.LIVE else status
        raise OfferClosed(f"This offer is no longer open ({said}).")
