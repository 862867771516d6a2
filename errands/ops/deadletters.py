"""`errands dlq list|replay`: the records no consumer could process, and sending them back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from errands.ops.broker import KafkaRecord, one_line, read_topic_to_end, text_or_base64, utc_text
from shared.events import DEADLETTER_TOPIC, DeadLetterHeader
from shared.kafka import create_producer
from shared.settings import Settings

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
        marker = record.header(DeadLetterHeader.REPLAY_OF)
        if marker is not None:
            replayed[marker] = record.header(DeadLetterHeader.REPLAYED_TO) or "?"
            continue
        origin = record.header(DeadLetterHeader.ORIGIN_TOPIC)
        if origin is None:
            continue  # not written by the shared consumer nor by us: nothing to replay it to
        letter_id = f"{record.partition}:{record.offset}"
        letters[letter_id] = DeadLetter(
            id=letter_id,
            timestamp_ms=record.timestamp_ms,
            origin_topic=origin,
            origin_partition=_int(record.header(DeadLetterHeader.ORIGIN_PARTITION)),
            origin_offset=_int(record.header(DeadLetterHeader.ORIGIN_OFFSET)),
            group=record.header(DeadLetterHeader.CONSUMER_GROUP),
            event_type=record.header(DeadLetterHeader.EVENT_TYPE),
            attempts=_int(record.header(DeadLetterHeader.ATTEMPTS)),
            error=record.header(DeadLetterHeader.ERROR),
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
        when = utc_text(
            datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC) if letter.timestamp_ms else None
        )
        status = f"replayed -> {letter.replayed_to}" if letter.replayed_to else "pending"
        lines.append(
            f"{letter.id:<10} {when}  {status}\n"
            f"    origin  {letter.origin_topic}/{letter.origin_partition}@{letter.origin_offset}"
            f"  group={letter.group}  type={letter.event_type}  attempts={letter.attempts}\n"
            f"    error   {one_line(letter.error or '', 300)}"
        )
    pending = sum(1 for letter in letters if not letter.replayed_to)
    lines.append(f"{len(letters)} dead letters, {pending} not replayed")
    return "\n".join(lines) + "\n"


def dead_letters_as_json(letters: Sequence[DeadLetter]) -> str:
    return "\n".join(
        json.dumps(
            {
                "id": letter.id,
                "time": utc_text(datetime.fromtimestamp(letter.timestamp_ms / 1000, tz=UTC))
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
                "key": text_or_base64(letter.key),
                "value": text_or_base64(letter.value),
            },
            ensure_ascii=False,
        )
        for letter in letters
    )


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
                headers=[(DeadLetterHeader.REPLAYED_FROM, letter.id.encode())],
            )
            target = f"{sent.topic}/{sent.partition}@{sent.offset}"
            await producer.send_and_wait(
                DEADLETTER_TOPIC,
                value=b"",
                key=letter.key,
                headers=[
                    (DeadLetterHeader.REPLAY_OF, letter.id.encode()),
                    (DeadLetterHeader.REPLAYED_TO, target.encode()),
                ],
            )
            outcomes.append(ReplayOutcome(letter.id, target))
    finally:
        await producer.stop()
    return outcomes
