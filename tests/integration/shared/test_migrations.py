"""The tables each service declares in code are exactly what the migrations build, schema by schema."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.dispatcher.adapters.tables import DispatchBase
from services.intake.adapters.tables import IntakeBase
from services.notifier.adapters.tables import NotifyBase
from shared.auth import AuthBase
from tests.conftest import Stack


@pytest.mark.parametrize(
    "metadata",
    [AuthBase.metadata, IntakeBase.metadata, DispatchBase.metadata, NotifyBase.metadata],
    ids=lambda metadata: metadata.schema,
)
async def test_the_migrations_build_the_tables_declared_in_code(stack: Stack, metadata: MetaData) -> None:
    def only_this_schema(name: str | None, type_: str, _parent: object) -> bool:
        return name == metadata.schema if type_ == "schema" else True

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": only_this_schema,
                "compare_type": True,
            },
        )
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(stack.settings().sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
