from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.client import UpstreamClient
from tests.fake_upstream.fixtures import fake_upstream, fake_upstream_server

__all__ = ["client", "fake_upstream", "fake_upstream_server"]


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    # Per test: the aiohttp session binds to the event loop, and each test has its own loop.
    async with UpstreamClient(timeout=5.0, connect_timeout=2.0) as upstream_client:
        yield upstream_client
