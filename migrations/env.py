"""Alembic environment: one chain of revisions for every schema in the Errands database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.dispatcher.adapters.tables import DispatchBase
from services.intake.adapters.tables import IntakeBase
from services.notifier.adapters.tables import NotifyBase
from shared.auth import AuthBase

target_metadata = [AuthBase.metadata, IntakeBase.metadata, DispatchBase.metadata, NotifyBase.metadata]
SCHEMAS = ("auth", "intake", "dispatch", "notify")


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    return name in SCHEMAS if type_ == "schema" else True


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=_include_name,
        version_table_schema="public",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
