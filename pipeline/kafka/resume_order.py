"""Resume stream partitions only after Faust has cleared its stream buffers.

At the end of table recovery Faust resumes the stream partitions, seeks them to their
committed offsets, and then resumes flow control, which clears every stream's buffer. A
record fetched after the seek but before that clear is thrown away, while aiokafka's
position has already moved past it: nothing reads it again (seen as an event a worker
never routed after taking over its partition). Resuming the partitions after the clear
means every record fetched for them lands in an empty buffer and stays there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.tables.recovery import Recovery

from pipeline.kafka.patching import original_method

_PATCH = __name__
# The recovery steps that resume stream partitions, and the parameters this patch passes.
TARGETS = ("on_recovery_completed", "_resume_streams")
TARGET_PARAMETERS = ("self", "generation_id")

RecoveryStep = Callable[..., Awaitable[None]]


def resuming_partitions_last(original: RecoveryStep) -> RecoveryStep:
    """``original`` (a recovery step), with the partitions it resumes resumed after it."""

    async def resume_after_clear(self: Any, generation_id: int = 0) -> None:
        consumer: Any = self.app.consumer
        deferred: list[Any] = []

        def defer(tps: Iterable[Any]) -> None:
            deferred.extend(tps)

        # Shadowed on the instance for the duration of the call: the only partitions this
        # step resumes are the stream partitions.
        consumer.resume_partitions = defer
        try:
            await original(self, generation_id)
        finally:
            del consumer.resume_partitions
        if deferred and self.app.consumer_generation_id == generation_id:
            consumer.resume_partitions(deferred)

    resume_after_clear.__qualname__ = original.__qualname__
    return resume_after_clear


# Name → Faust's step and the patched one, filled by install().
_originals: dict[str, RecoveryStep] = {}
_patched: dict[str, RecoveryStep] = {}


def install() -> None:
    """Patch Faust's table recovery once per process (idempotent).

    Raises :class:`~pipeline.kafka.patching.PatchTargetError` when the Faust installed no
    longer has a step in the shape this patch wraps; then none is patched.
    """
    pending = [
        name
        for name in TARGETS
        if name not in _patched or vars(Recovery).get(name) is not _patched[name]
    ]
    # Every step checked before any is patched: a half-patched recovery is worse than none.
    originals = {
        name: original_method(
            Recovery, name, parameters=TARGET_PARAMETERS, coroutine=True, patch=_PATCH
        )
        for name in pending
    }
    for name, original in originals.items():
        _originals[name] = original
        _patched[name] = resuming_partitions_last(original)
        setattr(Recovery, name, _patched[name])
