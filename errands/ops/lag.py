"""`errands lag`: how far each consumer group is behind, per partition."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from errands.ops.broker import consumer_without_group, existing_partitions

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
    consumer = consumer_without_group(bootstrap)
    try:
        await admin.start()
        await consumer.start()
        wanted = list(groups) or await list_groups(admin)
        topics = [topic for topic in await consumer.topics() if not topic.startswith("__")]
        partitions, _ = await existing_partitions(consumer, sorted(topics))
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
