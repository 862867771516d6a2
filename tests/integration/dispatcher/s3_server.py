"""An S3-protocol server for the photo store's tests: the one S3_ENDPOINT_URL names (MinIO, say), or
else moto's, a real HTTP server speaking S3 on loopback, in a thread of the test process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str

    def env(self, bucket: str) -> dict[str, str]:
        """The settings of a dispatcher that keeps its photos here, in `bucket`."""
        return {
            "PHOTO_STORE": "s3",
            "PHOTO_S3_ENDPOINT_URL": self.endpoint_url,
            "PHOTO_S3_BUCKET": bucket,
            "PHOTO_S3_ACCESS_KEY_ID": self.access_key_id,
            "PHOTO_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def fresh_bucket() -> str:
    return f"errands-test-{uuid.uuid4().hex[:12]}"


@contextmanager
def s3_server() -> Iterator[S3Server | None]:
    """The server, or None when there is none to be had (the tests against S3 then skip)."""
    endpoint = os.environ.get("S3_ENDPOINT_URL")
    if endpoint:
        yield S3Server(
            endpoint,
            os.environ.get("S3_ACCESS_KEY_ID", "minioadmin"),
            os.environ.get("S3_SECRET_ACCESS_KEY", "minioadmin"),
        )
        return
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}", "testing", "testing")
    finally:
        server.stop()
