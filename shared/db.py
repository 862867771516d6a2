"""Database session helpers: one engine and one sessionmaker per process, built from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentDataError
from sqlalchemy import BigInteger, ColumnElement, MetaData, Text, func, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The id of the writing transaction, as a column default: with `snapshot_xmin()` it tells which rows
# were written by transactions every later reader will see, and which may still be followed by
# the commit of an older transaction.
CURRENT_XID = text("(pg_current_xact_id()::text)::bigint")


def snapshot_xmin() -> ColumnElement[int]:
    """The oldest transaction still running as this statement sees the database."""
    return func.pg_snapshot_xmin(func.pg_current_snapshot()).cast(Text).cast(BigInteger)


def schema_metadata(schema: str) -> MetaData:
    """Metadata for the tables of one PostgreSQL schema (each service owns one)."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """The process's engine.

    No pre-ping (it would cost a round trip per request): after a database restart the first
    error on a stale connection invalidates the pool, that request answers 503 and the next ones
    get fresh connections (see `is_connection_error`).
    """
    # A fixed pool: overflow connections would be opened and closed per request under load.
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=0,
        pool_timeout=10,
        connect_args={"command_timeout": 30, "timeout": 10},
    )


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection without BEGIN/COMMIT: for a hot path that is one atomic statement."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


# SQLSTATEs of a server that is away or not yet back: connection exceptions (class 08), and
# admin shutdown, crash shutdown and "the database system is starting up" (57P01-57P03).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_CONFLICT_SQLSTATES = ("40P01", "40001")  # deadlock detected; serialization failure


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it wraps: SQLAlchemy's error around the adapter's, around the
    driver's, a few links down (`orig`, then the cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        following = current.orig if isinstance(current, DBAPIError) else None
        current = following or current.__cause__ or current.__context__


def _sqlstate_starts(error: BaseException, prefixes: tuple[str, ...]) -> bool:
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(prefixes)


def is_connection_error(exc: BaseException) -> bool:
    """The database went away, cannot be reached yet, or has no connection free for us in time.

    As opposed to a query that is wrong: these are worth a 503 and a retry, not a 500. The driver's
    own exception may sit a few links down the chain, so the whole chain is looked at.
    """
    for current in _chain(exc):
        if isinstance(current, ArgumentDataError):
            return False  # an InterfaceError by class, but about a value, not the connection
        if isinstance(current, PoolTimeoutError | OSError | TimeoutError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        # InternalClientError: the connection's protocol state is broken (an operation was cut off
        # mid-way, e.g. by the server going away); only a new connection helps.
        if isinstance(
            current,
            asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.InterfaceError
            | asyncpg.exceptions.InternalClientError,
        ):
            return True
        if _sqlstate_starts(current, _UNAVAILABLE_SQLSTATES):
            return True
        if "connection is closed" in str(current):
            return True
    return False


def is_transient_conflict(exc: BaseException) -> bool:
    """The transaction was rolled back because another one wanted the same rows at the same moment
    (a deadlock, or a serialization failure): nothing was changed, and the same request a moment
    later goes through."""
    return any(_sqlstate_starts(current, _CONFLICT_SQLSTATES) for current in _chain(exc))


def is_data_error(exc: BaseException) -> bool:
    """A value the database cannot take (out of range, malformed): trying it again fails the same way.

    PostgreSQL's data exceptions (SQLSTATE class 22), the driver refusing to encode a query argument
    (a date out of its range), or Python's own overflow on such a value, anywhere down the chain.
    """
    return any(
        isinstance(current, ArgumentDataError | OverflowError) or _sqlstate_starts(current, ("22",))
        for current in _chain(exc)
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions are per request or per message and never shared across tasks."""
    return async_sessionmaker(engine, expire_on_commit=False)
