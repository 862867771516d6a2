"""What the ops team reaches for at 3 a.m.: `errands tail`, `errands lag`, `errands dlq list|replay`.

The readable forms (event lines, lag tables, dead-letter tables) are pure functions of records; the
async functions below only talk to the broker. Nothing here joins a consumer group or commits an
offset: watching the system must never move the services' positions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from errands.local import local_state
from shared.events import ALL_TOPICS, DEADLETTER_TOPIC, CloudEvent
from shared.kafka import create_producer
from shared.settings import Settings

# Tailing defaults to every topic but the dead-letter one: its values are copies of records already
# shown when they first went by on their origin topic, and `errands dlq list` is the view made for it.
TAIL_DEFAULT_TOPICS = tuple(topic for topic in ALL_TOPICS if topic != DEADLETTER_TOPIC)

# Headers the shared consumer writes on every dead letter (shared/consumer.py).
ORIGIN_TOPIC = "errands-origin-topic"
ORIGIN_PARTITION = "errands-origin-partition"
ORIGIN_OFFSET = "errands-origin-offset"
CONSUMER_GROUP = "errands-consumer-group"
EVENT_TYPE = "errands-event-type"
ERROR = "errands-error"
ATTEMPTS = "errands-attempts"
# On a record re-published by `errands dlq replay`: the id of the dead letter it came from.
REPLAYED_FROM = "errands-replayed-from"
# On the marker `errands dlq replay` appends to the dead-letter topic after re-publishing one.
REPLAY_OF = "errands-replay-of"
REPLAYED_TO = "errands-replayed-to"


class OpsError(Exception):
    """A failure worth one line to the operator rather than a traceback."""


# --- where the broker is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    servers: str
    source: str  # where the address came from, for error messages


def resolve_bootstrap(
    flag: str | None, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Bootstrap:
    """--bootstrap, else KAFKA_BOOTSTRAP_SERVERS, else `make run`'s .errands/local.json, else the default."""
    if flag:
        return Bootstrap(flag, "--bootstrap")
    environ = os.environ if environ is None else environ
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Bootstrap(environ["KAFKA_BOOTSTRAP_SERVERS"], "KAFKA_BOOTSTRAP_SERVERS")
    found = local_state(environ=environ, cwd=cwd)
    if found is not None:
        servers = found[0].get("kafka_bootstrap")
        if isinstance(servers, str) and servers:
            return Bootstrap(servers, str(found[1]))
    return Bootstrap(Settings.model_fields["kafka_bootstrap_servers"].default, "the default")


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaRecord:
    """A consumed record, apart from the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, record: Any) -> KafkaRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((name, bytes(value or b"")) for name, value in record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


def parse_event(value: bytes | None) -> CloudEvent | None:
    """The CloudEvent in a record value, or None when the value is not one."""
    if value is None:
        return None
    try:
        return CloudEvent.from_bytes(value)
    except (ValidationError, ValueError, TypeError):
        return None


# --- tail: one readable line per event --------------------------------------------------------------

_RESET = "\033[0m"
_DIM = "\033[2m"
_FAMILY_COLOURS = {
    "task": "\033[36m",  # cyan
    "leg": "\033[32m",  # green
    "volunteer": "\033[35m",  # magenta
    "notification": "\033[34m",  # blue
}
_TROUBLE_COLOUR = "\033[1;31m"  # bold red: what someone has to look at
_TROUBLE_TYPES = frozenset(
    {"task.escalated", "leg.confirmation_failed", "leg.problem_reported", "notification.failed"}
)
_TYPE_WIDTH = 27  # len("volunteer.location_reported")


def colour_wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, code: str, colour: bool) -> str:
    return f"{code}{text}{_RESET}" if colour else text


def _type_colour(event_type: str) -> str:
    if event_type in _TROUBLE_TYPES:
        return _TROUBLE_COLOUR
    return _FAMILY_COLOURS.get(event_type.split(".", 1)[0], "\033[33m")


def _short(identifier: object, full: bool) -> str:
    text = str(identifier)
    return text if full else text[:8]


def _time(value: datetime | None) -> str:
    if value is None:
        return "-" * 24
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _record_time(record: KafkaRecord) -> datetime | None:
    if record.timestamp_ms is None or record.timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)


def _where(record: KafkaRecord) -> str:
    topic = record.topic
    if topic.startswith("errands.") and topic.endswith(".v1"):
        topic = topic[len("errands.") : -len(".v1")]
    return f"{topic}/{record.partition}@{record.offset}"


def _hhmmss(value: object) -> str:
    with contextlib.suppress(TypeError, ValueError):
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%H:%M:%SZ")
    return str(value)


def key_facts(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The few fields of an event's data worth a glance, as `name=value` words."""
    facts: list[str] = []

    def add(name: str, value: object) -> None:
        if value is not None and value != "" and value != []:
            facts.append(f"{name}={value}")

    if event_type == "task.submitted":
        add("kind", data.get("kind"))
        add("priority", data.get("priority"))
        add("legs", len(data.get("legs") or []) or None)
        add("vehicle", (data.get("requirements") or {}).get("vehicle"))
        add("by", _hhmmss(data["deliver_by"]) if data.get("deliver_by") else None)
    elif event_type in ("task.escalated", "task.completed"):
        add("legs", len(data.get("leg_ids") or []) or None)
        add("reason", data.get("reason"))
    elif event_type == "leg.offered":
        distance = data.get("distance_m")
        if isinstance(distance, int | float):
            add("distance", f"{distance / 1000:.2f}km" if distance >= 1000 else f"{distance:.0f}m")
        add("expires", _hhmmss(data["expires_at"]) if data.get("expires_at") else None)
    elif event_type == "leg.assigned":
        add("name", data.get("volunteer_name_masked"))
        if data.get("manual"):
            facts.append("manual")
    elif event_type == "leg.delivered":
        add("by", "photo" if data.get("photo_sha256") else "code" if data.get("code_hash") else None)
    elif event_type == "leg.confirmed":
        add("method", data.get("method"))
    elif event_type == "leg.confirmation_failed":
        add("attempts", data.get("attempts"))
        if data.get("flagged"):
            facts.append("flagged")
    elif event_type == "volunteer.registered":
        add("vehicle", data.get("vehicle"))
        add("languages", ",".join(data.get("languages") or []) or None)
    elif event_type == "volunteer.duty_changed":
        facts.append("on duty" if data.get("on_duty") else "off duty")
    elif event_type == "volunteer.location_reported":
        lat, lon = data.get("lat"), data.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            facts.append(f"at={lat:.5f},{lon:.5f}")
        add("accuracy_m", data.get("accuracy_m"))
    elif event_type.startswith("notification."):
        add("channel", data.get("channel"))
        add("template", data.get("template"))
        add("to", data.get("recipient_masked"))
        add("error", data.get("error"))
    elif event_type in ("task.cancelled", "leg.offer_declined", "leg.problem_reported"):
        add("reason", data.get("reason"))
    elif event_type not in _KNOWN_WITHOUT_FACTS:
        # A type this version does not know: its first few plain fields are better than nothing.
        for name, value in list(data.items())[:4]:
            if isinstance(value, str | int | float | bool) and not name.endswith("_id"):
                add(name, value)
    return facts


