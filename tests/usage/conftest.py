"""Fixtures for the usage pipeline: events, a Redis on its own DB number, a Redis we may restart."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from usage.events import UsageEventData
from usage.stream import StreamNames

# The usage tests' own Redis database: they create uniquely named keys there and delete only those.
USAGE_TEST_REDIS_DB = 13

_counter = itertools.count()


def needs_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set: the Redis usage stream is not used in the embedded (SQLite) mode")
    return url


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture
def make_event() -> Callable[..., UsageEventData]:
    def make(**kwargs: Any) -> UsageEventData:
        values: dict[str, Any] = {
            "request_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC),
            "api_family": "mlflow",
            "status_code": 200,
            "route_name": "r",
            "provider": "mock",
            "model": "mock-1",
            "team_name": "t",
            "consumer_name": "c",
            "input_tokens": 3,
            "output_tokens": 5,
            "total_tokens": 8,
            **kwargs,
        }
        return UsageEventData(**values)

    return make


@pytest.fixture
def redis_url() -> str:
    return with_db(needs_redis(), USAGE_TEST_REDIS_DB)


@pytest.fixture
def names(redis_url: str) -> Iterator[StreamNames]:
    """A stream and group of this test alone; deleted afterwards (nothing else on the DB is touched)."""
    n = StreamNames(stream=f"test:usage:{uuid.uuid4().hex[:12]}:{next(_counter)}", group="usage-drain")
    yield n
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*n.keys())
    finally:
        client.close()


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateRedis:
    """A redis-server of our own (append-only file on, like docker-compose's), so we may restart it."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): what a restart does."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: cannot restart a Redis of our own")
    server = PrivateRedis(port=_free_port(), workdir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
