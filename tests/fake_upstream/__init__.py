"""Fake LLM vendors speaking each vendor's wire format over real HTTP. Start with `FakeUpstream`."""

from tests.fake_upstream.server import FakeUpstream
from tests.fake_upstream.state import RecordedRequest

__all__ = ["FakeUpstream", "RecordedRequest"]
