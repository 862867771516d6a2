"""The location benchmarks' fleet: volunteers on duty, legs waiting, and what the stack ends up holding."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.auth import hash_token
from shared.events import VOLUNTEERS_TOPIC

# Where the on-duty volunteers are, and where the legs nobody can take wait.
REGION = ((22.0, 42.0), (102.0, 122.0))
PICKUPS = [(29.87, 121.55), (30.27, 120.15), (31.23, 121.47)]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_rss(pid: int, seconds: float) -> float:
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.25)
    return peak


async def add_volunteers(dsn: str, organisation_id: uuid.UUID, n: int) -> list[tuple[uuid.UUID, str]]:
    """n insured on-duty volunteers with fresh fixes and tokens, bulk-copied; returns (id, token)."""
    rng = random.Random(8)
    now = datetime.now(UTC)
    people = [(uuid.uuid4(), "erk_vol_" + secrets.token_urlsafe(32)) for _ in range(n)]
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "volunteers",
            schema_name="dispatch",
            columns=[
                "id",
                "organisation_id",
                "name",
                "languages",
                "skills",
                "vehicle",
                "capacity_kg",
                "insured",
                "max_active_legs",
                "on_duty",
                "duty_started_at",
                "lat",
                "lon",
                "location_at",
                "active_legs",
                "legs_done_today",
            ],
            records=[
                (
                    volunteer_id,
                    organisation_id,
                    f"Volunteer {i}",
                    ["zh"],
                    [],
                    "bicycle",
                    20.0,
                    True,
                    3,
                    True,
                    now,
                    rng.uniform(*REGION[0]),
                    rng.uniform(*REGION[1]),
                    now,
                    0,
                    0,
                )
                for i, (volunteer_id, _) in enumerate(people)
            ],
        )
        await connection.copy_records_to_table(
            "tokens",
            schema_name="auth",
            columns=["id", "token_hash", "role", "organisation_id", "volunteer_id"],
            records=[
                (uuid.uuid4(), hash_token(token), "volunteer", organisation_id, volunteer_id)
                for volunteer_id, token in people
            ],
        )
        await connection.execute("ANALYZE dispatch.volunteers; ANALYZE auth.tokens")
    finally:
        await connection.close()
    return people


async def add_pending_legs(dsn: str, organisation_id: uuid.UUID, per_pickup: int = 3) -> None:
    """Legs needing a skill nobody has: they stay pending, so every round weighs the volunteers near them."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        for lat, lon in PICKUPS:
            for _ in range(per_pickup):
                await connection.execute(
                    """
                    INSERT INTO dispatch.legs (id, task_id, organisation_id, index, status, kind, priority,
                        pickup_lat, pickup_lon, dropoff_lat, dropoff_lon, vehicle, weight_kg, skills,
                        languages, vulnerable, details, submitted_at)
                    VALUES ($1, $2, $3, 0, 'pending', 'errand', 'normal', $4, $5, $4, $5, NULL, 1.0,
                        ARRAY['forklift'], ARRAY['zh'], false, '{}'::jsonb, $6)
                    """,
                    uuid.uuid4(),
                    uuid.uuid4(),
                    organisation_id,
                    lat,
                    lon,
                    now,
                )
    finally:
        await connection.close()


async def topic_size(bootstrap: str) -> int:
    """Records on the volunteers topic so far (end offsets summed): an exact count, no reading."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(VOLUNTEERS_TOPIC, p) for p in consumer.partitions_for_topic(VOLUNTEERS_TOPIC) or ()
        ]
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = [
                TopicPartition(VOLUNTEERS_TOPIC, p)
                for p in consumer.partitions_for_topic(VOLUNTEERS_TOPIC) or ()
            ]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def final_positions(
    url: str, people: list[tuple[uuid.UUID, str]]
) -> dict[uuid.UUID, tuple[float, float]]:
    """One last report per volunteer at a position of its own; these must be what the database ends with."""
    rng = random.Random(9)
    wanted = {
        volunteer_id: (round(rng.uniform(-40, 40), 5), round(rng.uniform(-170, 170), 5))
        for volunteer_id, _ in people
    }
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def one(volunteer_id: uuid.UUID, token: str) -> None:
            lat, lon = wanted[volunteer_id]
            async with sem:
                for _ in range(50):
                    async with http.post(
                        f"{url}/v1/me/location",
                        json={"lat": lat, "lon": lon},
                        headers={"Authorization": f"Bearer {token}"},
                    ) as response:
                        if response.status == 202:
                            return
                    await asyncio.sleep(0.2)
                raise AssertionError("final report refused")

        await asyncio.gather(*(one(v, t) for v, t in people))
    return wanted


async def check_positions(
    dsn: str, wanted: dict[uuid.UUID, tuple[float, float]], timeout_s: float = 30
) -> int:
    """How many volunteers' stored position is the last one reported (waiting for the flush)."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await connection.fetch(
                "SELECT id, lat, lon FROM dispatch.volunteers WHERE id = ANY($1::uuid[])", list(wanted)
            )
            matching = sum(1 for row in rows if (row["lat"], row["lon"]) == wanted[row["id"]])
            if matching == len(wanted) or time.monotonic() > deadline:
                return matching
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def outbox_drained(dsn: str, timeout_s: float = 120) -> tuple[int, float]:
    """Rows waiting in the dispatcher's outbox when asked, and how long the relay took to empty it."""
    connection = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        backlog: int = await connection.fetchval("SELECT count(*) FROM dispatch.outbox")
        while time.monotonic() - started < timeout_s:
            if not await connection.fetchval("SELECT count(*) FROM dispatch.outbox"):
                break
            await asyncio.sleep(0.2)
        return backlog, time.monotonic() - started
    finally:
        await connection.close()


async def organisation(dsn: str) -> uuid.UUID:
    connection = await asyncpg.connect(dsn)
    try:
        organisation_id: uuid.UUID = await connection.fetchval("SELECT id FROM auth.organisations LIMIT 1")
        return organisation_id
    finally:
        await connection.close()
