"""The dispatcher's sweeps: offers past their time handed back, and legs that waited too long escalated.

They ran in the matching loop after each round's offers, and a round's legs waited for them: with
20,000 volunteers on duty and 200 legs a second they took 30 ms a round (90 ms at p95), and a round
that ended late pushed the next round's pool, and so the next round, past its start. Now they run in
a task of their own beside the matching loop: expiry every window, so a lapsed offer's leg and
volunteer are back for the next round as before, and the escalation sweeps every
`ESCALATION_SWEEP_S`, since their limits are counted in minutes.

Each step is its own transaction, as in the loop: the sweeps and the rounds (this replica's and
others') keep apart by the same row locks two replicas' loops always relied on.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.service_layer.escalation import (
    escalate_overdue_legs,
    escalate_waiting_legs,
    wait_limits,
)
from services.dispatcher.service_layer.offers import expire_offers
from shared.settings import Settings

log = structlog.get_logger(__name__)

# How often legs are looked at for escalation. The shortest limit by default is ten minutes
# (`ESCALATION_WAIT_S`); a few seconds more before an operator hears of a leg is not felt.
ESCALATION_SWEEP_S = 5.0


async def sweep_once(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    escalate: bool = True,
    now: datetime | None = None,
) -> None:
    """Hand back the lapsed offers; with `escalate`, raise the legs due an escalation. One
    transaction per step, so one failing does not hold back the others' work. Each step looks at
    its own start unless `now` is given."""
    async with sessionmaker() as session, session.begin():
        changes = await expire_offers(session, now=now or datetime.now(UTC))
        await changes.flush(session)
    if not escalate:
        return
    async with sessionmaker() as session, session.begin():
        changes = await escalate_waiting_legs(
            session,
            now=now or datetime.now(UTC),
            wait_limit_s=settings.escalation_wait_s,
            deadline_margin_s=settings.escalation_deadline_margin_s,
        )
        await changes.flush(session)
    async with sessionmaker() as session, session.begin():
        changes = await escalate_overdue_legs(
            session,
            now=now or datetime.now(UTC),
            wait_limits_s=wait_limits(settings),
            repeat_s=settings.leg_escalation_repeat_s,
        )
        await changes.flush(session)


async def run_sweeps(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    escalation_every_s: float = ESCALATION_SWEEP_S,
) -> None:
    """Runs for the life of the process, every matching window; replicas each run one."""
    window = settings.dispatch_batch_window_ms / 1000
    loop = asyncio.get_running_loop()
    next_escalation = loop.time()
    while True:
        started = loop.time()
        escalate = started >= next_escalation
        if escalate:
            next_escalation = started + escalation_every_s
        try:
            await sweep_once(settings, sessionmaker, escalate=escalate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("dispatcher.sweep_failed", error=repr(exc))
        await asyncio.sleep(max(0.0, started + window - loop.time()))
