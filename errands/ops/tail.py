"""`errands tail`: one readable line per event, as it goes by."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from errands.ops.broker import (
    KafkaRecord,
    OpsError,
    consumer_without_group,
    existing_partitions,
    one_line,
    parse_event,
    text_or_base64,
    utc_text,
)
from shared.events import ALL_TOPICS, DEADLETTER_TOPIC, DeadLetterHeader

# Tailing defaults to every topic but the dead-letter one: its values are copies of records already
# shown when they first went by on their origin topic, and `errands dlq list` is the view made for it.
TAIL_DEFAULT_TOPICS = tuple(topic for topic in ALL_TOPICS if topic != DEADLETTER_TOPIC)


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


def _recordutc_text(record: KafkaRecord) -> datetime | None:
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
    elif event_type == "leg.eta_updated":
        add("pickup", _hhmmss(data["pickup_eta"]) if data.get("pickup_eta") else None)
        add("dropoff", _hhmmss(data["dropoff_eta"]) if data.get("dropoff_eta") else None)
        if data.get("late"):
            facts.append("late")
    elif event_type == "leg.assigned":
        add("name", data.get("volunteer_name_masked"))
        if data.get("manual"):
            facts.append("manual")
        add("moved_from", _short(data["moved_from"], False) if data.get("moved_from") else None)
        add("override", json.dumps(data["override_reason"]) if data.get("override_reason") else None)
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
    origin = record.header(DeadLetterHeader.ORIGIN_TOPIC)
    if origin is not None:
        dead = _paint("DEAD LETTER".ljust(_TYPE_WIDTH), _TROUBLE_COLOUR, colour)
        words = [
            f"from={origin}/{record.header(DeadLetterHeader.ORIGIN_PARTITION)}@{record.header(DeadLetterHeader.ORIGIN_OFFSET)}",
            f"group={record.header(DeadLetterHeader.CONSUMER_GROUP)}",
            f"type={record.header(DeadLetterHeader.EVENT_TYPE)}",
            f"attempts={record.header(DeadLetterHeader.ATTEMPTS)}",
            f"error={one_line(record.header(DeadLetterHeader.ERROR) or '', 160)}",
        ]
        return f"{utc_text(_recordutc_text(record))}  {dead}  {'  '.join(words)}  {where}"
    if record.header(DeadLetterHeader.REPLAY_OF) is not None:
        marker = _paint("dlq replay marker".ljust(_TYPE_WIDTH), _DIM, colour)
        words = [
            f"id={record.header(DeadLetterHeader.REPLAY_OF)}",
            f"to={record.header(DeadLetterHeader.REPLAYED_TO)}",
        ]
        return f"{utc_text(_recordutc_text(record))}  {marker}  {'  '.join(words)}  {where}"
    event = parse_event(record.value)
    if event is None:
        bad = _paint("! not a CloudEvent".ljust(_TYPE_WIDTH), _TROUBLE_COLOUR, colour)
        if record.value is None:
            body = "null value"
        else:
            body = f"{len(record.value)} bytes: {one_line(record.value.decode(errors='replace'), 80)!r}"
        key = record.key.decode(errors="replace") if record.key is not None else None
        return f"{utc_text(_recordutc_text(record))}  {bad}  key={key}  {body}  {where}"
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
    words.extend(one_line(fact, 60) for fact in key_facts(event.type, data))
    kind = _paint(event.type.ljust(_TYPE_WIDTH), _type_colour(event.type), colour)
    return f"{utc_text(event.time)}  {kind}  {'  '.join(words)}  {where}"


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
            "key": text_or_base64(record.key),
            "value": text_or_base64(record.value),
            "headers": {name: value.decode(errors="replace") for name, value in record.headers},
        },
        ensure_ascii=False,
    )


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
    consumer = consumer_without_group(bootstrap)
    printed = 0
    try:
        await consumer.start()
        partitions, missing = await existing_partitions(consumer, topics)
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