_KNOWN_WITHOUT_FACTS = frozenset({"leg.offer_expired", "leg.picked_up"})


def format_record(record: KafkaRecord, *, colour: bool = False, full_ids: bool = False) -> str:
    """One readable line for any record: an event, a dead letter, or something that is neither."""
    where = _paint(_where(record), _DIM, colour)
    origin = record.header(ORIGIN_TOPIC)
    if origin is not None:
        dead = _paint("DEAD LETTER".ljust(_TYPE_WIDTH), _TROUBLE_COLOUR, colour)
        words = [
            f"from={origin}/{record.header(ORIGIN_PARTITION)}@{record.header(ORIGIN_OFFSET)}",
            f"group={record.header(CONSUMER_GROUP)}",
            f"type={record.header(EVENT_TYPE)}",
            f"attempts={record.header(ATTEMPTS)}",
            f"error={_one_line(record.header(ERROR) or '', 160)}",
        ]
        return f"{_time(_record_time(record))}  {dead}  {'  '.join(words)}  {where}"
    if record.header(REPLAY_OF) is not None:
        marker = _paint("dlq replay marker".ljust(_TYPE_WIDTH), _DIM, colour)
        words = [f"id={record.header(REPLAY_OF)}", f"to={record.header(REPLAYED_TO)}"]
        return f"{_time(_record_time(record))}  {marker}  {'  '.join(words)}  {where}"
    event = parse_event(record.value)
    if event is None:
        bad = _paint("! not a CloudEvent".ljust(_TYPE_WIDTH), _TROUBLE_COLOUR, colour)
        if record.value is None:
            body = "null value"
        else:
            body = f"{len(record.value)} bytes: {_one_line(record.value.decode(errors='replace'), 80)!r}"
        key = record.key.decode(errors="replace") if record.key is not None else None
        return f"{_time(_record_time(record))}  {bad}  key={key}  {body}  {where}"
    data = event.data
    words = []
    subject_is_volunteer = event.type.startswith("volunteer.")
    if not subject_is_volunteer:
        words.append(f"task={_short(data.get('task_id') or event.subject, full_ids)}")
    if data.get("leg_id"):
        words.append(f"leg={_short(data['leg_id'], full_ids)}")
    volunteer = data.get("volunteer_id") or (event.subject if subject_is_volunteer else None)
    if volunteer:
        words.append(f"vol={_short(volunteer, full_ids)}")
    words.extend(_one_line(fact, 60) for fact in key_facts(event.type, data))
    kind = _paint(event.type.ljust(_TYPE_WIDTH), _type_colour(event.type), colour)
    return f"{_time(event.time)}  {kind}  {'  '.join(words)}  {where}"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def record_matches(record: KafkaRecord, *, types: Sequence[str], task: str | None) -> bool:
    """Whether a record passes `--type` (fnmatch globs, any of them) and `--task` (an id or its prefix)."""
    if not types and task is None:
        return True
    event = parse_event(record.value)
    if event is None:
        # Dead letters and records that are no events have no type or task to filter on: show them
        # only when nothing narrows the view, so a filter never hides an event behind noise.
        return False
    if types and not any(fnmatch.fnmatchcase(event.type, pattern) for pattern in types):
        return False
    if task is not None:
        task_id = str(event.data.get("task_id") or event.subject)
        if not (task_id.startswith(task.lower()) or event.subject.startswith(task.lower())):
            return False
    return True


