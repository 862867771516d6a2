"""The `errands` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

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
        result = asyncio.run(admin.new_operator_token(settings, uuid.UUID(args.organisation_id)))
    elif args.admin_command == "create-token":
        result = asyncio.run(admin.new_role_token(settings, Role(args.role)))
    else:
        if not asyncio.run(admin.revoke(settings, uuid.UUID(args.token_id))):
            print("no such live token", file=sys.stderr)
            return 1
        result = {"revoked": args.token_id}
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="errands", description="Dispatch for volunteer errands and deliveries."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the whole system locally (embedded stack unless addresses are set)")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=("intake", "dispatcher", "notifier"))
    commands.add_parser("migrate", help="apply database migrations")
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("topics_command", choices=("create",))
    admin = commands.add_parser("admin", help="organisations and tokens")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    organisation = admin_commands.add_parser(
        "create-organisation", help="an organisation and its operator token"
    )
    organisation.add_argument("name")
    operator = admin_commands.add_parser("create-operator-token", help="another operator token")
    operator.add_argument("organisation_id")
    token = admin_commands.add_parser("create-token", help="an ops or admin token")
    token.add_argument("--role", choices=("ops", "admin"), required=True)
    revoke = admin_commands.add_parser("revoke-token", help="revoke a token")
    revoke.add_argument("token_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.service)
    if args.command == "run":
        from errands.launcher import run

        return run(Path.cwd())
    if args.command == "migrate":
        from errands.migrate import upgrade

        upgrade(Settings())
        return 0
    if args.command == "topics":
        from shared.kafka import create_topics

        created = asyncio.run(create_topics(Settings()))
        print(json.dumps({"created": created}))
        return 0
    return _admin(args)
