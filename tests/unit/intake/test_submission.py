"""The idempotency-key rules of submitting a task, against an in-memory store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.intake.entrypoints.http import ERROR_STATUSES
from services.intake.entrypoints.schemas import TaskIn
from services.intake.service_layer.submission import Keys, Submission, submit
from shared.errors import Answer, IdempotencyKeyInFlight, IdempotencyKeyReused, answer_for
from tests.unit.intake.fakes import FakeSubmissions

KEYS = Keys(code_key=b"test-code-key", data_key=b"k" * 32)
ORG = uuid.uuid4()


def body(**overrides: Any) -> TaskIn:
    task: dict[str, Any] = {
        "kind": "meal",
        "pickup": {"lat": 29.87, "lon": 121.55},
        "dropoffs": [{"lat": 29.88, "lon": 121.56}, {"lat": 29.89, "lon": 121.57}],
    }
    return TaskIn.model_validate(task | overrides)


async def submitted(
    submissions: FakeSubmissions, key: str, task: TaskIn, organisation_id: uuid.UUID = ORG
) -> Submission:
    return await submit(
        submissions, organisation_id=organisation_id, idempotency_key=key, body=task, keys=KEYS
    )


async def test_a_new_key_stores_the_task_with_its_event_and_hands_out_one_code_per_leg() -> None:
    submissions = FakeSubmissions()
    first = await submitted(submissions, "k1", body())
    assert not first.replayed
    assert [len(leg["confirmation_code"]) for leg in first.task["legs"]] == [6, 6]
    (stored,) = submissions.stored
    assert stored.event[1].type == "task.submitted"
    assert "confirmation_code" not in str(stored.response), "codes are derived again, never stored"


async def test_the_same_key_and_body_answer_the_first_response_again() -> None:
    submissions = FakeSubmissions()
    first = await submitted(submissions, "k1", body())
    again = await submitted(submissions, "k1", body())
    assert again.replayed and again.task == first.task
    assert len(submissions.stored) == 1


async def test_the_same_key_with_another_body_is_refused_as_a_reused_key() -> None:
    submissions = FakeSubmissions()
    await submitted(submissions, "k1", body())
    with pytest.raises(IdempotencyKeyReused) as refused:
        await submitted(submissions, "k1", body(priority="critical"))
    assert answer_for(refused.value, ERROR_STATUSES) == Answer(422, "Idempotency key reused")
    assert refused.value.errors == [
        {"field": "header:Idempotency-Key", "message": "already used with another body"}
    ]
    assert len(submissions.stored) == 1


async def test_a_key_whose_first_request_is_still_running_is_a_conflict() -> None:
    submissions = FakeSubmissions()
    submissions.in_flight.add((ORG, "k1"))
    with pytest.raises(IdempotencyKeyInFlight) as refused:
        await submitted(submissions, "k1", body())
    assert answer_for(refused.value, ERROR_STATUSES) == Answer(409, "Conflict")
    assert refused.value.message == "A request with this Idempotency-Key is still being processed."
    assert submissions.stored == []


async def test_keys_are_scoped_per_organisation() -> None:
    submissions = FakeSubmissions()
    mine = await submitted(submissions, "k1", body())
    theirs = await submitted(submissions, "k1", body(priority="critical"), organisation_id=uuid.uuid4())
    assert not theirs.replayed and theirs.task["id"] != mine.task["id"]
