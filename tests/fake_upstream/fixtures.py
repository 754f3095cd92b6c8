"""Pytest fixtures for the fake upstream.

Use them from a conftest.py: `from tests.fake_upstream.fixtures import fake_upstream, fake_upstream_server`
(or list this module in the root conftest's `pytest_plugins`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_upstream.server import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    """One fake upstream for the whole session (not reset between tests)."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake upstream, with no recorded requests and no queued faults."""
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()
