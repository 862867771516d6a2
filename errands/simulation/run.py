"""`errands simulate`: a day in Ningbo played against the running services, and its report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp

from errands.local import local_state
from errands.simulation import model
from errands.simulation.agents import (
    AWAITING_DECISION,
    Endpoints,
    Ledger,
    OperatorDesk,
    TaskRecord,
    VolunteerApp,
)
from errands.simulation.report import Summary, summarise, write_report

LOCAL_FILE = Path(".errands") / "local.json"
MAX_VOLUNTEERS = 5_000
MAX_TASKS = 100_000
MAX_DURATION_S = 7 * 24 * 3600.0
OPEN_LEG = frozenset({"pending", "offered"})


@dataclass(frozen=True)
class SimulationConfig:
    volunteers: int = 20
    tasks_per_minute: float = 30.0
    duration_s: float = 60.0
    seed: int = 1
    # Simulated seconds per real second; None plays the day from `start_hour` to `end_hour` in the duration.
    time_compression: float | None = None
    start_hour: float = 7.0
    end_hour: float = 21.0
    report: Path | None = None
    intake_url: str | None = None
    dispatcher_url: str | None = None
    operator_token: str | None = None
    behaviour: model.Behaviour = field(default_factory=model.Behaviour)
    districts: tuple[str, ...] = ()  # default: as many core districts as the volunteers can staff
    max_tasks: int = 10_000
    # After the duration: no new tasks, everyone on duty and saying yes, until every leg is done or
    # no leg moved for `drain_s` (what is still open then is lost), at most `drain_cap` × `drain_s`.
    drain_s: float = 90.0
    drain_cap: float = 4.0
    hand_assign_after_s: float = 10.0  # into the drain, the operator places what is still unplaced
    poll_wait_s: float = 10.0
    read_rate_per_s: float = 20.0  # task reads while draining, inside the operator token's rate limit
    max_leg_travel_s: float = 120.0
    submit_concurrency: int = 16
    quiet: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.volunteers <= MAX_VOLUNTEERS:
            raise ValueError(f"volunteers must be 1 to {MAX_VOLUNTEERS}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION_S:.0f} s")
        if not 0 < self.tasks_per_minute <= 60_000:
            raise ValueError("tasks per minute must be above 0 and at most 60000")
        if not 1 <= self.max_tasks <= MAX_TASKS:
            raise ValueError(f"max_tasks must be 1 to {MAX_TASKS}")
        if self.time_compression is not None and not 0 < self.time_compression <= 1_000_000:
            raise ValueError("time compression must be above 0")
        if self.drain_s < 0 or self.end_hour <= self.start_hour:
            raise ValueError("drain must not be negative; the day must end after it starts")

    def compression(self) -> float:
        if self.time_compression is not None:
            return self.time_compression
        return (self.end_hour - self.start_hour) * 3600 / self.duration_s


@dataclass
class SimulationResult:
    run_id: str
    summary: Summary
    report_files: list[Path]
    interrupted: bool

    @property
    def lost_legs(self) -> int:
        return len(self.summary.lost)


def demo_config(local: Mapping[str, str] | None = None, *, seed: int = 2020) -> SimulationConfig:
    """The gentle demo `make run` plays: a few volunteers and tasks a minute, a day in about 40 minutes.

    `local` is `.errands/local.json`'s content; without it the file is read when the run starts.
    """
    return SimulationConfig(
        volunteers=24,
        tasks_per_minute=4.0,
        duration_s=8 * 3600.0,
        seed=seed,
        time_compression=20.0,
        intake_url=(local or {}).get("intake_url"),
        dispatcher_url=(local or {}).get("dispatcher_url"),
        operator_token=(local or {}).get("operator_token"),
        drain_s=30.0,
        max_tasks=2_000,
        quiet=True,
    )


def resolve_endpoints(config: SimulationConfig) -> Endpoints:
    """Addresses and token from the config, else from `make run`'s `.errands/local.json`."""
    local: dict[str, str] = {}
    if not (config.intake_url and config.dispatcher_url and config.operator_token):
        found = local_state()
        local = found[0] if found is not None else {}
    intake = config.intake_url or local.get("intake_url")
    dispatcher = config.dispatcher_url or local.get("dispatcher_url")
    token = config.operator_token or local.get("operator_token")
    if not (intake and dispatcher and token):
        raise ValueError(
            f"no service addresses or operator token: pass them, or start the system with `make run` "
            f"(it writes {LOCAL_FILE})"
        )
    return Endpoints(intake.rstrip("/"), dispatcher.rstrip("/"), token)


def _say(config: SimulationConfig, message: str) -> None:
    if not config.quiet:
        print(message, file=sys.stderr, flush=True)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, or return early (True) when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()


