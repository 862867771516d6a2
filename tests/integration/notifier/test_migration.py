"""The notifier's tables in code match what the migrations build."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.notifier.adapters.tables import NotifyBase
from shared.settings import Settings


async def test_migrations_build_the_notifier_tables_declared_in_code(notifier_settings: Settings) -> None:
    engine = create_async_engine(notifier_settings.sqlalchemy_url)

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _p: name == "notify" if type_ == "schema" else True,
                "compare_type": True,
            },
        )
        return list(compare_metadata(context, NotifyBase.metadata))

    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
