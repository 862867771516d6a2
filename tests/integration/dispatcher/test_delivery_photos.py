"""Proof of delivery that holds up: a volunteer uploads the photo of a no-contact drop-off; the server
keeps it without its metadata, upright and smaller; the delivered report must name an uploaded photo
of that leg; the task's organisation, and no one else, fetches it; a retried upload stores one photo.
Real services over HTTP, the session's PostgreSQL and broker, and an S3-protocol server where one
can be had."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from errands import admin
from errands.launcher import ServiceProcesses
from services.dispatcher.adapters.photo_store import PhotoStores
from services.dispatcher.adapters.tables import LegRow, PhotoBlobRow, PhotoRow
from services.dispatcher.domain.photo import supported_types
from services.dispatcher.service_layer import personal_data
from shared.events import CONFIRMATIONS_TOPIC, CloudEvent
from tests import photo_samples
from tests.client import bearer, until
from tests.conftest import Stack
from tests.integration.dispatcher.api_client import Client, leg_arrives, somewhere
from tests.integration.dispatcher.s3_server import S3Server, fresh_bucket, s3_server

pytestmark = pytest.mark.e2e

Maker = async_sessionmaker[AsyncSession]
MAX_BYTES = 10 * 1024 * 1024  # the default PHOTO_MAX_BYTES


@pytest.fixture
async def client(stack: Stack, system: ServiceProcesses) -> AsyncIterator[Client]:
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        yield Client(http, system, tokens["admin_token"])


async def no_contact_task(client: Client, operator: str, place: tuple[float, float]) -> dict[str, Any]:
    lat, lon = place
    body = {
        "kind": "errand",
        "pickup": {"lat": lat, "lon": lon, "address": "depot"},
        "dropoffs": [{"lat": lat + 0.005, "lon": lon + 0.005, "address": "door 7", "no_contact": True}],
        "items": [{"name": "rice", "quantity": 1, "weight_kg": 1.0}],
    }
    status, task = await client.call(
        "POST",
        f"{client.intake}/v1/tasks",
        operator,
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 201, task
    return dict(task)


async def leg_in_hand(
    client: Client, operator: str, token: str, place: tuple[float, float], *, dispatcher: str | None = None
) -> dict[str, Any]:
    """A no-contact leg of a new task, offered to, accepted and picked up by the volunteer."""
    base = dispatcher or client.dispatcher
    task = await no_contact_task(client, operator, place)
    leg = task["legs"][0]
    offer = await client.until_offered(token, leg["id"])
    assert (await client.call("POST", f"{base}/v1/me/offers/{offer['id']}/accept", token))[0] == 200
    assert (await client.call("POST", f"{base}/v1/me/legs/{leg['id']}/picked-up", token))[0] == 200
    return {**leg, "task_id": task["id"]}


async def upload(
    client: Client,
    token: str,
    leg_id: str,
    data: Any,
    *,
    media_type: str = "image/jpeg",
    key: str | None = None,
    base: str | None = None,
) -> tuple[int, Any, Any]:
    headers = {**bearer(token), "Content-Type": media_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    url = f"{base or client.dispatcher}/v1/me/legs/{leg_id}/photos"
    async with client.http.post(url, data=data, headers=headers) as response:
        body = await response.json() if response.content_type.endswith("json") else None
        return response.status, body, response.headers


async def fetch(client: Client, token: str, url: str, *, base: str | None = None) -> tuple[int, bytes, Any]:
    async with client.http.get(f"{base or client.dispatcher}{url}", headers=bearer(token)) as response:
        return response.status, await response.read(), response.headers


async def photos_of(sessionmaker: Maker, leg_id: str) -> list[PhotoRow]:
    async with sessionmaker() as session:
        found = await session.execute(select(PhotoRow).where(PhotoRow.leg_id == uuid.UUID(leg_id)))
        return list(found.scalars())


async def test_a_phone_photo_is_kept_without_its_gps_upright_and_smaller_for_its_organisation_alone(
    client: Client,
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    leg = await leg_in_hand(client, operator, token, place)
    sent = photo_samples.phone_jpeg(3000, 2000, orientation=6)
    assert Image.open(io.BytesIO(sent)).getexif().get_ifd(photo_samples.EXIF_GPS_IFD)

    status, photo, _ = await upload(client, token, leg["id"], sent)

    assert status == 201, photo
    assert photo["leg_id"] == leg["id"] and photo["content_type"] == "image/jpeg"
    assert (photo["width"], photo["height"]) == (1067, 1600)
    assert photo["url"] == f"/v1/legs/{leg['id']}/photos/{photo['id']}"
    assert uuid.UUID(photo["id"]).version == 4, "a random id: the URL is not guessable"

    status, stored, headers = await fetch(client, operator, photo["url"])
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert "private" in headers["Cache-Control"] and headers["X-Content-Type-Options"] == "nosniff"
    assert hashlib.sha256(stored).hexdigest() == photo["sha256"] and len(stored) == photo["size_bytes"]
    image = Image.open(io.BytesIO(stored))
    exif = image.getexif()
    assert len(exif) == 0 and not exif.get_ifd(photo_samples.EXIF_GPS_IFD), "no EXIF, no GPS position"
    assert b"PhoneMaker" not in stored
    assert image.size == (1067, 1600), "turned upright and scaled down to 1600 px"
    top = image.getpixel((533, 100))
    assert isinstance(top, tuple) and top[0] > 200 and top[2] < 60, "the red half is on top"

    # Nobody else: another organisation's operator, a volunteer, another volunteer uploading to it.
    stranger = await client.organisation()
    status, _, _ = await fetch(client, stranger, photo["url"])
    assert status == 404
    assert (await fetch(client, token, photo["url"]))[0] == 403
    _, other = await client.volunteer(operator, (place[0] + 5, place[1]))
    assert (await upload(client, other, leg["id"], sent))[0] == 404
    assert (await fetch(client, operator, f"/v1/legs/{leg['id']}/photos/{uuid.uuid4()}"))[0] == 404
    assert (await fetch(client, operator, f"/v1/legs/{uuid.uuid4()}/photos/{photo['id']}"))[0] == 404


async def _confirmation(bootstrap: str, leg_id: str) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        CONFIRMATIONS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = CloudEvent.from_bytes(record.value)
                    if event.data.get("leg_id") == leg_id and event.type.startswith("leg.confirm"):
                        return {"type": event.type, **event.data}
    finally:
        await consumer.stop()
    raise AssertionError(f"no confirmation for leg {leg_id}")


async def test_only_an_uploaded_photo_of_the_leg_confirms_a_no_contact_drop_off(
    client: Client, stack: Stack
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place, max_active_legs=2)
    leg = await leg_in_hand(client, operator, token, place)
    other_leg = await leg_in_hand(client, operator, token, place)
    status, photo, _ = await upload(
        client, token, leg["id"], photo_samples.png(640, 480), media_type="image/png"
    )
    assert status == 201, photo
    status, other_photo, _ = await upload(
        client, token, other_leg["id"], photo_samples.webp(), media_type="image/webp"
    )
    assert status == 201, other_photo
    delivered = f"{client.dispatcher}/v1/me/legs/{leg['id']}/delivered"

    refusals = [
        ({"photo_sha256": hashlib.sha256(b"no upload made this").hexdigest()}, "$.photo_sha256"),
        ({"photo_sha256": other_photo["sha256"]}, "$.photo_sha256"),
        ({"photo_id": str(uuid.uuid4())}, "$.photo_id"),
        ({"photo_id": other_photo["id"]}, "$.photo_id"),
        ({"photo_id": photo["id"], "photo_sha256": other_photo["sha256"]}, "$.photo_sha256"),
    ]
    for body, field in refusals:
        status, problem = await client.call("POST", delivered, token, json=body)
        assert status == 422, (body, problem)
        assert [error["field"] for error in problem["errors"]] == [field], problem

    status, answer = await client.call("POST", delivered, token, json={"photo_id": photo["id"]})
    assert status == 202 and answer["status"] == "delivered", answer
    confirmed = await _confirmation(stack.kafka_bootstrap, leg["id"])
    assert confirmed["type"] == "leg.confirmed" and confirmed["method"] == "photo"
    assert confirmed["photo_sha256"] == photo["sha256"]

    # An older app names the photo by the hash its upload answered: still accepted.
    status, answer = await client.call(
        "POST",
        f"{client.dispatcher}/v1/me/legs/{other_leg['id']}/delivered",
        token,
        json={"photo_sha256": other_photo["sha256"]},
    )
    assert status == 202, answer

    # The task's read model links the photo, at the path its operators fetch it from.
    for _ in range(100):
        status, task = await client.call("GET", f"{client.intake}/v1/tasks/{leg['task_id']}", operator)
        links = task["legs"][0].get("photos") if status == 200 else None
        if links:
            break
        await asyncio.sleep(0.1)
    assert links == [{"id": photo["id"], "url": photo["url"]}]
    status, stored, _ = await fetch(client, operator, links[0]["url"])
    assert status == 200 and hashlib.sha256(stored).hexdigest() == photo["sha256"]


async def test_what_is_no_acceptable_photo_is_refused_with_its_reason(client: Client) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    leg = await leg_in_hand(client, operator, token, place)

    status, problem, _ = await upload(client, token, leg["id"], b"\xff\xd8\xff\xe0 this is no JPEG")
    assert status == 422 and problem["errors"][0]["field"] == "body", problem
    status, problem, _ = await upload(client, token, leg["id"], b"")
    assert status == 422, problem

    status, problem, _ = await upload(client, token, leg["id"], b"GIF89a...", media_type="image/gif")
    assert status == 415 and "image/jpeg" in problem["detail"] and "image/webp" in problem["detail"], problem
    status, problem, _ = await upload(client, token, leg["id"], b"{}", media_type="application/json")
    assert status == 415, problem
    if "image/heic" not in supported_types():  # its decoder (pillow-heif) is optional
        status, problem, _ = await upload(
            client, token, leg["id"], b"\x00\x00\x00\x18ftypheic", media_type="image/heic"
        )
        assert status == 415 and "image/jpeg" in problem["detail"], problem

    too_big = photo_samples.phone_jpeg(300, 200) + b"\x00" * MAX_BYTES
    status, problem, _ = await upload(client, token, leg["id"], too_big)
    assert status == 413 and problem["errors"][0]["field"] == "body", problem

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
        for _ in range(MAX_BYTES // (1024 * 1024) + 2):
            yield b"\x00" * (1024 * 1024)

    status, problem, _ = await upload(client, token, leg["id"], chunked())
    assert status == 413, problem

    status, problem, _ = await upload(
        client, token, leg["id"], photo_samples.png_bomb(), media_type="image/png"
    )
    assert status == 422 and "pixels" in problem["detail"], problem

    assert (await upload(client, token, str(uuid.uuid4()), photo_samples.png(), media_type="image/png"))[
        0
    ] == 404
    # A PNG sent as a JPEG is no JPEG.
    status, problem, _ = await upload(client, token, leg["id"], photo_samples.png(), media_type="image/jpeg")
    assert status == 422, problem


async def test_an_interrupted_upload_sent_again_with_its_key_stores_one_photo(
    client: Client, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    leg = await leg_in_hand(client, operator, token, place)
    data = photo_samples.phone_jpeg(1200, 900)
    key = str(uuid.uuid4())
    address = urlsplit(client.dispatcher)
    head = (
        f"POST /v1/me/legs/{leg['id']}/photos HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: image/jpeg\r\nIdempotency-Key: {key}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()

    # The connection drops half-way through the body: nothing is stored.
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(head + data[: len(data) // 2])
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.5)
    assert await photos_of(sessionmaker, leg["id"]) == []

    # The whole body arrives and the photo is stored, but the answer is never read: lost on the way.
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(head + data)
    await writer.drain()
    for _ in range(100):
        if await photos_of(sessionmaker, leg["id"]):
            break
        await asyncio.sleep(0.05)
    writer.close()

    status, first, headers = await upload(client, token, leg["id"], data, key=key)
    assert status == 201 and headers.get("Idempotent-Replayed") == "true", first
    status, again, _ = await upload(client, token, leg["id"], data, key=key)
    assert (status, again) == (201, first)
    stored = await photos_of(sessionmaker, leg["id"])
    assert [str(row.id) for row in stored] == [first["id"]], "one photo, however often it was sent"
    status, problem, _ = await upload(
        client, token, leg["id"], photo_samples.png(), media_type="image/png", key=key
    )
    assert status == 422 and problem["errors"][0]["field"] == "header:Idempotency-Key", problem


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server | None]:
    with s3_server() as server:
        yield server


@pytest.fixture
async def s3_dispatcher(
    stack: Stack, system: ServiceProcesses, sessionmaker: Maker, s3: S3Server | None
) -> AsyncIterator[str]:
    """A second dispatcher that keeps its photos in an S3 bucket (the first keeps them in PostgreSQL)."""
    if s3 is None:
        pytest.skip("no S3-compatible store here: install moto[s3] or set S3_ENDPOINT_URL")
    from services.dispatcher.adapters.photo_store import S3PhotoStore

    bucket = fresh_bucket()
    store = S3PhotoStore(
        endpoint_url=s3.endpoint_url,
        bucket=bucket,
        region="us-east-1",
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )
    await store.ensure_bucket()
    await store.close()
    extra = ServiceProcesses(env=system.env)
    extra.start("dispatcher", extra_env=s3.env(bucket))
    try:
        await asyncio.to_thread(extra.wait_ready, services=("dispatcher",), timeout_s=60)
        yield extra.url("dispatcher")
    finally:
        await asyncio.to_thread(extra.stop_all)
    # The consumer group hands its partitions back to the first process: wait until it takes tasks in.
    tokens = await admin.bootstrap_demo(stack.settings())
    async with aiohttp.ClientSession() as http:
        probe = await Client(http, system, tokens["admin_token"]).task(tokens["operator_token"], somewhere())
    await leg_arrives(sessionmaker, probe["legs"][0]["id"])


async def test_photos_upload_and_fetch_alike_with_an_s3_store(
    client: Client, s3_dispatcher: str, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    leg = await leg_in_hand(client, operator, token, place, dispatcher=s3_dispatcher)
    status, photo, _ = await upload(client, token, leg["id"], photo_samples.phone_jpeg(), base=s3_dispatcher)
    assert status == 201, photo
    status, stored, _ = await fetch(client, operator, photo["url"], base=s3_dispatcher)
    assert status == 200 and hashlib.sha256(stored).hexdigest() == photo["sha256"]
    assert not Image.open(io.BytesIO(stored)).getexif()
    [row] = await photos_of(sessionmaker, leg["id"])
    assert row.store == "s3"
    async with sessionmaker() as session:
        blobs = await session.execute(
            select(func.count()).select_from(PhotoBlobRow).where(PhotoBlobRow.key == photo["id"])
        )
        assert blobs.scalar_one() == 0, "the bytes are in the bucket, not in PostgreSQL"
    status, _, _ = await fetch(client, await client.organisation(), photo["url"], base=s3_dispatcher)
    assert status == 404


async def test_a_photo_goes_with_its_legs_personal_data(
    client: Client, stack: Stack, sessionmaker: Maker
) -> None:
    operator = await client.organisation()
    place = somewhere()
    _, token = await client.volunteer(operator, place)
    leg = await leg_in_hand(client, operator, token, place)
    status, photo, _ = await upload(client, token, leg["id"], photo_samples.phone_jpeg(800, 600))
    assert status == 201, photo
    status, answer = await client.call(
        "POST", f"{client.dispatcher}/v1/me/legs/{leg['id']}/delivered", token, json={"photo_id": photo["id"]}
    )
    assert status == 202, answer
    await _confirmation(stack.kafka_bootstrap, leg["id"])

    async def erased() -> bool:
        async with sessionmaker() as session, session.begin():
            await personal_data.erase_ended_legs(
                session, retention_s=0, batch=50, photos=PhotoStores.from_settings(stack.settings())
            )
            return bool(
                await session.scalar(select(LegRow.erased_at).where(LegRow.id == uuid.UUID(leg["id"])))
            )

    await until(erased, timeout_s=30, what="the confirmed leg was erased")
    assert await photos_of(sessionmaker, leg["id"]) == []
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(PhotoBlobRow.key == photo["id"])) == 0
    status, _, _ = await fetch(client, operator, photo["url"])
    assert status == 404