async def simulate(config: SimulationConfig, *, stop: asyncio.Event | None = None) -> SimulationResult:
    """Play the configured day against the running services; setting `stop` ends it early, cleanly."""
    stop = stop or asyncio.Event()
    endpoints = resolve_endpoints(config)
    run_id = uuid.uuid4().hex[:12]
    clock = model.SimClock(start_hour=config.start_hour, compression=config.compression())
    all_districts = model.load_districts()
    districts = model.active_districts(all_districts, config.volunteers, names=config.districts)
    arrivals = model.plan_arrivals(
        random.Random(f"{config.seed}:arrivals"),
        clock=clock,
        duration_s=config.duration_s,
        tasks_per_minute=config.tasks_per_minute,
        max_tasks=config.max_tasks,
    )
    task_rng = random.Random(f"{config.seed}:tasks")
    plans = [model.plan_task(task_rng, kind=a.kind, hour=a.hour, districts=districts) for a in arrivals]
    profiles = model.plan_volunteers(
        random.Random(f"{config.seed}:volunteers"),
        count=config.volunteers,
        districts=districts,
        start_hour=config.start_hour,
    )
    _say(
        config,
        f"simulate {run_id}: {len(profiles)} volunteers in {', '.join(d.name for d in districts)}; "
        f"{len(plans)} tasks over {config.duration_s:g} s at {clock.compression:g}x",
    )
    ledger = Ledger()
    draining, agents_stop = asyncio.Event(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=config.volunteers + 2 * config.submit_concurrency + 16)
    interrupted, elapsed = False, 0.0
    async with aiohttp.ClientSession(connector=connector) as http:
        desk = OperatorDesk(http=http, endpoints=endpoints, ledger=ledger, run_id=run_id)
        apps = [
            VolunteerApp(
                profile=profile,
                http=http,
                endpoints=endpoints,
                ledger=ledger,
                clock=clock,
                behaviour=config.behaviour,
                rng=random.Random(f"{config.seed}:volunteer:{profile.index}"),
                draining=draining,
                poll_wait_s=config.poll_wait_s,
                max_leg_travel_s=config.max_leg_travel_s,
            )
            for profile in profiles
        ]
        gate = asyncio.Semaphore(config.submit_concurrency)

        async def register(app: VolunteerApp) -> None:
            async with gate:
                await app.register()
            assert app.volunteer_id is not None
            ledger.volunteers[app.volunteer_id] = app

        await asyncio.gather(*(register(app) for app in apps))
        ledger.started = time.monotonic()  # the simulated day starts once everyone is registered
        volunteer_runs = [asyncio.create_task(app.run(agents_stop)) for app in apps]
        submissions: set[asyncio.Task[TaskRecord | None]] = set()
        try:

            async def submit(number: int, plan: model.TaskPlan, hour: float) -> TaskRecord | None:
                async with gate:
                    return await desk.submit(number, plan, hour=hour)

            for number, (arrival, plan) in enumerate(zip(arrivals, plans, strict=True)):
                if await _sleep_or_stop(stop, arrival.at_s - ledger.now()):
                    break
                task = asyncio.create_task(submit(number, plan, arrival.hour))
                submissions.add(task)
                task.add_done_callback(submissions.discard)
            else:
                await _sleep_or_stop(stop, config.duration_s - ledger.now())
            # Whatever was sent is either acknowledged or not; wait for the answers.
            if submissions:
                await asyncio.gather(*submissions, return_exceptions=True)
            interrupted = stop.is_set()
            elapsed = ledger.now()
            _say(config, f"simulate {run_id}: {len(ledger.tasks)} tasks submitted; draining")
            if not interrupted:
                draining.set()
                for app in apps:
                    app.wake()
                await _drain(config, desk, ledger, apps, stop)
                interrupted = stop.is_set()
        finally:
            agents_stop.set()
            for task in submissions:
                task.cancel()
            await asyncio.gather(*volunteer_runs, return_exceptions=True)
            await asyncio.gather(*(app.sign_off() for app in apps), return_exceptions=True)
        # The last word on every task, for the figures (quick even when interrupted).
        unfinished = [r for r in ledger.tasks.values() if not r.finished()]
        await desk.refresh_all(unfinished, per_second=config.read_rate_per_s * 2)
    summary = summarise(
        ledger,
        run_id=run_id,
        seed=config.seed,
        districts=[d.name for d in districts],
        duration_s=config.duration_s,
        clock=clock,
        elapsed_s=elapsed,
        interrupted=interrupted,
    )
    files = write_report(summary, config.report) if config.report else []
    _say(
        config,
        f"simulate {run_id}: {summary.tasks_submitted} tasks, {len(summary.legs)} legs, "
        f"{summary.confirmed} confirmed, {len(summary.lost)} lost"
        + (f"; report {config.report}" if config.report else ""),
    )
    return SimulationResult(run_id=run_id, summary=summary, report_files=files, interrupted=interrupted)


