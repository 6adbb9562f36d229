"""The delivery runtime's offset committer ends when cancelled, whatever it is doing then.

The loop cancels it on the way out and waits for it. Under Python 3.11, ``asyncio.wait_for``
swallows a cancellation that arrives as its awaitable finishes (CPython gh-86296, fixed in
3.12): the committer then went on forever and a SIGTERMed worker never exited (seen in
``clarion bench faults``: the task dump showed it "cancelling" in its sleep).
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.metrics import Metrics
from pipeline.runtime import delivery
from pipeline.runtime.delivery import DeliveryRuntime
from pipeline.settings import Settings
from schemas.structs import OutRecord
from schemas.topics import TopicNames


def unprocessable(_record: object, exc: Exception) -> OutRecord:
    raise AssertionError(f"no record is processed here: {exc!r}")


async def test_the_committer_ends_when_cancelled_just_as_its_lag_export_finishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "COMMIT_INTERVAL", 0.01)
    runtime = DeliveryRuntime(
        settings=Settings.from_env({}),
        topics=TopicNames(prefix="t."),
        senders={},
        unprocessable=unprocessable,
        metrics=Metrics(),
    )
    exporting = asyncio.Event()
    given_up = False

    async def commit() -> None:
        if given_up:
            raise RuntimeError("the test gave up on the committer")

    async def export_lag() -> None:
        exporting.set()
        await asyncio.sleep(0)  # finishes in the loop turn the cancellation comes in

    monkeypatch.setattr(runtime, "_commit", commit)
    monkeypatch.setattr(runtime, "_export_lag", export_lag)
    committer = asyncio.create_task(runtime._commit_periodically())
    try:
        await exporting.wait()
        committer.cancel()
        # A failure bound, not a wait: a cancelled committer ends in the next loop turns.
        await asyncio.wait({committer}, timeout=2)
        assert committer.cancelled()
    finally:
        given_up = True
        await asyncio.gather(committer, return_exceptions=True)