def record_as_json(record: KafkaRecord) -> str:
    """`--json`: the CloudEvent exactly as it travelled; anything else as a JSON description of the record."""
    if record.value is not None and parse_event(record.value) is not None:
        return json.dumps(json.loads(record.value), separators=(",", ":"), ensure_ascii=False)
    return json.dumps(
        {
            "not_a_cloudevent": True,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": _text_or_base64(record.key),
            "value": _text_or_base64(record.value),
            "headers": {name: value.decode(errors="replace") for name, value in record.headers},
        },
        ensure_ascii=False,
    )


def _text_or_base64(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    # No group: no membership, no committed state, nothing a service's group could notice.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id="errands-ops",
        request_timeout_ms=15_000,
    )


async def _partitions(
    consumer: AIOKafkaConsumer, topics: Iterable[str]
) -> tuple[list[TopicPartition], list[str]]:
    """The partitions of the topics that exist, and the names of those that do not."""
    existing = await consumer.topics()
    partitions: list[TopicPartition] = []
    missing: list[str] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic) if topic in existing else None
        if not numbers:
            missing.append(topic)
            continue
        partitions.extend(TopicPartition(topic, number) for number in sorted(numbers))
    return partitions, missing


async def tail(
    *,
    bootstrap: str,
    topics: Sequence[str] = TAIL_DEFAULT_TOPICS,
    types: Sequence[str] = (),
    task: str | None = None,
    from_beginning: bool = False,
    as_json: bool = False,
    full_ids: bool = False,
    colour: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    max_events: int | None = None,
    idle_exit_s: float | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
) -> int:
    """Follow topics, printing each matching record; returns how many were printed.

    Stops on `stop`, on SIGINT/SIGTERM when `handle_signals`, after `max_events` lines, or after
    `idle_exit_s` seconds without a record (the last two keep tests and scripts bounded).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    consumer = _consumer(bootstrap)
    printed = 0
    try:
        await consumer.start()
        partitions, missing = await _partitions(consumer, topics)
        for topic in missing:
            print(f"errands tail: no topic {topic} on the broker; skipping it", file=err)
        if not partitions:
            raise OpsError("none of the topics exists on the broker")
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        # Resolve every position now, so "the end" is where it was when the command started.
        for partition in partitions:
            await consumer.position(partition)
        where = "the beginning" if from_beginning else "the end"
        print(
            f"errands tail: following {len(partitions)} partitions of "
            f"{len({p.topic for p in partitions})} topics from {where} (Ctrl-C to stop)",
            file=err,
            flush=True,
        )
        last_seen = loop.time()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            records = sorted(
                (KafkaRecord.of(r) for batch in batches.values() for r in batch),
                key=lambda r: (r.timestamp_ms or 0, r.topic, r.partition, r.offset),
            )
            if records:
                last_seen = loop.time()
            elif idle_exit_s is not None and loop.time() - last_seen >= idle_exit_s:
                break
            for record in records:
                if not record_matches(record, types=types, task=task):
                    continue
                line = (
                    record_as_json(record)
                    if as_json
                    else format_record(record, colour=colour, full_ids=full_ids)
                )
                try:
                    print(line, file=out, flush=True)
                except BrokenPipeError:  # `errands tail | head`: the reader has gone
                    stop.set()
                    break
                printed += 1
                if max_events is not None and printed >= max_events:
                    stop.set()
                    break
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await consumer.stop()
    return printed


# --- lag ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag: int
    # The broker reported an end offset below the group's committed offset (Tansu does: its high
    # watermark is the base offset of the last batch + 1), so the lag was clamped at 0.
    clamped: bool = False


def lag_of(committed: int, end: int) -> tuple[int, bool]:
    """Records the group has yet to commit, never negative; and whether it had to be clamped."""
    lag = end - committed
    return (lag, False) if lag >= 0 else (0, True)


async def list_groups(admin: AIOKafkaAdminClient) -> list[str]:
    """Every consumer group the broker knows."""
    groups = await admin.list_consumer_groups()
    return sorted({group_id for group_id, *_ in groups})


async def consumer_lag(*, bootstrap: str, groups: Sequence[str] = ()) -> list[PartitionLag]:
    """Committed offset, end offset and lag of each group on each partition it has committed on.

    Asks for the committed offsets of every partition of every topic explicitly: the form of
    OffsetFetch that means "all partitions" is not understood by Tansu, the explicit one is by both.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="errands-ops", request_timeout_ms=15_000
    )
    consumer = _consumer(bootstrap)
    try:
        await admin.start()
        await consumer.start()
        wanted = list(groups) or await list_groups(admin)
        topics = [topic for topic in await consumer.topics() if not topic.startswith("__")]
        partitions, _ = await _partitions(consumer, sorted(topics))
        if not partitions or not wanted:
            return []
        ends = await consumer.end_offsets(partitions)
        rows: list[PartitionLag] = []
        for group in wanted:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            for tp, meta in sorted(committed.items(), key=lambda item: (item[0].topic, item[0].partition)):
                if meta is None or meta.offset < 0:
                    continue  # never committed on this partition
                lag, clamped = lag_of(meta.offset, ends.get(tp, 0))
                rows.append(
                    PartitionLag(group, tp.topic, tp.partition, meta.offset, ends.get(tp, 0), lag, clamped)
                )
        return rows
    finally:
        await consumer.stop()
        await admin.close()


