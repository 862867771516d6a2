"""The readable forms of `errands tail`, `errands lag` and `errands dlq list`: pure functions of records."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from errands.ops import (
    TAIL_DEFAULT_TOPICS,
    KafkaRecord,
    PartitionLag,
    colour_wanted,
    dead_letters_from,
    format_lag,
    format_record,
    lag_of,
    record_as_json,
    record_matches,
    resolve_bootstrap,
)
from shared.events import (
    DEADLETTER_TOPIC,
    LegAssigned,
    LegConfirmationFailed,
    LegOffered,
    NotificationSent,
    TaskSubmitted,
    VolunteerDutyChanged,
    build_event,
)

TASK = uuid.UUID("11111111-2222-3333-4444-555555555555")
LEG = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
VOLUNTEER = uuid.UUID("99999999-8888-7777-6666-555555555555")


def _record(
    value: bytes | None, *, topic: str = "errands.dispatch.v1", headers=(), offset: int = 42
) -> KafkaRecord:
    return KafkaRecord(
        topic=topic,
        partition=3,
        offset=offset,
        key=str(TASK).encode(),
        value=value,
        headers=tuple(headers),
        timestamp_ms=1_780_000_000_000,
    )


def _event_record(data, *, subject: uuid.UUID = TASK) -> KafkaRecord:
    topic, event = build_event(data, source="/dispatcher", subject=subject)
    event.time = datetime(2026, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    return _record(event.to_bytes(), topic=topic)


def _offered(distance_m: float = 1234.0) -> KafkaRecord:
    return _event_record(
        LegOffered(
            task_id=TASK,
            leg_id=LEG,
            offer_id=uuid.uuid4(),
            volunteer_id=VOLUNTEER,
            expires_at=datetime(2026, 5, 1, 10, 1, 0, tzinfo=UTC),
            distance_m=distance_m,
        )
    )


def test_an_offer_line_shows_time_type_task_leg_volunteer_distance_and_where_it_came_from() -> None:
    line = format_record(_offered())
    assert line.startswith("2026-05-01T10:00:00.123Z  leg.offered ")
    assert "task=11111111" in line and "leg=aaaaaaaa" in line and "vol=99999999" in line
    assert "distance=1.23km" in line and "expires=10:01:00Z" in line
    assert line.endswith("dispatch/3@42")
    assert "\033[" not in line and "\n" not in line


def test_full_ids_prints_whole_ids() -> None:
    line = format_record(_offered(), full_ids=True)
    assert f"task={TASK}" in line and f"leg={LEG}" in line and f"vol={VOLUNTEER}" in line


def test_a_submitted_task_shows_its_kind_priority_and_number_of_legs() -> None:
    data = TaskSubmitted.model_validate(
        {
            "task_id": TASK,
            "organisation_id": uuid.uuid4(),
            "kind": "meal",
            "priority": "critical",
            "pickup": {"lat": 29.87, "lon": 121.55},
            "legs": [
                {
                    "leg_id": uuid.uuid4(),
                    "index": i,
                    "dropoff": {"lat": 29.88, "lon": 121.56},
                    "code_hash": "h",
                }
                for i in range(2)
            ],
            "requirements": {"vehicle": "ebike"},
        }
    )
    line = format_record(_event_record(data))
    assert "task.submitted" in line
    assert (
        "kind=meal" in line and "priority=critical" in line and "legs=2" in line and "vehicle=ebike" in line
    )


def test_a_failed_confirmation_shows_the_attempts_and_is_red_on_a_terminal() -> None:
    record = _event_record(
        LegConfirmationFailed(task_id=TASK, leg_id=LEG, volunteer_id=VOLUNTEER, attempts=3, flagged=True)
    )
    plain = format_record(record)
    assert "attempts=3" in plain and "flagged" in plain
    coloured = format_record(record, colour=True)
    assert "\033[1;31mleg.confirmation_failed" in coloured


def test_a_leg_moved_past_a_refusal_shows_from_whom_and_the_operators_reason() -> None:
    moved = LegAssigned(
        task_id=TASK,
        leg_id=LEG,
        volunteer_id=uuid.uuid4(),
        manual=True,
        moved_from=VOLUNTEER,
        override_reason="knows the family",
    )
    line = format_record(_event_record(moved))
    assert "manual" in line and "moved_from=99999999" in line and 'override="knows the family"' in line
    plain = format_record(_event_record(LegAssigned(task_id=TASK, leg_id=LEG, volunteer_id=VOLUNTEER)))
    assert "moved_from" not in plain and "override" not in plain


def test_colour_follows_the_type_family() -> None:
    offer = format_record(_offered(), colour=True)
    notification = format_record(
        _event_record(
            NotificationSent(
                task_id=TASK,
                channel="sms",
                template="delivered",
                language="zh",
                recipient_masked="+86******1234",
            )
        ),
        colour=True,
    )
    assert "\033[32mleg.offered" in offer
    assert "\033[34mnotification.sent" in notification
    assert "channel=sms" in notification and "to=+86******1234" in notification


def test_a_volunteer_event_names_the_volunteer_not_a_task() -> None:
    line = format_record(
        _event_record(VolunteerDutyChanged(volunteer_id=VOLUNTEER, on_duty=True), subject=VOLUNTEER)
    )
    assert "vol=99999999" in line and "task=" not in line and "on duty" in line


def test_a_record_that_is_no_cloudevent_gets_a_clear_line_instead_of_a_crash() -> None:
    for value in (b"{not json", b"\xff\xfe\x00", b'{"type": "x"}', None):
        line = format_record(_record(value))
        assert "! not a CloudEvent" in line and "dispatch/3@42" in line
    assert "9 bytes: '{not json'" in format_record(_record(b"{not json"))
    assert "null value" in format_record(_record(None))


def test_a_dead_letter_line_names_its_origin_group_and_error() -> None:
    headers = [
        ("errands-origin-topic", b"errands.tasks.v1"),
        ("errands-origin-partition", b"2"),
        ("errands-origin-offset", b"17"),
        ("errands-consumer-group", b"dispatcher"),
        ("errands-event-type", b"task.submitted"),
        ("errands-error", b"RuntimeError('boom')\nsecond line"),
        ("errands-attempts", b"5"),
    ]
    line = format_record(_record(b"{}", topic=DEADLETTER_TOPIC, headers=headers))
    assert "DEAD LETTER" in line
    assert "from=errands.tasks.v1/2@17" in line and "group=dispatcher" in line and "attempts=5" in line
    assert "error=RuntimeError('boom') second line" in line


def test_type_globs_and_task_prefix_choose_what_is_shown() -> None:
    offered = _offered()
    confirm_failed = _event_record(
        LegConfirmationFailed(task_id=TASK, leg_id=LEG, volunteer_id=VOLUNTEER, attempts=1)
    )
    assert record_matches(offered, types=["leg.*"], task=None)
    assert not record_matches(offered, types=["task.*", "notification.*"], task=None)
    assert record_matches(confirm_failed, types=["task.*", "*.confirmation_failed"], task=None)
    assert record_matches(offered, types=[], task="11111111")
    assert record_matches(offered, types=[], task=str(TASK).upper())
    assert not record_matches(offered, types=[], task="22222222")
    junk = _record(b"junk")
    assert record_matches(junk, types=[], task=None), "unfiltered, everything shows"
    assert not record_matches(junk, types=["leg.*"], task=None)


def test_json_output_is_the_cloudevent_as_it_travelled() -> None:
    record = _offered()
    assert json.loads(record_as_json(record)) == json.loads(record.value or b"")
    described = json.loads(record_as_json(_record(b"\xff")))
    assert described["not_a_cloudevent"] is True and described["value"] == "base64:/w=="


def test_tail_defaults_to_every_topic_but_the_dead_letters() -> None:
    assert DEADLETTER_TOPIC not in TAIL_DEFAULT_TOPICS
    assert "errands.tasks.v1" in TAIL_DEFAULT_TOPICS and len(TAIL_DEFAULT_TOPICS) == 5


def test_no_color_and_pipes_turn_colour_off() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour_wanted(Terminal(), {})
    assert not colour_wanted(Terminal(), {"NO_COLOR": "1"})
    assert not colour_wanted(io.StringIO(), {})


def test_lag_is_never_negative_and_says_when_it_was_clamped() -> None:
    assert lag_of(3, 5) == (2, False)
    assert lag_of(5, 5) == (0, False)
    assert lag_of(7, 5) == (0, True)


def test_the_lag_table_totals_each_group_and_explains_a_clamp() -> None:
    rows = [
        PartitionLag("dispatcher", "errands.tasks.v1", 0, 10, 14, 4),
        PartitionLag("dispatcher", "errands.tasks.v1", 1, 7, 7, 0),
        PartitionLag("notifier", "errands.dispatch.v1", 0, 9, 8, 0, clamped=True),
    ]
    text = format_lag(rows, groups=("dispatcher", "notifier", "idle"))
    dispatcher = text.split("group dispatcher")[1].split("group ")[0]
    assert dispatcher.strip().splitlines()[-1].split() == ["total", "4"]
    assert "0*" in text and "Tansu" in text
    assert "group idle\n  (no committed offsets)" in text
    assert "*" not in format_lag(rows[:2])


def _dead(offset: int, *, origin: str = "errands.tasks.v1", partition: int = 0) -> KafkaRecord:
    return KafkaRecord(
        topic=DEADLETTER_TOPIC,
        partition=partition,
        offset=offset,
        key=b"k",
        value=b"original",
        headers=(
            ("errands-origin-topic", origin.encode()),
            ("errands-origin-partition", b"1"),
            ("errands-origin-offset", str(100 + offset).encode()),
            ("errands-consumer-group", b"dispatcher"),
            ("errands-event-type", b"task.submitted"),
            ("errands-error", b"boom"),
            ("errands-attempts", b"5"),
        ),
        timestamp_ms=1_780_000_000_000 + offset,
    )


def test_dead_letters_are_read_from_headers_and_marked_once_replayed() -> None:
    marker = KafkaRecord(
        topic=DEADLETTER_TOPIC,
        partition=1,
        offset=0,
        key=b"k",
        value=b"",
        headers=(("errands-replay-of", b"0:1"), ("errands-replayed-to", b"errands.tasks.v1/1@200")),
        timestamp_ms=1_780_000_000_100,
    )
    stray = KafkaRecord(DEADLETTER_TOPIC, 1, 1, None, b"no headers")
    letters = dead_letters_from([_dead(0), _dead(1), marker, stray])
    assert [letter.id for letter in letters] == ["0:0", "0:1"]
    first, second = letters
    assert (first.origin_topic, first.origin_partition, first.origin_offset) == ("errands.tasks.v1", 1, 100)
    assert (first.group, first.event_type, first.attempts, first.error) == (
        "dispatcher",
        "task.submitted",
        5,
        "boom",
    )
    assert first.replayed_to is None
    assert second.replayed_to == "errands.tasks.v1/1@200"


def test_bootstrap_comes_from_the_flag_then_the_environment_then_local_json(tmp_path: Path) -> None:
    (tmp_path / ".errands").mkdir()
    (tmp_path / ".errands" / "local.json").write_text(json.dumps({"kafka_bootstrap": "127.0.0.1:4242"}))
    inside = tmp_path / "docs" / "deeper"
    inside.mkdir(parents=True)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    assert resolve_bootstrap("b:1", environ=env, cwd=inside).servers == "b:1"
    assert resolve_bootstrap(None, environ=env, cwd=inside).servers == "kafka:9092"
    from_file = resolve_bootstrap(None, environ={}, cwd=inside)
    assert from_file.servers == "127.0.0.1:4242" and from_file.source.endswith("local.json")
    assert resolve_bootstrap(None, environ={}, cwd=Path("/")).servers == "127.0.0.1:9092"


@pytest.mark.parametrize("distance", [0.0, 850.4])
def test_short_distances_are_in_metres(distance: float) -> None:
    assert f"distance={distance:.0f}m" in format_record(_offered(distance))
