"""Where the bytes of proof-of-delivery photos are kept: one interface, two stores.

`PostgresPhotoStore` (the default: nothing more to run) writes them to a table of their own in the
caller's transaction, so a photo is stored exactly when its record is. `S3PhotoStore` writes them to
an S3-compatible object store (MinIO in docker-compose.yml); an object whose transaction then rolls
back stays behind unreferenced, and is never served: only a recorded photo is fetched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adapters.tables import PhotoBlobRow
from shared.settings import Settings

log = structlog.get_logger(__name__)


class PhotoStore(Protocol):
    """Keeps a photo's bytes under a key. `session` is the caller's, for a store that uses it."""

    name: str

    async def put(self, session: AsyncSession, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`; storing the same key again replaces it."""

    async def get(self, session: AsyncSession, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""

    async def delete(self, session: AsyncSession, key: str) -> None:
        """Forget the bytes under `key` (nothing there is fine)."""

    async def close(self) -> None: ...


class PostgresPhotoStore:
    name = "postgres"

    async def put(self, session: AsyncSession, key: str, data: bytes, content_type: str) -> None:
        statement = insert(PhotoBlobRow).values(key=key, data=data)
        await session.execute(
            statement.on_conflict_do_update(index_elements=[PhotoBlobRow.key], set_={"data": data})
        )

    async def get(self, session: AsyncSession, key: str) -> bytes | None:
        found = await session.execute(select(PhotoBlobRow.data).where(PhotoBlobRow.key == key))
        return found.scalar_one_or_none()

    async def delete(self, session: AsyncSession, key: str) -> None:
        await session.execute(delete(PhotoBlobRow).where(PhotoBlobRow.key == key))

    async def close(self) -> None:
        return None


class S3PhotoStore:
    """An S3-compatible bucket, through aiobotocore; one client for the life of the process."""

    name = "s3"

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "photos/",
    ) -> None:
        self._endpoint_url = endpoint_url or None
        self._bucket = bucket
        self._region = region
        self._access_key_id = access_key_id or None
        self._secret_access_key = secret_access_key or None
        self._prefix = prefix
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3PhotoStore:
        return cls(
            endpoint_url=settings.photo_s3_endpoint_url,
            bucket=settings.photo_s3_bucket,
            region=settings.photo_s3_region,
            access_key_id=settings.photo_s3_access_key_id,
            secret_access_key=settings.photo_s3_secret_access_key,
        )

    async def _s3(self) -> Any:
        if self._client is None:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    # Path-style addressing: MinIO and other self-hosted stores have no bucket DNS.
                    config=AioConfig(
                        s3={"addressing_style": "path"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=30,
                    ),
                )
            )
        return self._client

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (docker-compose.yml creates it before the services start)."""
        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self._bucket)
        except s3.exceptions.ClientError:
            await s3.create_bucket(Bucket=self._bucket)

    async def put(self, session: AsyncSession, key: str, data: bytes, content_type: str) -> None:
        s3 = await self._s3()
        await s3.put_object(Bucket=self._bucket, Key=self._prefix + key, Body=data, ContentType=content_type)

    async def get(self, session: AsyncSession, key: str) -> bytes | None:
        s3 = await self._s3()
        try:
            answer = await s3.get_object(Bucket=self._bucket, Key=self._prefix + key)
        except s3.exceptions.NoSuchKey:
            return None
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, session: AsyncSession, key: str) -> None:
        s3 = await self._s3()
        await s3.delete_object(Bucket=self._bucket, Key=self._prefix + key)

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


@dataclass
class PhotoStores:
    """The store new photos go to, and every store photos may have been written to before."""

    current: PhotoStore
    by_name: dict[str, PhotoStore]

    @classmethod
    def from_settings(cls, settings: Settings) -> PhotoStores:
        stores: dict[str, PhotoStore] = {"postgres": PostgresPhotoStore()}
        if settings.photo_store == "s3" or settings.photo_s3_endpoint_url:
            stores["s3"] = S3PhotoStore.from_settings(settings)
        return cls(current=stores[settings.photo_store], by_name=stores)

    def named(self, name: str) -> PhotoStore | None:
        return self.by_name.get(name)

    async def close(self) -> None:
        for store in self.by_name.values():
            await store.close()
