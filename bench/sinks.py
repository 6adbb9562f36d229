"""The dev provider sinks on an event loop of their own, in a daemon thread of the bench.

A bench that measures arrivals at a sink runs it in its own process, not in the worker's,
so that the times it records are the bench's: :meth:`SinkThread.call` runs a coroutine
on the sinks' loop (to swap a recorder, read what arrived) and waits for its result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pipeline.devsinks.run import DevSinkPorts, DevSinks, start_dev_sinks

T = TypeVar("T")
S = TypeVar("S", bound="LoopThread")


class LoopThread:
    """An event loop served by a daemon thread of this process; :meth:`call` runs on it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bench-sinks", daemon=True
        )

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self) -> object:
        self._thread.start()
        return None

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def cpu_seconds(self) -> float:
        """CPU time used so far by the loop's thread."""

        async def read() -> float:
            return time.thread_time()

        return self.call(read())


class SinkThread(LoopThread):
    """Every dev sink on free ports, served by a loop in a daemon thread of this process."""

    def __init__(self) -> None:
        super().__init__()
        self._sinks: DevSinks | None = None

    @property
    def sinks(self) -> DevSinks:
        assert self._sinks is not None, "start() first"
        return self._sinks

    def start(self) -> DevSinks:
        super().start()
        self._sinks = self.call(start_dev_sinks(ports=DevSinkPorts.ephemeral(), echo=None))
        return self._sinks

    def stop(self) -> None:
        if self._sinks is not None:
            self.call(self._sinks.stop())
        super().stop()


@contextmanager
def running(thread: S) -> Iterator[S]:
    """``thread`` started, and stopped on the way out."""
    try:
        thread.start()
        yield thread
    finally:
        thread.stop()
