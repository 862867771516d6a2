"""Long-poll wakeups: a notification wakes that volunteer's waiters only; closing wakes everyone."""

from __future__ import annotations

import uuid

from services.dispatcher.adapters.wakeups import VolunteerWakeups
from shared.listen import PgListener


def wakeups() -> tuple[VolunteerWakeups, PgListener]:
    listener = PgListener("postgresql://unused")  # never started: we feed it notifications by hand
    return VolunteerWakeups(listener, "dispatch_volunteer"), listener


async def test_a_notification_wakes_only_that_volunteers_polls() -> None:
    subject, listener = wakeups()
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    with subject.waiter(mine) as my_event, subject.waiter(theirs) as their_event:
        listener._dispatch("dispatch_volunteer", str(mine))
        assert my_event.is_set() and not their_event.is_set()
    assert subject.waiting == 0


async def test_closing_wakes_every_poll_and_marks_them_to_answer_now() -> None:
    subject, _ = wakeups()
    with subject.waiter(uuid.uuid4()) as a, subject.waiter(uuid.uuid4()) as b:
        assert not subject.closing
        subject.close()
        assert a.is_set() and b.is_set() and subject.closing


async def test_a_reconnect_wakes_everyone_because_notifications_may_have_been_lost() -> None:
    subject, listener = wakeups()
    with subject.waiter(uuid.uuid4()) as a:
        listener._dispatch("dispatch_volunteer", "")
        assert a.is_set()
