"""Which reported deliveries are proven, and when a task is done."""

from __future__ import annotations

import uuid

from services.notifier.domain.confirmation import (
    Confirmed,
    Failed,
    check_delivery,
    judge_report,
    task_is_complete,
)
from shared.crypto import code_hash

KEY = b"test-key"
LEG = uuid.uuid4()
EXPECTED = code_hash(KEY, LEG, "123456")


def test_the_right_code_confirms() -> None:
    got = check_delivery(
        expected_code_hash=EXPECTED,
        no_contact=False,
        code_hash=code_hash(KEY, LEG, "123456"),
        photo_sha256=None,
    )
    assert got == "code"


def test_a_wrong_code_does_not_confirm() -> None:
    got = check_delivery(
        expected_code_hash=EXPECTED,
        no_contact=False,
        code_hash=code_hash(KEY, LEG, "654321"),
        photo_sha256=None,
    )
    assert got is None


def test_a_photo_confirms_only_a_no_contact_drop_off() -> None:
    photo = "a" * 64
    assert (
        check_delivery(expected_code_hash=EXPECTED, no_contact=True, code_hash=None, photo_sha256=photo)
        == "photo"
    )
    assert (
        check_delivery(expected_code_hash=EXPECTED, no_contact=False, code_hash=None, photo_sha256=photo)
        is None
    )
    assert (
        check_delivery(expected_code_hash=EXPECTED, no_contact=True, code_hash=None, photo_sha256=None)
        is None
    )


def test_a_task_is_complete_when_every_live_leg_is_confirmed() -> None:
    assert task_is_complete(["confirmed", "cancelled"])
    assert not task_is_complete(["confirmed", "open"])
    assert not task_is_complete(["cancelled"])


def _judge(*, status: str = "open", flagged: bool = False, failed: int = 0, code: str = "123456") -> object:
    return judge_report(
        leg_status=status,
        leg_flagged=flagged,
        failed_attempts=failed,
        expected_code_hash=EXPECTED,
        no_contact=False,
        code_hash=code_hash(KEY, LEG, code),
        photo_sha256=None,
        max_failures=3,
    )


def test_a_report_with_the_right_code_confirms() -> None:
    assert _judge() == Confirmed("code")


def test_a_wrong_code_counts_one_more_failure_and_the_third_flags() -> None:
    assert _judge(code="000000") == Failed(attempts=1, flagged=False)
    assert _judge(code="000000", failed=2) == Failed(attempts=3, flagged=True)


def test_a_flagged_leg_ignores_even_the_right_code() -> None:
    assert _judge(flagged=True) == "flagged"


def test_a_confirmed_leg_ignores_further_reports() -> None:
    assert _judge(status="confirmed", code="000000") == "already_confirmed"
