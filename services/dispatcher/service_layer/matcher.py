"""The matching loop: every window, expire stale offers and offer pending legs in one optimal batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.domain.eligibility import Policy
from services.dispatcher.service_layer.dispatch import expire_offers, offer_batch
from shared.settings import Settings

log = structlog.get_logger(__name__)


def policy_from(settings: Settings) -> Policy:
    return Policy(
        location_max_age=timedelta(seconds=settings.location_max_age_s),
        shift_max_on_duty=timedelta(seconds=settings.shift_max_on_duty_s),
    )


async def run_matcher(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Runs for the life of the process; replicas each run one, row locks keep their batches apart."""
    window = settings.dispatch_batch_window_ms / 1000
    policy = policy_from(settings)
    ttl = timedelta(seconds=settings.offer_ttl_s)
    while True:
        await asyncio.sleep(window)
        try:
            async with sessionmaker() as session, session.begin():
                changes = await expire_offers(session, now=datetime.now(UTC))
                await changes.flush(session)
            async with sessionmaker() as session, session.begin():
                changes = await offer_batch(session, now=datetime.now(UTC), policy=policy, offer_ttl=ttl)
                offered = len(changes.events)
                await changes.flush(session)
            if offered:
                log.info("matcher.offered", offers=offered)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("matcher.batch_failed", error=repr(exc))
