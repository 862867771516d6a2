"""Run the whole system on one machine: the stack (embedded unless addresses are given) and three services."""

from __future__ import annotations

import asyncio
import compileall
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from errands import admin
from errands import demo as demo_people
from errands.local import local_keys
from errands.migrate import upgrade
from errands.simulation.run import BackgroundSimulation
from errands.stack import EMBEDDED_BROKER_TIMINGS, EmbeddedStack, dying_with_parent, free_port
from services.dispatcher.adapters.tables import outbox as dispatch_outbox
from services.intake.adapters.tables import outbox as intake_outbox
from services.notifier.adapters.tables import outbox as notify_outbox
from shared.db import create_engine, create_sessionmaker
from shared.kafka import create_topics
from shared.outbox import resend_retained
from shared.settings import Settings

SERVICES = ("intake", "dispatcher", "notifier")
OUTBOXES = (intake_outbox, dispatch_outbox, notify_outbox)
# The embedded broker keeps its log in memory: published events stay in the outboxes this long, to be
# sent again when `make run` starts a new (empty) broker on the kept database. Well within the
# inboxes' 14 days, so every resent copy of an event already applied is recognised.
EMBEDDED_OUTBOX_RETENTION_S = 3 * 24 * 3600


@dataclass
class ServiceProcesses:
    """The three services as separate OS processes, sharing one environment."""

    env: dict[str, str]
    log_dir: Path | None = None
    # SIGTERM each service when the process that started it dies (start them from the main thread).
    die_with_parent: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(
        self,
        name: str,
        *,
        service: str | None = None,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """Start a process called `name` running `service` (by default the service of that name).

        Another replica of a service is another name: `start("dispatcher-2", service="dispatcher")`.
        """
        service = service or name
        port = port or self.ports.get(name) or free_port()
        self.ports[name] = port
        env = {**self.env, f"{service.upper()}_PORT": str(port), **(extra_env or {})}
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{name}.log").open("ab")
        elif os.environ.get("ERRANDS_SERVICE_OUTPUT") == "inherit":
            output = sys.stderr.fileno()
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "errands", "serve", service],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=dying_with_parent(signal.SIGTERM) if self.die_with_parent else None,
        )

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)

    def wait_ready(
        self, *, timeout_s: float = 60.0, services: tuple[str, ...] = SERVICES, probe: str = "/readyz"
    ) -> None:
        """Until each service's `probe` answers 200: `/readyz` (working), or `/healthz` (serving HTTP)."""
        deadline = time.monotonic() + timeout_s
        for service in services:
            while True:
                process = self.processes[service]
                if process.poll() is not None:
                    raise RuntimeError(f"{service} exited with {process.returncode}")
                try:
                    with urllib.request.urlopen(f"{self.url(service)}{probe}", timeout=2) as response:  # noqa: S310
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service}: {probe} not 200 after {timeout_s}s")
                time.sleep(0.1)

    def stop(self, service: str, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        process = self.processes.pop(service, None)
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for service in list(self.processes):
            self.stop(service)


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    """The environment services inherit: ours, plus the stack's addresses."""
    return {**os.environ, **settings_env, "PYTHONUNBUFFERED": "1"}


def compile_sources() -> None:
    """Compile the project's own modules to bytecode, as pip does for every installed dependency.

    An editable install (`make install`) leaves them as sources, and with PYTHONDONTWRITEBYTECODE
    set (as on many machines and in the image) each service would compile them again at every
    start, a third of a restarted dispatcher's import time on a busy machine. Only what changed is
    compiled; a tree we may not write to (an installed wheel, compiled by pip already) is left as is.
    """
    for package in ("errands", "services", "shared"):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=2)


def prepare(settings: Settings, *, broker_is_new: bool = False) -> int:
    """Migrate the database and create the topics (both safe to repeat), and compile the services'
    code, before the services start.

    `broker_is_new`: the broker came up empty on a database that was kept, so the events the outboxes
    retained are marked to be published again; returns how many. Run it before the services start.
    """
    compile_sources()
    upgrade(settings)
    resent = asyncio.run(resend_to_new_broker(settings)) if broker_is_new else 0
    asyncio.run(create_topics(settings))
    return resent


