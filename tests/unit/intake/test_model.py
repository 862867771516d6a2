"""Pure decisions of intake: request validation, status folding, cancellation, list cursors."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.domain.model import (
    ListPosition,
    cancellation,
    escalation_moves_task,
    history_after,
    leg_stage_of,
    leg_status_after,
    leg_status_on_cancel,
    task_stage_of,
    task_status_after,
)
from services.intake.entrypoints.schemas import TaskIn
from shared.http import validation_problem
from shared.settings import Settings


def body(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "kind": "meal",
        "pickup": {"lat": 29.87, "lon": 121.55},
        "dropoffs": [{"lat": 29.88, "lon": 121.56}],
    }
    task.update(overrides)
    return task


def bad_fields(value: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        TaskIn.model_validate(value)
    problem = validation_problem(caught.value)
    assert problem.status == 422
    return {error["field"] for error in problem.errors or []}


def test_a_minimal_task_is_valid_with_routine_priority() -> None:
    task = TaskIn.model_validate(body())
    assert task.priority == "routine"
    assert task.dropoffs[0].language == "zh"


def test_every_bad_field_is_named_by_its_json_path() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    fields = bad_fields(
        body(
            kind="boat",
            priority="asap",
            pickup={"lat": 90.5, "lon": -180.01, "contact_phone": "call me"},
            dropoffs=[
                {"lat": 29.88, "lon": 121.56},
                {"lat": -91, "lon": 181, "recipient_email": "nobody", "language": "Chinese"},
            ],
            items=[{"name": "rice", "quantity": 0, "weight_kg": -1}, {"name": "", "quantity": 1.5}],
            deliver_by=past,
            requirements={"vehicle": "rocket", "skills": ["x" * 65], "languages": ["english"]},
            callback_url="ftp://example.org/hook",
            notes="n" * 2001,
            external_ref="r" * 201,
            colour="red",
        )
    )
    assert fields == {
        "$.kind",
        "$.priority",
        "$.pickup.lat",
        "$.pickup.lon",
        "$.pickup.contact_phone",
        "$.dropoffs[1].lat",
        "$.dropoffs[1].lon",
        "$.dropoffs[1].recipient_email",
        "$.dropoffs[1].language",
        "$.items[0].quantity",
        "$.items[0].weight_kg",
        "$.items[1].name",
        "$.items[1].quantity",
        "$.deliver_by",
        "$.requirements.vehicle",
        "$.requirements.skills[0]",
        "$.requirements.languages[0]",
        "$.callback_url",
        "$.notes",
        "$.external_ref",
        "$.colour",
    }


@pytest.mark.parametrize(
    ("dropoffs", "field"),
    [
        ([], "$.dropoffs"),
        ([{"lat": 1, "lon": 1}] * 21, "$.dropoffs"),
        ({}, "$.dropoffs"),
        ("x", "$.dropoffs"),
    ],
)
def test_a_task_has_one_to_twenty_dropoffs(dropoffs: Any, field: str) -> None:
    assert bad_fields(body(dropoffs=dropoffs)) == {field}


def test_twenty_dropoffs_are_accepted() -> None:
    assert len(TaskIn.model_validate(body(dropoffs=[{"lat": 1, "lon": 1}] * 20)).dropoffs) == 20


@pytest.mark.parametrize(
    ("pickup", "field"),
    [
        ({"lat": "north", "lon": 1}, "$.pickup.lat"),
        ({"lat": float("inf"), "lon": 1}, "$.pickup.lat"),
        ({"lat": float("nan"), "lon": 1}, "$.pickup.lat"),
        ({"lat": 10**400, "lon": 1}, "$.pickup.lat"),
        ({"lat": 1, "lon": None}, "$.pickup.lon"),
        ({"lat": 1, "lon": 1, "address": "depot\x00"}, "$.pickup.address"),
        ({"lat": 1, "lon": 1, "address": "\ud800"}, "$.pickup.address"),
        ({"lat": 1, "lon": 1, "ready_at": "2026-12-01T10:00:00"}, "$.pickup.ready_at"),
    ],
)
def test_malformed_values_are_refused_not_crashed_on(pickup: dict[str, Any], field: str) -> None:
    assert bad_fields(body(pickup=pickup)) == {field}


def test_huge_quantities_are_refused() -> None:
    assert bad_fields(body(items=[{"name": "masks", "quantity": 10**30}])) == {"$.items[0].quantity"}


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://",
        "https://x y",
        "https://" + "a" * 2050,
        "http://user@/hook",
        "http://:80/hook",
        "http://[::1/hook",
        "http://hooks.example.org:99999/",
    ],
)
def test_callback_url_must_be_a_short_http_url(url: str) -> None:
    assert bad_fields(body(callback_url=url)) == {"$.callback_url"}


def test_deliver_by_in_the_future_is_accepted() -> None:
    soon = datetime.now(UTC) + timedelta(hours=2)
    assert TaskIn.model_validate(body(deliver_by=soon.isoformat())).deliver_by == soon


def test_idempotency_retention_below_24_hours_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(idempotency_retention_s=23 * 3600)
    assert Settings().idempotency_retention_s == 24 * 3600


# --- folding dispatch and confirmation events into statuses --------------------------------------


def fold(events: list[str], legs: int = 1) -> tuple[str, list[str]]:
    """Apply `event_type` or `event_type@leg` in order, as the read model does."""
    task, statuses = "submitted", ["pending"] * legs
    for entry in events:
        type_, _, leg = entry.partition("@")
        if leg:
            statuses[int(leg)] = leg_status_after(statuses[int(leg)], type_)
        task = task_status_after(task, statuses, type_)
    return task, statuses


def test_a_delivered_and_confirmed_leg_completes_its_task() -> None:
    assert fold(
        [
            "leg.offered@0",
            "leg.assigned@0",
            "leg.picked_up@0",
            "leg.delivered@0",
            "leg.confirmed@0",
            "task.completed",
        ]
    ) == ("completed", ["confirmed"])


def test_offered_then_declined_goes_back_to_pending_and_keeps_dispatching() -> None:
    assert fold(["leg.offered@0", "leg.offer_declined@0"]) == ("dispatching", ["pending"])


def test_a_late_or_repeated_event_never_moves_a_leg_backwards() -> None:
    assert fold(["leg.assigned@0", "leg.picked_up@0", "leg.offered@0", "leg.assigned@0"]) == (
        "in_progress",
        ["picked_up"],
    )
    # A confirmation read from its own topic before the delivery from the dispatch topic.
    assert fold(["leg.assigned@0", "leg.confirmed@0", "leg.delivered@0"]) == ("in_progress", ["confirmed"])


def test_a_problem_after_pickup_waits_for_a_decision_and_before_pickup_hands_the_leg_back() -> None:
    assert fold(["leg.assigned@0", "leg.picked_up@0", "leg.problem_reported@0"])[1] == ["needs_decision"]
    assert fold(["leg.assigned@0", "leg.problem_reported@0"])[1] == ["pending"]


def test_a_decision_sends_a_leg_back_to_dispatch_or_fails_it() -> None:
    handed_back = ["leg.assigned@0", "leg.picked_up@0", "leg.problem_reported@0", "task.escalated"]
    assert fold(handed_back) == ("escalated", ["needs_decision"])
    assert fold([*handed_back, "leg.assigned@1"], legs=2) == ("escalated", ["needs_decision", "assigned"])
    assert fold([*handed_back, "leg.decided@0"])[1] == ["pending"]
    assert fold([*handed_back, "leg.decided@0", "leg.assigned@0"]) == ("in_progress", ["assigned"])
    assert fold([*handed_back, "leg.failed@0"]) == ("failed", ["failed"])
    assert leg_status_after("needs_decision", "leg.decided", decided="cancelled") == "cancelled"
    # A decision on a leg not waiting for one (a flagged delivery confirmed) moves nothing here.
    assert fold(["leg.assigned@0", "leg.picked_up@0", "leg.delivered@0", "leg.decided@0"])[1] == ["delivered"]


def test_a_task_whose_legs_ended_with_a_failure_is_failed_or_partially_completed() -> None:
    one_confirmed = ["leg.assigned@0", "leg.picked_up@0", "leg.delivered@0", "leg.confirmed@0"]
    assert fold([*one_confirmed, "leg.failed@1"], legs=2) == ("partially_completed", ["confirmed", "failed"])
    assert fold(["leg.failed@0", "leg.failed@1"], legs=2) == ("failed", ["failed", "failed"])
    # Still going while another leg is on its way.
    assert fold(["leg.failed@0", "leg.assigned@1"], legs=2) == ("in_progress", ["failed", "assigned"])
    assert cancellation("failed", ["failed"]) == "completed"
    assert cancellation("partially_completed", ["confirmed", "failed"]) == "completed"


def test_escalation_holds_until_a_leg_is_assigned() -> None:
    assert fold(["task.escalated", "leg.offered@0"]) == ("escalated", ["offered"])
    assert fold(["task.escalated", "leg.assigned@0"]) == ("in_progress", ["assigned"])


def test_one_assigned_leg_of_two_puts_the_task_in_progress() -> None:
    assert fold(["leg.offered@0", "leg.offered@1", "leg.assigned@1"], legs=2) == (
        "in_progress",
        ["offered", "assigned"],
    )


def test_nothing_moves_a_cancelled_task_or_leg() -> None:
    assert task_status_after("cancelled", ["assigned"], "leg.assigned") == "cancelled"
    assert task_status_after("cancelled", ["confirmed"], "task.completed") == "cancelled"
    assert leg_status_after("cancelled", "leg.assigned") == "cancelled"
    assert leg_status_after("cancelled", "leg.offer_expired") == "cancelled"


LEG_JOURNEY = ["leg.offered", "leg.assigned", "leg.picked_up", "leg.delivered", "leg.confirmed"]


@pytest.mark.parametrize(
    "arrival",
    # The dispatch topic keeps its own order; the confirmation topic's events can come anywhere.
    [
        order
        for order in itertools.permutations([*LEG_JOURNEY, "task.completed"])
        if [e for e in order if e in LEG_JOURNEY[:4]] == LEG_JOURNEY[:4]
        and order.index("leg.confirmed") < order.index("task.completed")
    ],
)
def test_every_status_gets_its_time_whichever_topic_is_read_first(arrival: tuple[str, ...]) -> None:
    task, leg = "submitted", "pending"
    task_history, leg_history = {"submitted": "t0"}, {"pending": "t0"}
    for type_ in arrival:
        at = f"time of {type_}"
        if type_.startswith("leg."):
            after = leg_status_after(leg, type_)
            leg_history = history_after(
                leg_history, before=leg, after=after, stage=leg_stage_of(type_), at=at
            )
            leg = after
        after = task_status_after(task, [leg], type_)
        task_history = history_after(
            task_history, before=task, after=after, stage=task_stage_of(type_), at=at
        )
        task = after
    assert (task, leg) == ("completed", "confirmed")
    assert task_history.keys() == {"submitted", "dispatching", "in_progress", "completed"}
    assert task_history["dispatching"] == "time of leg.offered"
    assert task_history["completed"] == "time of task.completed"
    assert {k: v for k, v in leg_history.items() if k != "pending"} == {
        "offered": "time of leg.offered",
        "assigned": "time of leg.assigned",
        "picked_up": "time of leg.picked_up",
        "delivered": "time of leg.delivered",
        "confirmed": "time of leg.confirmed",
    }


def test_a_status_entered_again_takes_the_new_time() -> None:
    history = history_after({"offered": "1"}, before="pending", after="offered", stage="offered", at="2")
    assert history == {"offered": "2"}


# --- cancellation ---------------------------------------------------------------------------------


def test_cancelling_decides_by_status() -> None:
    assert cancellation("dispatching", ["offered"]) == "cancel"
    assert cancellation("in_progress", ["picked_up", "assigned"]) == "cancel"
    assert cancellation("cancelled", ["cancelled"]) == "already_cancelled"
    assert cancellation("completed", ["confirmed"]) == "completed"
    assert cancellation("in_progress", ["confirmed", "confirmed"]) == "completed"


def test_cancel_withdraws_legs_not_yet_picked_up() -> None:
    assert [
        leg_status_on_cancel(s)
        for s in ("pending", "offered", "assigned", "picked_up", "delivered", "confirmed")
    ] == ["cancelled", "cancelled", "cancelled", "picked_up", "delivered", "confirmed"]


# --- cursors --------------------------------------------------------------------------------------


def test_a_cursor_round_trips_and_is_opaque() -> None:
    position = ListPosition(xid=123456, seq=42)
    cursor = position.encode()
    assert "123456" not in cursor
    assert ListPosition.decode(cursor) == position


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "dDE6", ListPosition(1, 2).encode()[:-2], "dDE6LTE6Mg", "dDE6OTk5OTk5OTk5OTk5OTk5OTk5OTk6MQ"],
)
def test_a_foreign_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        ListPosition.decode(cursor)


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2101-01-01T00:00:00Z"]
)
def test_deliver_by_and_ready_at_outside_the_years_served_are_refused(at: str) -> None:
    assert bad_fields(body(deliver_by=at)) == {"$.deliver_by"}
    assert bad_fields(body(pickup={"lat": 29.87, "lon": 121.55, "ready_at": at})) == {"$.pickup.ready_at"}


def test_an_escalated_leg_nobody_took_makes_the_task_escalated() -> None:
    assert escalation_moves_task(["pending"])
    assert escalation_moves_task([]), "the task's first escalation names no single leg"
    assert task_status_after("dispatching", ["pending"], "task.escalated", escalates_task=True) == "escalated"


def test_a_leg_under_way_escalated_on_its_own_leaves_the_task_in_progress() -> None:
    assert not escalation_moves_task(["picked_up"])
    assert not escalation_moves_task(["assigned"])
    status = task_status_after(
        "in_progress", ["picked_up"], "task.escalated", escalates_task=escalation_moves_task(["picked_up"])
    )
    assert status == "in_progress"
