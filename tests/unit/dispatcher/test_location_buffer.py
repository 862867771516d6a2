"""The location buffer: one newest fix per volunteer, bounded, and nothing lost when a write fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.service_layer.locations import (
    Fix,
    LocationBuffer,
    LocationBufferFull,
    fix_from_report,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fix(seconds: float, lat: float = 30.0) -> Fix:
    return Fix(lat=lat, lon=120.0, accuracy_m=5.0, at=T0 + timedelta(seconds=seconds))


def test_reports_of_one_volunteer_coalesce_into_their_newest_fix() -> None:
    buffer = LocationBuffer(capacity=10)
    me, other = uuid.uuid4(), uuid.uuid4()
    buffer.add(me, fix(1, lat=1))
    buffer.add(me, fix(3, lat=3))
    buffer.add(other, fix(2, lat=2))
    assert len(buffer) == 2
    assert buffer.take() == {me: fix(3, lat=3), other: fix(2, lat=2)}
    assert len(buffer) == 0


def test_an_older_fix_arriving_late_never_replaces_a_newer_one() -> None:
    buffer = LocationBuffer(capacity=10)
    me = uuid.uuid4()
    buffer.add(me, fix(5, lat=5))
    buffer.add(me, fix(4, lat=4))
    assert buffer.take()[me] == fix(5, lat=5)


def test_a_full_buffer_refuses_new_volunteers_but_still_takes_newer_fixes_of_buffered_ones() -> None:
    buffer = LocationBuffer(capacity=2)
    a, b = uuid.uuid4(), uuid.uuid4()
    buffer.add(a, fix(1))
    buffer.add(b, fix(1))
    with pytest.raises(LocationBufferFull):
        buffer.add(uuid.uuid4(), fix(1))
    buffer.add(a, fix(2, lat=9))
    assert buffer.take()[a] == fix(2, lat=9)


def test_a_batch_being_written_still_counts_against_the_bound() -> None:
    buffer = LocationBuffer(capacity=2)
    buffer.add(uuid.uuid4(), fix(1))
    buffer.add(uuid.uuid4(), fix(1))
    batch = buffer.take()
    with pytest.raises(LocationBufferFull):
        buffer.add(uuid.uuid4(), fix(1))
    buffer.done(batch)
    buffer.add(uuid.uuid4(), fix(1))


def test_a_batch_that_failed_to_write_goes_back_behind_newer_fixes() -> None:
    buffer = LocationBuffer(capacity=10)
    a, b = uuid.uuid4(), uuid.uuid4()
    buffer.add(a, fix(1, lat=1))
    buffer.add(b, fix(1, lat=1))
    batch = buffer.take()
    buffer.add(a, fix(2, lat=2))  # arrived while the write was failing
    buffer.restore(batch)
    assert buffer.take() == {a: fix(2, lat=2), b: fix(1, lat=1)}


def test_a_closed_buffer_refuses_reports() -> None:
    buffer = LocationBuffer(capacity=10)
    buffer.close()
    with pytest.raises(LocationBufferFull):
        buffer.add(uuid.uuid4(), fix(1))


def test_a_fix_dated_in_the_future_counts_as_now_and_a_missing_time_is_now() -> None:
    before = datetime.now(UTC)
    ahead = fix_from_report(lat=1, lon=2, accuracy_m=None, at=before + timedelta(hours=1))
    missing = fix_from_report(lat=1, lon=2, accuracy_m=None, at=None)
    past = fix_from_report(lat=1, lon=2, accuracy_m=None, at=T0)
    after = datetime.now(UTC)
    assert before <= ahead.at <= after and before <= missing.at <= after
    assert past.at == T0
