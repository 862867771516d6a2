"""The `errands` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from shared.errors import DomainError
from shared.settings import Settings


def _serve(service: str) -> int:
    from shared.log import configure_logging
    from shared.runtime import serve

    settings = Settings()
    configure_logging(settings, service=service)
    if service == "intake":
        from services.intake.bootstrap import create_app

        serve(lambda: create_app(settings), host=settings.intake_host, port=settings.intake_port)
    elif service == "dispatcher":
        from services.dispatcher.bootstrap import create_app as create_dispatcher

        serve(
            lambda: create_dispatcher(settings), host=settings.dispatcher_host, port=settings.dispatcher_port
        )
    else:
        from services.notifier.bootstrap import create_app as create_notifier

        serve(lambda: create_notifier(settings), host=settings.notifier_host, port=settings.notifier_port)
    return 0


def _admin(args: argparse.Namespace) -> int:
    from errands import admin
    from shared.auth import Role

    settings = Settings()
    if args.admin_command == "create-organisation":
        result = asyncio.run(admin.new_organisation(settings, args.name))
    elif args.admin_command == "create-operator-token":
        result = asyncio.run(
            admin.new_operator_token(settings, uuid.UUID(args.organisation_id), **_owner(args))
        )
    elif args.admin_command == "create-token":
        result = asyncio.run(admin.new_role_token(settings, Role(args.role), **_owner(args)))
    elif args.admin_command == "create-person":
        result = asyncio.run(
            admin.new_person(settings, uuid.UUID(args.organisation_id), email=args.email, role=args.role)
        )
    elif args.admin_command == "password-link":
        result = asyncio.run(admin.new_password_link(settings, uuid.UUID(args.person_id)))
    elif args.admin_command == "erase":
        organisation_id = uuid.UUID(args.organisation) if args.organisation else None
        result = asyncio.run(
            admin.erase(settings, phone=args.phone, email=args.email, organisation_id=organisation_id)
        )
    else:
        if not asyncio.run(admin.revoke(settings, uuid.UUID(args.token_id))):
            print("no such live token", file=sys.stderr)
            return 1
        result = {"revoked": args.token_id}
    print(json.dumps(result, indent=2))
    return 0


def _owner(args: argparse.Namespace) -> dict[str, Any]:
    return {"person_id": uuid.UUID(args.person) if args.person else None, "service": args.service}


def _import(args: argparse.Namespace) -> int:
    from errands.local import local_state
    from services.intake.entrypoints.csv_import import import_csv

    state = (local_state() or ({}, None))[0]
    intake_url = args.intake_url or state.get("intake_url")
    token = args.token or os.environ.get("ERRANDS_TOKEN") or state.get("operator_token")
    if not intake_url or not token:
        print("errands import: give --intake-url and --token (or run `make run` first)", file=sys.stderr)
        return 2
    report = asyncio.run(import_csv(args.file, intake_url=intake_url, token=token))
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return 1 if report.rejected else 0


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from errands.export import export_csv
    from services.intake.entrypoints.schemas import ExportQuery

    try:
        query = ExportQuery.model_validate({"from": args.start, "to": args.end})
        organisation_id = uuid.UUID(args.organisation) if args.organisation else None
    except (ValidationError, ValueError) as exc:
        print(f"errands export: {exc}", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(newline="")  # type: ignore[union-attr]  # csv writes its own CRLF
    rows = asyncio.run(
        export_csv(Settings(), sys.stdout, start=query.from_, end=query.to, organisation_id=organisation_id)
    )
    print(f"errands export: {rows} legs", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="errands", description="Dispatch for volunteer errands and deliveries."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the whole system locally (embedded stack unless addresses are set)"
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start the embedded stack with an empty database (deletes .errands/data)",
    )
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=("intake", "dispatcher", "notifier"))
    commands.add_parser("migrate", help="apply database migrations")
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("topics_command", choices=("create",))
    admin = commands.add_parser("admin", help="organisations, people, tokens and erasure")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    organisation = admin_commands.add_parser(
        "create-organisation", help="an organisation and its operator token"
    )
    organisation.add_argument("name")
    operator = admin_commands.add_parser("create-operator-token", help="another operator token")
    operator.add_argument("organisation_id")
    token = admin_commands.add_parser("create-token", help="an ops or admin token")
    token.add_argument("--role", choices=("ops", "admin"), required=True)
    for parser_ in (operator, token):
        owner = parser_.add_mutually_exclusive_group()
        owner.add_argument("--person", help="the id of the person who owns the token")
        owner.add_argument("--service", help="or the name of the service it is for, e.g. crm-sync")
    person = admin_commands.add_parser(
        "create-person", help="a member of staff; prints their one-time set-password link"
    )
    person.add_argument("organisation_id")
    person.add_argument("email")
    person.add_argument("--role", choices=("admin", "operator", "ops"), required=True)
    link = admin_commands.add_parser(
        "password-link", help="a new one-time set-password link for a person (earlier ones stop working)"
    )
    link.add_argument("person_id")
    revoke = admin_commands.add_parser("revoke-token", help="revoke a token")
    revoke.add_argument("token_id")
    erase = admin_commands.add_parser(
        "erase", help="erase one person's personal data from every task that names them"
    )
    erased = erase.add_mutually_exclusive_group(required=True)
    erased.add_argument("--phone", help="compared by its digits alone")
    erased.add_argument("--email", help="compared case-blind")
    erase.add_argument("--organisation", help="only this organisation's tasks (default: every one)")
    _add_ops_commands(commands)
    from errands.simulation.run import add_arguments as add_simulation_arguments

    add_simulation_arguments(
        commands.add_parser("simulate", help="play a day in Ningbo against the running services")
    )
    importer = commands.add_parser("import", help="submit tasks from a hotline spreadsheet (CSV)")
    importer.add_argument("file", help="CSV with one row per drop-off, grouped by its `task` column")
    importer.add_argument("--intake-url", help="default: .errands/local.json")
    importer.add_argument("--token", help="operator token (or ERRANDS_TOKEN; default: .errands/local.json)")
    exporter = commands.add_parser(
        "export", help="tasks and legs created in a time range as CSV on stdout (no personal data)"
    )
    exporter.add_argument("--from", dest="start", required=True, help="ISO time with offset, inclusive")
    exporter.add_argument("--to", dest="end", required=True, help="ISO time with offset, exclusive")
    exporter.add_argument(
        "--organisation",
        help="only this organisation's tasks, with volunteers' masked names (default: all, with ids)",
    )
    return parser


def _add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from errands.ops import TAIL_DEFAULT_TOPICS

    bootstrap = argparse.ArgumentParser(add_help=False)
    bootstrap.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS, else .errands/local.json from `make run`)",
    )
    tail = commands.add_parser(
        "tail", parents=[bootstrap], help="follow topics as readable lines, one per event"
    )
    tail.add_argument("topics", nargs="*", metavar="TOPIC", help=f"default: {' '.join(TAIL_DEFAULT_TOPICS)}")
    tail.add_argument(
        "--type", dest="types", action="append", default=[], metavar="GLOB", help="e.g. 'leg.*'; repeatable"
    )
    tail.add_argument("--task", metavar="ID", help="only this task's events (an id or its prefix)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--json", action="store_true", help="print each CloudEvent as it travelled")
    tail.add_argument("--full-ids", action="store_true", help="print whole ids, not their first 8 characters")
    tail.add_argument("--max-events", type=int, help=argparse.SUPPRESS)
    tail.add_argument("--idle-exit", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    lag = commands.add_parser("lag", parents=[bootstrap], help="consumer-group lag per topic and partition")
    lag.add_argument("groups", nargs="*", metavar="GROUP", help="default: every group the broker knows")
    lag.add_argument("--json", action="store_true")
    dlq = commands.add_parser("dlq", help="dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser("list", parents=[bootstrap], help="dead letters with origin and error")
    dlq_list.add_argument("--limit", type=int, default=100, help="the most recent N (default 100)")
    dlq_list.add_argument("--group", help="only those one consumer group gave up on")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = dlq_commands.add_parser(
        "replay", parents=[bootstrap], help="re-publish dead letters to their origin topic"
    )
    replay.add_argument(
        "ids", nargs="*", metavar="ID", help="dead-letter ids (partition:offset) from `dlq list`"
    )
    replay.add_argument("--all", dest="everything", action="store_true", help="every one not yet replayed")
    replay.add_argument("--group", help="with --all: only those one consumer group gave up on")
    replay.add_argument("--force", action="store_true", help="replay even those replayed before")


def _ops(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from errands import ops

    where = ops.resolve_bootstrap(args.bootstrap)
    try:
        if args.command == "tail":
            asyncio.run(
                ops.tail(
                    bootstrap=where.servers,
                    topics=args.topics or ops.TAIL_DEFAULT_TOPICS,
                    types=args.types,
                    task=args.task,
                    from_beginning=args.from_beginning,
                    as_json=args.json,
                    full_ids=args.full_ids,
                    colour=not args.json and ops.colour_wanted(sys.stdout),
                    max_events=args.max_events,
                    idle_exit_s=args.idle_exit,
                    handle_signals=True,
                )
            )
        elif args.command == "lag":
            rows = asyncio.run(ops.consumer_lag(bootstrap=where.servers, groups=args.groups))
            print(ops.lag_as_json(rows) if args.json else ops.format_lag(rows, groups=args.groups), end="")
        elif args.dlq_command == "list":
            letters = asyncio.run(ops.list_dead_letters(bootstrap=where.servers, group=args.group))
            letters = letters[-args.limit :] if args.limit > 0 else letters
            if args.json:
                if letters:
                    print(ops.dead_letters_as_json(letters))
            else:
                print(ops.format_dead_letters(letters), end="")
        else:
            if not args.ids and not args.everything:
                print("errands dlq replay: give dead-letter ids or --all", file=sys.stderr)
                return 2
            outcomes = asyncio.run(
                ops.replay_dead_letters(
                    bootstrap=where.servers,
                    ids=args.ids,
                    everything=args.everything,
                    group=args.group,
                    force=args.force,
                )
            )
            for outcome in outcomes:
                if outcome.replayed_to:
                    print(f"{outcome.id}  replayed -> {outcome.replayed_to}")
                else:
                    print(f"{outcome.id}  skipped: {outcome.skipped}")
            if any(o.skipped == "no such dead letter" for o in outcomes):
                return 1
    except KafkaError as exc:
        print(
            f"errands {args.command}: Kafka at {where.servers} (from {where.source}): {exc}", file=sys.stderr
        )
        return 2
    except ops.OpsError as exc:
        print(f"errands {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _command(args)
    except DomainError as exc:
        print(f"errands {args.command}: {exc.message}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args.service)
    if args.command == "run":
        from errands.launcher import run

        return run(Path.cwd(), fresh=args.fresh)
    if args.command == "migrate":
        from errands.migrate import upgrade

        upgrade(Settings())
        return 0
    if args.command == "topics":
        from shared.kafka import create_topics

        created = asyncio.run(create_topics(Settings()))
        print(json.dumps({"created": created}))
        return 0
    if args.command in ("tail", "lag", "dlq"):
        return _ops(args)
    if args.command == "import":
        return _import(args)
    if args.command == "export":
        return _export(args)
    if args.command == "simulate":
        from errands.simulation.run import run_from_arguments

        return run_from_arguments(args)
    return _admin(args)
