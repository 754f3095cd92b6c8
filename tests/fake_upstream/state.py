"""What a fake upstream remembers: the requests it received, the faults queued, the valid credentials.

Shared between the server thread and the test thread, so every access goes through one lock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
            "body": self.body.decode("utf-8", errors="replace"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordedRequest:
        return cls(
            method=data["method"],
            path=data["path"],
            query=dict(data["query"]),
            headers=dict(data["headers"]),
            json=data["json"],
            body=str(data["body"]).encode(),
        )


@dataclass(slots=True)
class Credentials:
    """The credentials each vendor dialect accepts."""

    openai_keys: set[str] = field(default_factory=set)
    azure_keys: set[str] = field(default_factory=set)
    azuread_tokens: set[str] = field(default_factory=set)
    anthropic_keys: set[str] = field(default_factory=set)
    cohere_keys: set[str] = field(default_factory=set)
    gemini_keys: set[str] = field(default_factory=set)
    # OpenAI-compatible dialects (tests.fake_upstream.openai_compatible) by vendor name: groq, deepseek, ...
    compatible_keys: dict[str, set[str]] = field(default_factory=dict)
    mistral_keys: set[str] = field(default_factory=set)
    databricks_tokens: set[str] = field(default_factory=set)
    hf_tokens: set[str] = field(default_factory=set)  # Hugging Face Inference Endpoint tokens (TGI)
    ai21labs_keys: set[str] = field(default_factory=set)
    mosaicml_keys: set[str] = field(default_factory=set)
    # Amazon Bedrock (tests.fake_upstream.bedrock): access key id → (secret, session token, None for a
    # long-term key); Bedrock API keys (bearer tokens); the IAM roles the fake STS lets keys assume.
    aws_keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    bedrock_api_keys: set[str] = field(default_factory=set)
    aws_roles: set[str] = field(default_factory=set)


class FakeState:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[str] = deque()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def add_fault(self, spec: str, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([spec] * times)

    def take_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
