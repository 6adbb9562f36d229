"""The local fake providers, in the test's event loop, for workers running in subprocesses.

A worker learns their addresses from ``sinks.provider_env()``. The sinks answer only while
the event loop runs: call blocking helpers (``WorkerProcess.start``/``stop``/``kill``,
``wait_for_preferences``) through ``asyncio.to_thread``, or a worker waiting on a sink
stalls until they return.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.devsinks.run import DevSinkPorts, DevSinks, start_dev_sinks


@pytest.fixture(scope="module")
async def sinks() -> AsyncIterator[DevSinks]:
    started = await start_dev_sinks(ports=DevSinkPorts.ephemeral(), echo=None)
    try:
        yield started
    finally:
        await started.stop()
