"""The in-process usage recorder of a serving process.

`record()` only appends to a buffer (no I/O on the request path); a background task writes the
buffer in batches through `usage_events_write`. A failed write keeps the events and retries, so a
database hiccup loses nothing while the process lives; shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .events import UsageEventData
from .services import usage_events_write

logger = logging.getLogger(__name__)

RunSync = Callable[..., Awaitable[Any]]

MAX_BUFFERED = 100_000


class UsageRecorder:
    def __init__(self, *, run_sync: RunSync, flush_seconds: float = 0.5) -> None:
        self._run_sync = run_sync
        self._flush_seconds = flush_seconds
        self._buffer: list[UsageEventData] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def record(self, event: UsageEventData) -> None:
        if len(self._buffer) >= MAX_BUFFERED:
            logger.error("usage buffer full (%d events); the database is not taking writes", MAX_BUFFERED)
            self._wakeup.set()
        self._buffer.append(event)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def flush(self) -> int:
        """Write everything buffered now; on failure the events go back into the buffer."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                return int(await self._run_sync(usage_events_write, events=batch))
            except Exception:
                logger.exception("writing %d usage events failed; retrying them one by one", len(batch))
            written = 0
            for index, event in enumerate(batch):
                try:
                    written += int(await self._run_sync(usage_events_write, events=[event]))
                except Exception:
                    if index == 0 and len(batch) > 1:
                        # The database itself is failing: keep everything for the next flush.
                        self._buffer[:0] = batch
                        return 0
                    # One event the database refuses must not block the rest: it goes to the log whole.
                    logger.error("usage event refused by the database, logged instead: %s", event.as_dict())
            return written

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_seconds)
            self._wakeup.clear()
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="usage-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
