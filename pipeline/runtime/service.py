"""Run a batch-runtime loop for as long as the Faust application runs.

Started as an app task, once Faust has recovered its own tables. Stopped first thing when the
app stops, before Faust closes anything: its ``on_before_shutdown`` signal comes only after it
closed its tables (``App._stop_consumer``), and work still finishing may read them. A loop
stopped this way commits what it holds and leaves its group, so its partitions move at once.
A loop that fails crashes the worker: a worker that stays up without routing or delivering
would hold its partitions forever.
"""

from __future__ import annotations

import logging
from typing import Protocol

import faust

logger = logging.getLogger(__name__)


class Loop(Protocol):
    async def run(self) -> None: ...

    async def stop(self) -> None:
        """Ask the loop to end and wait until it has (idempotent)."""
        ...


def run_with(app: faust.App, loop: Loop, name: str) -> None:
    async def run() -> None:
        try:
            await loop.run()
        except Exception as exc:
            logger.exception("%s crashed", name)
            await app.crash(exc)

    app.task(run)
    # mode's Service.stop awaits self.on_stop() before it stops anything else of the app;
    # this one app's on_stop (on purpose, not the class's) stops the loop, then Faust.
    faust_on_stop = app.on_stop

    async def on_stop() -> None:
        await loop.stop()
        await faust_on_stop()

    app.on_stop = on_stop  # type: ignore[method-assign]
