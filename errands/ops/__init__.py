"""What the ops team reaches for at 3 a.m.: `errands tail`, `errands lag`, `errands dlq list|replay`.

The readable forms (event lines, lag tables, dead-letter tables) are pure functions of records; the
async functions only talk to the broker. Nothing here joins a consumer group or commits an offset:
watching the system must never move the services' positions.
"""

from errands.ops.broker import (
    Bootstrap,
    KafkaRecord,
    OpsError,
    parse_event,
    read_topic_to_end,
    resolve_bootstrap,
)
from errands.ops.deadletters import (
    DeadLetter,
    ReplayOutcome,
    dead_letters_as_json,
    dead_letters_from,
    format_dead_letters,
    list_dead_letters,
    replay_dead_letters,
)
from errands.ops.lag import PartitionLag, consumer_lag, format_lag, lag_as_json, lag_of, list_groups
from errands.ops.tail import (
    TAIL_DEFAULT_TOPICS,
    colour_wanted,
    format_record,
    key_facts,
    record_as_json,
    record_matches,
    tail,
)

__all__ = [
    "TAIL_DEFAULT_TOPICS",
    "Bootstrap",
    "DeadLetter",
    "KafkaRecord",
    "OpsError",
    "PartitionLag",
    "ReplayOutcome",
    "colour_wanted",
    "consumer_lag",
    "dead_letters_as_json",
    "dead_letters_from",
    "format_dead_letters",
    "format_lag",
    "format_record",
    "key_facts",
    "lag_as_json",
    "lag_of",
    "list_dead_letters",
    "list_groups",
    "parse_event",
    "read_topic_to_end",
    "record_as_json",
    "record_matches",
    "replay_dead_letters",
    "resolve_bootstrap",
    "tail",
]