async def _drain(
    config: SimulationConfig,
    desk: OperatorDesk,
    ledger: Ledger,
    apps: list[VolunteerApp],
    stop: asyncio.Event,
) -> None:
    """Until every leg is done, or no leg moved for `drain_s` (or the cap ran out): read open tasks;
    decide legs handed back after pickup; late on, place waiting legs by hand.

    Volunteers still carrying legs keep the drain going, so a leg counted lost is one that stopped.
    """
    began = moved = ledger.now()
    seen: dict[str, str] = {}
    while not stop.is_set():
        open_records = [r for r in ledger.tasks.values() if not r.finished()]
        now = ledger.now()
        if (
            not open_records
            or now - moved >= config.drain_s
            or now - began >= config.drain_s * config.drain_cap
        ):
            return
        await desk.refresh_all(open_records, per_second=config.read_rate_per_s)
        statuses = {
            leg["id"]: leg["status"]
            for record in open_records
            for leg in (record.latest or {}).get("legs", [])
        }
        if any(seen.get(leg_id) != status for leg_id, status in statuses.items()) or len(statuses) < len(
            seen
        ):
            moved = ledger.now()
        seen = statuses
        # The desk decides at once about legs handed back with the goods in hand.
        for record in open_records:
            for leg in (record.latest or {}).get("legs", []):
                if leg["status"] == AWAITING_DECISION:
                    await desk.decide(leg["id"])
        if ledger.now() - began >= config.hand_assign_after_s:
            for record in open_records:
                for leg in (record.latest or {}).get("legs", []):
                    if leg["status"] in OPEN_LEG and leg["id"] not in ledger.hand_assigned:
                        await desk.assign_by_hand(leg["id"], [a for a in apps if a.on_duty])
        if await _sleep_or_stop(stop, 1.0):
            return


class BackgroundSimulation:
    """A simulation on its own thread and event loop, for a synchronous launcher such as `make run`."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.result: SimulationResult | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="errands-simulation", daemon=True)

    def start(self) -> BackgroundSimulation:
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def _main(self) -> None:
        async def body() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            self.result = await simulate(self.config, stop=self._stop)

        try:
            asyncio.run(body())
        except BaseException as exc:  # reported to the launcher through `error`
            self.error = exc
        finally:
            self._ready.set()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the run to end (volunteers sign off), and wait for it up to `timeout_s`."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=timeout_s)


def start_demo(local: Mapping[str, str]) -> BackgroundSimulation:
    """`make run`'s demo: started on its own thread; call `.stop()` before stopping the services."""
    return BackgroundSimulation(demo_config(local)).start()


# --- command line -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`errands simulate`'s options, for the `errands` command line to mount as a subcommand."""
    parser.add_argument("--volunteers", type=int, default=20, metavar="N")
    parser.add_argument("--tasks-per-minute", type=float, default=30.0, metavar="M")
    parser.add_argument("--duration", type=float, default=60.0, metavar="SECONDS", help="real seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--time-compression",
        type=float,
        metavar="X",
        help="simulated seconds per real second (default: the day 07:00-21:00 in the duration)",
    )
    parser.add_argument("--report", type=Path, metavar="PATH", help="Markdown report; PNG charts beside it")
    parser.add_argument(
        "--drain",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="after the duration, give up once no leg moved for this long (at most 4x in all)",
    )
    parser.add_argument("--accept", type=float, default=0.85, help="probability a volunteer accepts an offer")
    parser.add_argument("--decline", type=float, default=0.10, help="...declines it (else lets it expire)")
    parser.add_argument("--wrong-code", type=float, default=0.05, help="a wrong code is read out first")
    parser.add_argument("--district", action="append", default=[], help="serve this district; repeatable")
    parser.add_argument("--intake-url")
    parser.add_argument("--dispatcher-url")
    parser.add_argument("--operator-token")
    parser.add_argument("--quiet", action="store_true")


def config_from_arguments(args: argparse.Namespace) -> SimulationConfig:
    base = model.Behaviour()
    return SimulationConfig(
        volunteers=args.volunteers,
        tasks_per_minute=args.tasks_per_minute,
        duration_s=args.duration,
        seed=args.seed,
        time_compression=args.time_compression,
        report=args.report,
        drain_s=args.drain,
        behaviour=replace(base, accept=args.accept, decline=args.decline, wrong_code=args.wrong_code),
        districts=tuple(args.district),
        intake_url=args.intake_url,
        dispatcher_url=args.dispatcher_url,
        operator_token=args.operator_token,
        quiet=args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    """`errands simulate ...`: 0 when no leg was lost, 1 when some were, 2 on bad input, 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog="errands simulate", description=__doc__)
    add_arguments(parser)
    return run_from_arguments(parser.parse_args(argv))


def run_from_arguments(args: argparse.Namespace) -> int:
    """Run what `errands simulate`'s parsed options describe."""
    try:
        config = config_from_arguments(args)
        resolve_endpoints(config)
    except ValueError as exc:
        print(f"errands simulate: {exc}", file=sys.stderr)
        return 2

    async def run() -> SimulationResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def first_signal() -> None:
            print("\nstopping the simulation (Ctrl-C again to abandon it)...", file=sys.stderr, flush=True)
            stop.set()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, first_signal)
        return await simulate(config, stop=stop)

    try:
        result = asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    if result.interrupted:
        return 130
    return 1 if result.lost_legs else 0


if __name__ == "__main__":
    sys.exit(main())