def format_lag(rows: Sequence[PartitionLag], *, groups: Sequence[str] = ()) -> str:
    """A table per group with its total; a `*` marks a lag clamped at 0, explained under the table."""
    by_group: dict[str, list[PartitionLag]] = {group: [] for group in groups}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    if not by_group:
        return "no consumer groups\n"
    topic_width = max([len("TOPIC"), *(len(row.topic) for row in rows)])
    lines: list[str] = []
    for group in sorted(by_group):
        group_rows = by_group[group]
        lines.append(f"group {group}")
        if not group_rows:
            lines.append("  (no committed offsets)")
            lines.append("")
            continue
        lines.append(
            f"  {'TOPIC':<{topic_width}}  {'PARTITION':>9}  {'COMMITTED':>10}  {'END':>10}  {'LAG':>8}"
        )
        for row in group_rows:
            lag = f"{row.lag}*" if row.clamped else str(row.lag)
            numbers = f"{row.partition:>9}  {row.committed:>10}  {row.end:>10}  {lag:>8}"
            lines.append(f"  {row.topic:<{topic_width}}  {numbers}")
        lines.append(
            f"  {'total':<{topic_width}}  {'':>9}  {'':>10}  {'':>10}  {sum(r.lag for r in group_rows):>8}"
        )
        lines.append("")
    if any(row.clamped for row in rows):
        lines.append(
            "* the broker reported an end offset below the committed offset; the lag is shown as 0.\n"
            "  The embedded broker (Tansu) reports the base offset of a partition's last batch + 1 as\n"
            "  its end, so it undercounts lag by up to one batch. Real Kafka does not do this."
        )
    return "\n".join(lines).rstrip("\n") + "\n"


