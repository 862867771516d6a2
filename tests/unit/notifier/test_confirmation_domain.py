"""Which reported deliveries are proven, and when a task is done."""

from __future__ import annotations

import uuid

from services.notifier.domain.confirmation import check_delivery, task_is_complete
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
