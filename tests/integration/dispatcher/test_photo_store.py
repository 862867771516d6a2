"""The photo store's one interface, the same tests against each store: PostgreSQL always, and an
S3-compatible store wherever one can be had (moto's S3 server on loopback, or S3_ENDPOINT_URL)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.adapters.photo_store import PhotoStore, PostgresPhotoStore, S3PhotoStore
from tests.integration.dispatcher.s3_server import S3Server, fresh_bucket, s3_server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server | None]:
    with s3_server() as server:
        yield server


@pytest.fixture(params=["postgres", "s3"])
async def store(request: pytest.FixtureRequest, s3: S3Server | None) -> AsyncIterator[PhotoStore]:
    if request.param == "postgres":
        yield PostgresPhotoStore()
        return
    if s3 is None:
        pytest.skip("no S3-compatible store here: install moto[s3] or set S3_ENDPOINT_URL")
    bucket = S3PhotoStore(
        endpoint_url=s3.endpoint_url,
        bucket=fresh_bucket(),
        region="us-east-1",
        access_key_id=s3.access_key_id,
        secret_access_key=s3.secret_access_key,
    )
    await bucket.ensure_bucket()
    await bucket.ensure_bucket()  # a second time finds it there
    try:
        yield bucket
    finally:
        await bucket.close()


async def test_bytes_put_are_the_bytes_got_and_an_unknown_key_is_none(
    store: PhotoStore, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = str(uuid.uuid4())
    data = os.urandom(300_000) + b"\x00\xff" * 10
    async with sessionmaker() as session, session.begin():
        await store.put(session, key, data, "image/jpeg")
    async with sessionmaker() as session:
        got = await store.get(session, key)
        assert got is not None and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert await store.get(session, str(uuid.uuid4())) is None


async def test_a_key_put_again_holds_the_latest_bytes(
    store: PhotoStore, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = str(uuid.uuid4())
    async with sessionmaker() as session, session.begin():
        await store.put(session, key, b"first", "image/png")
        await store.put(session, key, b"second", "image/png")
    async with sessionmaker() as session:
        assert await store.get(session, key) == b"second"


async def test_keys_do_not_mix(store: PhotoStore, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    keys = {str(uuid.uuid4()): os.urandom(64) for _ in range(5)}
    async with sessionmaker() as session, session.begin():
        for key, data in keys.items():
            await store.put(session, key, data, "image/jpeg")
    async with sessionmaker() as session:
        assert {key: await store.get(session, key) for key in keys} == keys


async def test_postgres_keeps_a_photo_only_when_its_transaction_commits(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    store = PostgresPhotoStore()
    key = str(uuid.uuid4())
    async with sessionmaker() as session:
        await session.begin()
        await store.put(session, key, b"bytes", "image/jpeg")
        await session.rollback()
    async with sessionmaker() as session:
        assert await store.get(session, key) is None


async def test_a_deleted_key_is_gone_and_deleting_nothing_is_fine(
    store: PhotoStore, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    kept, deleted = str(uuid.uuid4()), str(uuid.uuid4())
    async with sessionmaker() as session, session.begin():
        await store.put(session, kept, b"kept", "image/jpeg")
        await store.put(session, deleted, b"deleted", "image/jpeg")
    async with sessionmaker() as session, session.begin():
        await store.delete(session, deleted)
        await store.delete(session, str(uuid.uuid4()))
    async with sessionmaker() as session:
        assert await store.get(session, deleted) is None
        assert await store.get(session, kept) == b"kept"
