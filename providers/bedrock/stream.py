"""InvokeModelWithResponseStream's framing: the AWS event stream (`application/vnd.amazon.eventstream`).

Binary messages (prelude with lengths and a CRC, headers, payload, message CRC), decoded
incrementally with botocore's `EventStreamBuffer`, which checks both CRCs. Each `chunk` event's
payload is `{"bytes": <base64 of the model family's stream JSON>}`; the last one also carries
`amazon-bedrock-invocationMetrics`, the call's billed token counts. An `exception` message
(`:exception-type` modelStreamErrorException, throttlingException, validationException,
modelTimeoutException, internalServerException, serviceUnavailableException) is Bedrock failing
after the stream started: it raises, once the chunks decoded before it have been handed on.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer

from providers.base import GatewayError, InvalidRequest, Secrets, UpstreamError, UpstreamUnavailable
from providers.bedrock.errors import redact_message
from providers.bedrock.families import FamilyStream, metrics_usage
from providers.streaming import StreamChunk

# Exception messages Bedrock sends mid-stream whose meaning is not "the upstream failed".
_RATE_LIMITED = frozenset({"throttlingexception", "servicequotaexceededexception"})
_BAD_REQUEST = frozenset({"validationexception"})


class BedrockStreamParser:
    """One call's stream: AWS event stream bytes in, standard chunks out (a StreamParser)."""

    def __init__(self, *, family: FamilyStream, secrets: Secrets, model: str) -> None:
        self._family = family
        self._secrets = secrets
        self._model = model
        self._buffer = EventStreamBuffer()
        self._pending_bytes = 0  # received but not yet part of a complete message
        self._usage_sent = False
        self._error: Exception | None = None

    def feed(self, data: bytes) -> list[StreamChunk]:
        if self._error is not None:
            raise self._error
        self._buffer.add_data(data)
        self._pending_bytes += len(data)
        chunks: list[StreamChunk] = []
        try:
            # botocore-stubs mistype EventStreamMessage (prelude and headers as int): read it as Any.
            message: Any
            for message in self._buffer:
                self._pending_bytes -= message.prelude.total_length
                chunks.extend(self._message_chunks(message))
        except Exception as exc:
            if not chunks:
                raise
            self._error = exc  # raised on the next feed/close, after these chunks went out
        return chunks

    def close(self) -> list[StreamChunk]:
        if self._error is not None:
            raise self._error
        if self._pending_bytes:
            raise UpstreamUnavailable("The upstream provider's stream ended in the middle of an event.")
        if self._usage_sent:
            return []
        usage = self._family.usage()
        if usage is None:
            return []
        self._usage_sent = True
        return [StreamChunk(usage=usage, model=self._model)]

    def _message_chunks(self, message: Any) -> list[StreamChunk]:
        headers: Mapping[str, Any] = message.headers
        message_type = headers.get(":message-type")
        if message_type == "exception":
            raise stream_exception(str(headers.get(":exception-type") or "exception"), message.payload, self._secrets)
        if message_type == "error":
            code = str(headers.get(":error-code") or "error")
            text = redact_message(str(headers.get(":error-message") or ""), self._secrets)
            raise UpstreamError(f"The upstream provider failed mid-stream: {code}" + (f": {text}" if text else "."))
        if message_type != "event" or headers.get(":event-type") != "chunk":
            return []  # e.g. an initial-response event
        envelope = orjson.loads(message.payload)
        event = orjson.loads(base64.b64decode(envelope["bytes"], validate=True))
        if not isinstance(event, Mapping):
            raise TypeError("stream event is not a JSON object")
        chunks: list[StreamChunk] = []
        chunk = self._family.event_chunk(event)
        if chunk is not None:
            chunk.model = chunk.model or self._model
            chunks.append(chunk)
        usage = metrics_usage(event)
        if usage is not None and not self._usage_sent:
            self._usage_sent = True
            chunks.append(StreamChunk(usage=usage, model=self._model))
        return chunks


def stream_exception(kind: str, payload: bytes, secrets: Secrets) -> GatewayError:
    """A mid-stream `exception` message → the error the stream ends with (no credential in it)."""
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        data = {}
    text = ""
    if isinstance(data, Mapping):
        text = str(data.get("message") or data.get("Message") or data.get("originalMessage") or "")
    text = redact_message(text, secrets)
    message = f"The upstream provider failed mid-stream: {kind}" + (f": {text}" if text else ".")
    lowered = kind.lower()
    if lowered in _BAD_REQUEST:
        return InvalidRequest(message, code="UPSTREAM_BAD_REQUEST")
    if lowered in _RATE_LIMITED:
        return UpstreamError(message, code="UPSTREAM_RATE_LIMITED")
    return UpstreamError(message)
