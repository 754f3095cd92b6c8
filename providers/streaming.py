"""Streaming in standard form: what providers' stream parsers produce, and an incremental SSE decoder.

A provider's `stream_parser()` turns the vendor's framing (bytes as they arrive) into `StreamChunk`s:
text deltas per choice, finish reasons, and the final usage when the vendor reports it. The API
families render the chunks in OpenAI's chunk shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from providers.base import Usage


@dataclass(slots=True)
class ChoiceDelta:
    index: int
    text: str = ""
    role: str | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class StreamChunk:
    deltas: list[ChoiceDelta] = field(default_factory=list)
    usage: Usage | None = None  # the vendor's final usage, on the chunk that carries it
    model: str | None = None
    id: str | None = None


class StreamParser(Protocol):
    def feed(self, data: bytes) -> list[StreamChunk]:
        """Chunks completed by `data` (the vendor's bytes, split anywhere)."""
        ...

    def close(self) -> list[StreamChunk]:
        """Chunks still buffered when the vendor's stream ended."""
        ...


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" when the vendor sent no `event:` line
    data: str


class SSEDecoder:
    """Incremental Server-Sent Events decoder (WHATWG rules: `event`, `data`, comments, CRLF/LF/CR)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._pending = b""
        self._held_cr = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[SSEEvent]:
        raw = self._pending + data
        try:
            text = raw.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as exc:  # a multi-byte character split across reads
            text = raw[: exc.start].decode("utf-8")
            self._pending = raw[exc.start :]
        text = self._held_cr + text
        # A CR at the very end may be the first half of a CRLF split across reads: hold it back.
        self._held_cr = "\r" if text.endswith("\r") else ""
        if self._held_cr:
            text = text[:-1]
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events: list[SSEEvent] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        events = self.feed(b"\n") if self._buffer or self._held_cr else []
        final = self._line("")
        return events + ([final] if final else [])

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(event=self._event or "message", data="\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class ChunkParser:
    """Base for SSE-framed vendor streams: subclasses turn one event into a chunk (or None).

    A vendor error event raises, but only after the chunks that came before it in the same read
    have been handed on, so the caller has forwarded everything the vendor sent until then.
    """

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._error: Exception | None = None

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[StreamChunk]:
        return self._chunks(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        return self._chunks(self._sse.close())

    def _chunks(self, events: list[SSEEvent]) -> list[StreamChunk]:
        if self._error is not None:
            raise self._error
        chunks: list[StreamChunk] = []
        for event in events:
            try:
                chunk = self.event_chunk(event)
            except Exception as exc:
                if not chunks:
                    raise
                self._error = exc
                break
            if chunk is not None:
                chunks.append(chunk)
        return chunks
