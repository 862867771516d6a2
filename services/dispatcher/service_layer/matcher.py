"""The matching loop: every window, offer pending legs in one optimal batch."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.domain.eligibility import Policy
from services.dispatcher.domain.matching import Pool, load_solvers
from services.dispatcher.service_layer.offers import offer_batch, plan_batch, prepare_pool
from services.dispatcher.service_layer.roster import Roster
from services.dispatcher.service_layer.volunteers import welfare_limits
from shared.settings import Settings

log = structlog.get_logger(__name__)


def policy_from(settings: Settings) -> Policy:
    return Policy(
        location_max_age=timedelta(seconds=settings.location_max_age_s),
        welfare_limits=welfare_limits(settings),
        widen_step_s=settings.radius_widen_step_s,
        widen_factor=settings.radius_widen_factor,
        widen_max=settings.radius_widen_max,
        local_time_zone=ZoneInfo(settings.local_time_zone),
        reserve_share=settings.dispatch_reserve_share,
        reserve_wait_s=settings.dispatch_reserve_wait_s,
    )


def round_clock(settings: Settings) -> RoundClock:
    window = settings.dispatch_batch_window_ms / 1000
    return RoundClock(window=window, gap=window / 5, full=settings.dispatch_batch_full_legs)


def pool_lead(window: float, built_in: float) -> float:
    """How long before a round its pool starts to be built, given how long the last one took.

    A fifth of the window, or half as long again as the last pool took if that is more, so the
    pool is ready when the round starts: a round that waits for its pool starts late for all its
    legs, and while the pool is built (on a worker thread, holding the interpreter most of the
    time) the legs arriving are taken in slowly, so the sooner it is done the more of them the
    round finds. Never more than half the window: the pool is then fresh enough for the round.
    """
    return min(window / 2, max(window / 5, 1.5 * built_in))


class RoundClock:
    """When the matcher's rounds start: every `window`; sooner once `full` legs have been taken in
    since the last round started; at once when a pressing leg is taken in.

    Rounds start every window (not a window after the last one ended), so a leg waits at most one
    window plus one round before it is looked at; a round longer than the window is followed by the
    next at once. The pool for a round is built `lead` before it starts (`pool_took`).

    Under load the window is not waited out: once `full` legs have come in since the last round
    started, a round starts with them (its pool built when half of them had come), so a leg's wait
    for its round shrinks as the rate grows while each round still gets a batch worth solving
    together; at a few legs a second nothing changes. Such a round waits until twice as long as the
    last pool and round took has passed since the last round started: the rounds take at most half
    the matcher's time, and the rest is left to taking legs in, which on a slow or busy machine
    would otherwise fall behind and cost more than the early round saves. `full` 0 turns this off.

    `press` (an urgent or critical leg taken in) starts the next round at once, its pool built then.
    Neither kind of early round starts sooner than `gap` after the last one started (a stream of
    them cannot make the matcher a busy loop), and the windows count again from an early round.
    """

    def __init__(self, *, window: float, gap: float, full: int = 0) -> None:
        self.window, self.gap, self.full = window, gap, full
        self.lead = gap
        # The event loop's clock (made before the loop runs: the app's signals are wired first).
        self._last = self._next = time.monotonic()
        self._pool_s = self._busy_s = 0.0
        self._legs = 0
        self._pressing = False
        self._changed = asyncio.Event()

    def taken_in(self, legs: int) -> None:
        """`legs` more were taken in (by any replica)."""
        self._legs += legs
        self._changed.set()

    def press(self) -> None:
        """A pressing leg was taken in: the next round starts at once."""
        self._pressing = True
        self._changed.set()

    def pool_took(self, seconds: float) -> None:
        """The last pool took this long to build: the next is started ahead by `pool_lead`."""
        self._pool_s = seconds
        self.lead = pool_lead(self.window, seconds)

    async def until_pool_time(self) -> bool:
        """Wait until the next round's pool is due; True if a pressing leg came in first."""
        self._next = max(self._next + self.window, time.monotonic())
        await asyncio.sleep(max(0.0, self._last + self.gap - time.monotonic()))
        await self._until(self._pool_due)
        return self._pressing

    async def until_round_time(self) -> None:
        """Wait until the round is due, its pool built; a pressing leg or a full batch brings it forward."""
        await self._until(self._round_due)

    def start(self) -> None:
        """A round starts now; one that starts before its window ends restarts the windows from here."""
        self._last = time.monotonic()
        self._next = min(self._next, self._last)
        self._legs = 0
        self._pressing = False

    def finish(self) -> None:
        """The round started last has ended."""
        self._busy_s = self._pool_s + time.monotonic() - self._last

    def _pool_due(self) -> float:
        if self._pressing:
            return 0.0
        return self._round_due(self.full / 2) - self.lead

    def _round_due(self, legs: float | None = None) -> float:
        if self._pressing:
            return 0.0
        if self.full > 0 and self._legs >= (self.full if legs is None else legs):
            return min(self._next, self._last + 2 * self._busy_s)
        return self._next

    async def _until(self, due: Callable[[], float]) -> None:
        """Wait until `due()`, worked out again whenever a leg comes in."""
        while (left := due() - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


async def run_matcher(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: RoundClock
) -> None:
    """Runs for the life of the process; replicas each run one, row locks keep their batches apart.

    `clock` (`round_clock`) is told of the legs every replica takes in (`repository.LEGS_CHANNEL`).
    """
    policy = policy_from(settings)
    ttl = timedelta(seconds=settings.offer_ttl_s)
    ahead = timedelta(seconds=settings.dispatch_plan_ahead_s)
    # Legs posted ahead are the planner's until they have been ready this long (none without it).
    planned_for = timedelta(seconds=settings.dispatch_plan_hold_s) if ahead else timedelta(0)
    roster = Roster()
    frozen = 0
    # Beside the consumer's group join at start-up, not before the service starts: no round runs
    # before a leg is taken in, and none is taken in before the join.
    await asyncio.to_thread(load_solvers)
    # The pool (who is available, and where) is built ahead of each round (`pool_lead`): it grows
    # with everyone on duty, and legs should wait only for the work that grows with them.
    loop = asyncio.get_running_loop()

    async def pool_for_round() -> Pool | None:
        started = loop.time()
        async with sessionmaker() as session, session.begin():
            pool = await prepare_pool(
                session, roster, now=datetime.now(UTC), policy=policy, planned_for=planned_for
            )
        if pool is not None:
            clock.pool_took(loop.time() - started)
        return pool

    async def plan() -> int:
        """Plan the legs posted ahead (one replica at a time); the number of offers made."""
        async with sessionmaker() as session, session.begin():
            changes = await plan_batch(
                session,
                roster,
                now=datetime.now(UTC),
                policy=policy,
                offer_ttl=ttl,
                ahead=ahead,
                planned_for=planned_for,
                limit=settings.dispatch_batch_max_legs,
                every=timedelta(seconds=settings.dispatch_plan_every_s),
                data_key=settings.data_key,
            )
            await changes.flush(session)
        return len(changes.events)

    next_plan = loop.time()

    while True:
        early = await clock.until_pool_time()
        try:
            pool = None
            if not early:
                pool = await pool_for_round()
                await clock.until_round_time()
            clock.start()
            # No leg waited a moment ago: one that came in since is matched now, not a window later.
            pool = pool or await pool_for_round()
            # Only the offers: lapsed offers and escalations are swept by a task of their own
            # (`sweeps.run_sweeps`), so a round never waits for them nor they for a round.
            offered = 0
            if pool is not None:
                async with sessionmaker() as session, session.begin():
                    changes = await offer_batch(
                        session,
                        now=datetime.now(UTC),
                        policy=policy,
                        offer_ttl=ttl,
                        pool=pool,
                        k=settings.dispatch_candidates_k,
                        limit=settings.dispatch_batch_max_legs,
                        plan=settings.dispatch_routes,
                        data_key=settings.data_key,
                        planned_for=planned_for,
                    )
                    offered = len(changes.events)
                    await changes.flush(session)
            clock.finish()
            if offered:
                log.info("matcher.offered", offers=offered)
            # Between rounds, on the same roster: a plan is a few hundred milliseconds at most,
            # every `dispatch_plan_every_s`, and a statement when nothing is posted ahead.
            if ahead and loop.time() >= next_plan:
                next_plan = loop.time() + settings.dispatch_plan_every_s
                planned = await plan()
                if planned:
                    log.info("matcher.planned", offers=planned)
            if len(roster) > 2 * frozen + 1000:
                # The roster is the process's largest long-lived heap; left to the cyclic garbage
                # collector, every full collection walks all of it again (over 100 ms with 20,000
                # on duty, stalling a round). Frozen objects are skipped; they are still freed by
                # reference counting when a newer view replaces them. Done when the roster has
                # doubled, so a handful of times in a process's life.
                gc.freeze()
                frozen = len(roster)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("matcher.batch_failed", error=repr(exc))
