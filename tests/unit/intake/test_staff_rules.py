"""The login throttle's waits, and the actor events carry."""

from __future__ import annotations

import uuid

from services.intake.domain.staff import ThrottleRule, account_key
from shared.events import TaskCancelled, build_event, current_actor

RULE = ThrottleRule(slow_after=3, lock_after=6, base_s=1.0, max_s=5.0, lock_s=900.0)


def test_the_first_failures_cost_nothing_then_each_doubles_up_to_the_maximum_then_the_lock() -> None:
    assert [RULE.wait_after(n) for n in range(0, 8)] == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 900.0, 900.0]
    capped = ThrottleRule(slow_after=1, lock_after=20, base_s=1.0, max_s=5.0, lock_s=900.0)
    assert capped.wait_after(10) == 5.0


def test_an_accounts_key_holds_no_address_and_ignores_case() -> None:
    key = account_key(" Ann@Example.org ")
    assert key == account_key("ann@example.org")
    assert "ann" not in key and "example" not in key


def test_events_built_while_a_request_is_authorised_carry_its_actor() -> None:
    data = TaskCancelled(task_id=uuid.uuid4(), organisation_id=uuid.uuid4(), reason=None)
    nobody = current_actor.set(None)  # whatever an earlier test left in this thread's context
    try:
        _, anonymous = build_event(data, source="/intake", subject=data.task_id)
    finally:
        current_actor.reset(nobody)
    assert anonymous.actor is None and b'"actor"' not in anonymous.to_bytes()
    person = uuid.uuid4()
    token = current_actor.set(f"person:{person}")
    try:
        _, event = build_event(data, source="/intake", subject=data.task_id)
    finally:
        current_actor.reset(token)
    assert event.actor == f"person:{person}"
    assert type(event).from_bytes(event.to_bytes()).actor == f"person:{person}"