def lag_as_json(rows: Sequence[PartitionLag]) -> str:
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = groups.setdefault(row.group, {"group": row.group, "total_lag": 0, "partitions": []})
        entry["total_lag"] += row.lag
        entry["partitions"].append(
            {
                "topic": row.topic,
                "partition": row.partition,
                "committed": row.committed,
                "end": row.end,
                "lag": row.lag,
                "clamped": row.clamped,
            }
        )
    return json.dumps(list(groups.values()), indent=2)


# --- dead letters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, as the shared consumer wrote it to the dead-letter topic."""

    id: str  # "partition:offset" of the dead-letter record
    timestamp_ms: int | None
    origin_topic: str
    origin_partition: int | None
    origin_offset: int | None
    group: str | None
    event_type: str | None
    attempts: int | None
    error: str | None
    key: bytes | None
    value: bytes | None
    replayed_to: str | None = field(default=None)  # set once `errands dlq replay` re-published it


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def dead_letters_from(records: Iterable[KafkaRecord]) -> list[DeadLetter]:
    """The dead letters among the records of the dead-letter topic, with replay markers applied."""
    letters: dict[str, DeadLetter] = {}
    replayed: dict[str, str] = {}
    for record in records:
        marker = record.header(REPLAY_OF)
        if marker is not None:
            replayed[marker] = record.header(REPLAYED_TO) or "?"
            continue
        origin = record.header(ORIGIN_TOPIC)
        if origin is None:
            continue  # not written by the shared consumer nor by us: nothing to replay it to
        letter_id = f"{record.partition}:{record.offset}"
        letters[letter_id] = DeadLetter(
            id=letter_id,
            timestamp_ms=record.timestamp_ms,
            origin_topic=origin,
            origin_partition=_int(record.header(ORIGIN_PARTITION)),
            origin_offset=_int(record.header(ORIGIN_OFFSET)),
            group=record.header(CONSUMER_GROUP),
            event_type=record.header(EVENT_TYPE),
            attempts=_int(record.header(ATTEMPTS)),
            error=record.header(ERROR),
            key=record.key,
            value=record.value,
        )
    result = [
        DeadLetter(**{**letter.__dict__, "replayed_to": replayed.get(letter_id)})
        for letter_id, letter in letters.items()
    ]
    return sorted(result, key=lambda d: (d.timestamp_ms or 0, _id_order(d.id)))


def _id_order(letter_id: str) -> tuple[int, int]:
    partition, _, offset = letter_id.partition(":")
    return int(partition), int(offset)


