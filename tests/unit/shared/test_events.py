from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.events import (
    ALL_TOPICS,
    EVENT_TYPES,
    CloudEvent,
    LegConfirmed,
    TaskCompleted,
    build_event,
    current_traceparent,
    parse_data,
)


def test_every_event_type_belongs_to_a_known_topic() -> None:
    assert {topic for topic, _ in EVENT_TYPES.values()} <= set(ALL_TOPICS)
    assert len(EVENT_TYPES) == 20


def test_an_event_round_trips_through_its_bytes_with_a_stable_id() -> None:
    task_id = uuid.uuid4()
    topic, event = build_event(
        TaskCompleted(task_id=task_id, leg_ids=[uuid.uuid4()]), source="/notifier", subject=task_id
    )
    assert topic == "errands.confirmations.v1"
    again = CloudEvent.from_bytes(event.to_bytes())
    assert again.id == event.id and again.type == "task.completed" and again.subject == str(task_id)
    assert again.specversion == "1.0" and again.datacontenttype == "application/json"
    data = parse_data(again)
    assert isinstance(data, TaskCompleted) and data.task_id == task_id


def test_events_built_while_handling_a_request_carry_its_traceparent() -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = current_traceparent.set(trace)
    try:
        _, event = build_event(
            LegConfirmed(task_id=uuid.uuid4(), leg_id=uuid.uuid4(), volunteer_id=uuid.uuid4(), method="code"),
            source="/notifier",
            subject="x",
        )
    finally:
        current_traceparent.reset(token)
    assert event.traceparent == trace


def test_unknown_fields_from_newer_producers_are_kept() -> None:
    raw = CloudEvent(
        source="/x",
        type="task.completed",
        subject="s",
        data={"task_id": str(uuid.uuid4()), "leg_ids": [], "new": 1},
    )
    data = parse_data(raw)
    assert data.model_extra == {"new": 1}


def test_bad_data_is_refused() -> None:
    event = CloudEvent(
        source="/x", type="leg.confirmed", subject="s", time=datetime.now(UTC), data={"task_id": "nope"}
    )
    with pytest.raises(ValueError, match="validation"):
        parse_data(event)
