"""Run a batch-runtime loop as part of the Faust application's lifecycle.

The loop starts once the app has started (after Faust's own tables are recovered) and stops
before the app finishes stopping, leaving its consumer group on the way out so its partitions
move at once. A loop that fails crashes the worker: a silently stopped loop would stop
routing or delivery while the worker still looked healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import faust
import mode

logger = logging.getLogger(__name__)

# A graceful stop finishes the batch in hand and its commit; past this it is cancelled.
_STOP_TIMEOUT_S = 30.0


class Loop(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


class LoopService(mode.Service):
    def __init__(self, app: faust.App, runtime: Loop, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.runtime_loop = runtime
        self.loop_name = name
        self._done = asyncio.Event()

    @property
    def label(self) -> str:
        return self.loop_name

    async def on_start(self) -> None:
        self.add_future(self._run())

    async def _run(self) -> None:
        try:
            await self.runtime_loop.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("%s stopped on an error; stopping the worker", self.loop_name)
            await self.app.crash(exc)
        finally:
            self._done.set()

    async def on_stop(self) -> None:
        self.runtime_loop.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), _STOP_TIMEOUT_S)


def register_runtime(app: faust.App, loop: Loop, name: str) -> None:
    """Start ``loop`` with the app, as a service the app stops with itself."""

    @app.task  # type: ignore[untyped-decorator]
    async def start() -> None:
        await app.add_runtime_dependency(LoopService(app, loop, name, loop=app.loop))