def format_dead_letters(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "no dead letters\n"
    lines = []
    for letter in letters:
        when = _time(
            datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC) if letter.timestamp_ms else None
        )
        status = f"replayed -> {letter.replayed_to}" if letter.replayed_to else "pending"
        lines.append(
            f"{letter.id:<10} {when}  {status}\n"
            f"    origin  {letter.origin_topic}/{letter.origin_partition}@{letter.origin_offset}"
            f"  group={letter.group}  type={letter.event_type}  attempts={letter.attempts}\n"
            f"    error   {_one_line(letter.error or '', 300)}"
        )
    pending = sum(1 for letter in letters if not letter.replayed_to)
    lines.append(f"{len(letters)} dead letters, {pending} not replayed")
    return "\n".join(lines) + "\n"


def dead_letters_as_json(letters: Sequence[DeadLetter]) -> str:
    return "\n".join(
        json.dumps(
            {
                "id": letter.id,
                "time": _time(datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC))
                if letter.timestamp_ms
                else None,
                "origin_topic": letter.origin_topic,
                "origin_partition": letter.origin_partition,
                "origin_offset": letter.origin_offset,
                "consumer_group": letter.group,
                "event_type": letter.event_type,
                "attempts": letter.attempts,
                "error": letter.error,
                "replayed_to": letter.replayed_to,
                "key": _text_or_base64(letter.key),
                "value": _text_or_base64(letter.value),
            },
            ensure_ascii=False,
        )
        for letter in letters
    )


async def read_topic_to_end(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> list[KafkaRecord]:
    """Every record of a topic from its beginning to the end it had when the call started."""
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        partitions, _ = await _partitions(consumer, [topic])
        if not partitions:
            return []
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        records: list[KafkaRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise OpsError(f"{topic}: could not read to the end within {timeout_s:.0f}s")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for batch in batches.values():
                records.extend(KafkaRecord.of(r) for r in batch)
            for tp in list(remaining):
                # A fetch returns whole batches, so on Tansu (whose end is the last batch's base offset
                # + 1) the records after that end arrive with it and are kept too.
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def list_dead_letters(*, bootstrap: str, group: str | None = None) -> list[DeadLetter]:
    letters = dead_letters_from(await read_topic_to_end(bootstrap, DEADLETTER_TOPIC))
    return [letter for letter in letters if group is None or letter.group == group]


@dataclass(frozen=True)
class ReplayOutcome:
    id: str
    replayed_to: str | None  # "topic/partition@offset" of the re-published record
    skipped: str | None = None  # why it was not re-published


async def replay_dead_letters(
    *,
    bootstrap: str,
    ids: Sequence[str] = (),
    everything: bool = False,
    group: str | None = None,
    force: bool = False,
) -> list[ReplayOutcome]:
    """Re-publish dead letters' original key and value to their origin topic.

    After each one, a marker record on the dead-letter topic names it as replayed, so a second
    replay skips it (unless `force`). A crash between the two re-publishes it once more on the next
    replay: that is at-least-once, and harmless because every consumer skips event ids its inbox has.
    """
    letters = await list_dead_letters(bootstrap=bootstrap, group=group)
    by_id = {letter.id: letter for letter in letters}
    outcomes: list[ReplayOutcome] = []
    chosen: list[DeadLetter] = []
    if everything:
        chosen = list(letters)
    for letter_id in ids:
        if letter_id in by_id:
            chosen.append(by_id[letter_id])
        else:
            outcomes.append(ReplayOutcome(letter_id, None, skipped="no such dead letter"))
    producer = create_producer(Settings(kafka_bootstrap_servers=bootstrap), client_id="errands-ops")
    try:
        await producer.start()
        for letter in chosen:
            if letter.replayed_to and not force:
                outcomes.append(
                    ReplayOutcome(letter.id, None, skipped=f"already replayed to {letter.replayed_to}")
                )
                continue
            sent = await producer.send_and_wait(
                letter.origin_topic,
                value=letter.value,
                key=letter.key,
                headers=[(REPLAYED_FROM, letter.id.encode())],
            )
            target = f"{sent.topic}/{sent.partition}@{sent.offset}"
            await producer.send_and_wait(
                DEADLETTER_TOPIC,
                value=b"",
                key=letter.key,
                headers=[(REPLAY_OF, letter.id.encode()), (REPLAYED_TO, target.encode())],
            )
            outcomes.append(ReplayOutcome(letter.id, target))
    finally:
        await producer.stop()
    return outcomes