async def resend_to_new_broker(settings: Settings) -> int:
    """Every outbox's retained events, unpublished again in one transaction for the relays to resend."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            counts = [
                await resend_retained(session, outbox, retention_s=settings.outbox_retention_s)
                for outbox in OUTBOXES
            ]
    finally:
        await engine.dispose()
    return sum(counts)


def run(repo_root: Path, *, fresh: bool = False) -> int:
    """`make run`: everything up, `.errands/local.json` written, until Ctrl-C or SIGTERM.

    The embedded stack keeps its database in `.errands/data` from one run to the next (`fresh`
    empties it first); its broker starts empty every time, and is sent again what the outboxes kept.
    """
    embedded = not (os.environ.get("DATABASE_URL") and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    if fresh and not embedded:
        print(
            "errands run --fresh empties the embedded stack; DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS "
            "are set, so none runs",
            file=sys.stderr,
        )
        return 2
    stop_requested = False

    def request_stop(_signum: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    state_dir = repo_root / ".errands"
    state_dir.mkdir(exist_ok=True)
    stack: EmbeddedStack | None = None
    demo: BackgroundSimulation | None = None
    # The services' own keys, kept with the state: never the public defaults of shared/settings.py.
    env: dict[str, str] = local_keys(state_dir)
    if embedded:
        stack = EmbeddedStack(state_dir / "data", die_with_parent=True)
        if fresh:
            print(f"Emptying {stack.base_dir} (--fresh)...", flush=True)
            stack.postgres.stop_running_server()
            shutil.rmtree(stack.base_dir, ignore_errors=True)
        elif stack.postgres.running_server() is not None:
            print("Stopping the embedded PostgreSQL an earlier run left running...", flush=True)
        print(f"Starting embedded PostgreSQL (data in {stack.base_dir}) and Tansu...", flush=True)
        stack.start()
        # The stack's addresses, broker timings and outbox retention; the environment still wins.
        env |= stack.settings_env() | {"OUTBOX_RETENTION_S": str(EMBEDDED_OUTBOX_RETENTION_S)}
        overridable = (*EMBEDDED_BROKER_TIMINGS, "OUTBOX_RETENTION_S")
        env |= {key: os.environ[key] for key in overridable if key in os.environ}
    services = ServiceProcesses(env=service_env(env), log_dir=state_dir / "logs", die_with_parent=True)
    try:
        settings = Settings.model_validate({k.lower(): v for k, v in env.items()})
        # The contract's default ports (8080, 8081, 8082) unless the environment names others.
        services.ports |= {service: getattr(settings, f"{service}_port") for service in SERVICES}
        # Pages are opened where people reach them (a phone too, when a service listens on 0.0.0.0).
        reachable = {
            service: demo_people.reachable_url(getattr(settings, f"{service}_host"), services.ports[service])
            for service in ("intake", "dispatcher")
        }
        pages = demo_people.page_settings(
            intake_url=reachable["intake"], dispatcher_url=reachable["dispatcher"], environ=os.environ
        )
        services.env |= pages
        settings = settings.model_copy(update={name.lower(): value for name, value in pages.items()})
        resent = prepare(settings, broker_is_new=embedded)
        if resent:
            print(f"Sending the new broker {resent} events kept from earlier runs...", flush=True)
        services.start_all()
        services.wait_ready()
        kept, shown = asyncio.run(
            demo_people.prepare(
                settings,
                dispatcher_url=services.url("dispatcher"),
                console_url=reachable["intake"] + demo_people.CONSOLE_PATH,
                saved=_read_demo(state_dir),
            )
        )
        _write_demo(state_dir, kept)
        local = {
            "intake_url": services.url("intake"),
            "dispatcher_url": services.url("dispatcher"),
            "notifier_url": services.url("notifier"),
            "kafka_bootstrap": settings.kafka_bootstrap_servers,
            "database_url": settings.database_url,
            **{key: kept[key] for key in admin.DEMO_KEYS},
            **shown,
        }
        (state_dir / "local.json").write_text(json.dumps(local, indent=2))
        if os.environ.get("ERRANDS_DEMO", "1") != "0":
            from errands.simulation import start_demo

            demo = start_demo(local)
        print(
            "\nErrands is running.\n"
            f"  intake      {local['intake_url']}\n"
            f"  dispatcher  {local['dispatcher_url']}\n"
            f"  notifier    {local['notifier_url']}\n"
            f"  kafka       {local['kafka_bootstrap']}\n"
            f"  database    {local['database_url']}\n"
            f"  app         {local['app_url']}\n"
            f"              enrol a demo volunteer (the link works once): {local['app_enrol_url']}\n"
            f"  console     {local['console_url']}\n"
            f"              log in as {local['console_email']}, password {local['console_password']}\n"
            f"  tokens and addresses: {state_dir / 'local.json'}\n"
            f"  logs: {state_dir / 'logs'}\n"
            + ("  demo: a simulated day in Ningbo is playing (ERRANDS_DEMO=0 turns it off)\n" if demo else "")
            + "Ctrl-C stops everything.",
            flush=True,
        )
        while not stop_requested:
            for service, process in services.processes.items():
                if process.poll() is not None:
                    print(f"{service} exited with {process.returncode}; stopping.", flush=True)
                    stop_requested = True
            time.sleep(0.2)
        return 0
    finally:
        print("Stopping...", flush=True)
        if demo is not None:
            demo.stop(timeout_s=5)
        services.stop_all()
        if stack is not None:
            stack.stop()
        (state_dir / "local.json").unlink(missing_ok=True)
        print("Stopped.", flush=True)


def _read_demo(state_dir: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads((state_dir / "demo.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def _write_demo(state_dir: Path, kept: dict[str, str]) -> None:
    """Keep the demo's tokens, coordinator's login and volunteer for the next run; owner only.

    (`local.json` goes when the run stops.)
    """
    path = state_dir / "demo.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(kept, file, indent=2)
