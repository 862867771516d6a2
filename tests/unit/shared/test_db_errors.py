from __future__ import annotations

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentDataError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.db import is_connection_error, is_data_error, is_transient_conflict


def _wrapped(driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy raises it: its error around the adapter's, around the driver's."""
    adapter_error = RuntimeError(str(driver_error))
    adapter_error.__cause__ = driver_error
    return DBAPIError("SELECT 1", {}, adapter_error)


def test_a_database_that_is_starting_up_is_unavailable_not_a_bug() -> None:
    assert is_connection_error(_wrapped(asyncpg.exceptions.CannotConnectNowError("starting up")))


def test_lost_connections_and_a_full_pool_are_unavailable() -> None:
    assert is_connection_error(_wrapped(ConnectionResetError()))
    assert is_connection_error(_wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("gone")))
    assert is_connection_error(PoolTimeoutError("QueuePool limit reached"))


def test_a_connection_left_mid_operation_is_spent_not_a_bug() -> None:
    # Seen right after a PostgreSQL restart on the intake's direct driver path.
    broken = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    assert is_connection_error(broken)


def test_a_wrong_query_is_not_an_outage() -> None:
    assert not is_connection_error(_wrapped(asyncpg.exceptions.UndefinedColumnError("no such column")))
    assert not is_connection_error(ValueError("bad input"))


def test_a_value_the_database_cannot_take_is_a_data_error_not_an_outage() -> None:
    # As the driver raises it for a date beyond its range, before anything is sent.
    argument = ArgumentDataError("invalid input for query argument $4: (date value out of range)")
    for error in (
        _wrapped(argument),
        _wrapped(asyncpg.exceptions.DatetimeFieldOverflowError("date/time field value out of range")),
        _wrapped(asyncpg.exceptions.NumericValueOutOfRangeError("value out of range")),
    ):
        assert is_data_error(error)
        assert not is_connection_error(error)


def test_outages_and_wrong_queries_are_not_data_errors() -> None:
    assert not is_data_error(_wrapped(ConnectionResetError()))
    assert not is_data_error(_wrapped(asyncpg.exceptions.UndefinedColumnError("no such column")))
    assert not is_data_error(RuntimeError("boom"))


def test_a_deadlock_or_a_serialization_failure_is_a_transient_conflict_and_nothing_else() -> None:
    for error in (
        _wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")),
        _wrapped(asyncpg.exceptions.SerializationError("could not serialize access")),
    ):
        assert is_transient_conflict(error)
        assert not is_connection_error(error)
        assert not is_data_error(error)
    assert not is_transient_conflict(_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")))
    assert not is_transient_conflict(_wrapped(ConnectionResetError()))
