"""The Faust/aiokafka patches against the real classes they patch, not stand-ins.

A Faust or aiokafka upgrade that renames or reshapes a patched internal must stop the worker
at ``install()``; these tests are what notices first, on the versions installed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from pipeline.kafka import fetch_snapshot, isolation, resume_order, rewind
from pipeline.kafka.patching import PatchTargetError, require_instance_attribute


@dataclass(frozen=True)
class Patch:
    module: ModuleType
    owner: type
    target: str
    # The patched method and the library's original, looked up after install().
    replacement: Callable[[], Any]
    original: Callable[[], Any]
    # The parameters the patch passes on, in order.
    passes: tuple[str, ...]

    def __str__(self) -> str:
        return self.module.__name__.rsplit(".", 1)[-1]


PATCHES = [
    Patch(
        rewind,
        AIOKafkaConsumerThread,
        "seek_to_committed",
        lambda: rewind._seek_to_committed_or_beginning,
        lambda: rewind._original,
        ("self",),
    ),
    Patch(
        fetch_snapshot,
        AIOKafkaConsumerThread,
        "_fetch_records",
        lambda: fetch_snapshot._fetch_snapshot,
        lambda: fetch_snapshot._original,
        ("self", "consumer", "active_partitions", "timeout", "max_records"),
    ),
    Patch(
        isolation,
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        lambda: isolation._create_read_committed_consumer,
        lambda: isolation._original,
        ("self", "transport"),
    ),
    Patch(
        resume_order,
        Recovery,
        "on_recovery_completed",
        lambda: resume_order._patched["on_recovery_completed"],
        lambda: resume_order._originals["on_recovery_completed"],
        ("self", "generation_id"),
    ),
    Patch(
        resume_order,
        Recovery,
        "_resume_streams",
        lambda: resume_order._patched["_resume_streams"],
        lambda: resume_order._originals["_resume_streams"],
        ("self", "generation_id"),
    ),
]


def parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


@pytest.fixture(params=PATCHES, ids=str)
def patch(request: pytest.FixtureRequest) -> Patch:
    patch: Patch = request.param
    patch.module.install()
    return patch


def test_the_patch_is_installed_on_the_real_class(patch: Patch) -> None:
    assert vars(patch.owner)[patch.target] is patch.replacement()


def test_the_patch_takes_what_faust_passes_and_passes_it_on(patch: Patch) -> None:
    original = patch.original()

    assert parameters(original) == patch.passes
    assert parameters(patch.replacement()) == patch.passes
    assert inspect.iscoroutinefunction(patch.replacement()) == inspect.iscoroutinefunction(original)
    # The original is Faust's own method, not a patch wrapped again.
    assert original.__module__.startswith("faust.")
    assert original.__name__ == patch.target


def test_installing_twice_keeps_the_first_patch(patch: Patch) -> None:
    installed = patch.replacement()

    patch.module.install()

    assert vars(patch.owner)[patch.target] is installed


def test_a_missing_target_fails_install_loudly(
    patch: Patch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(patch.owner, patch.target)

    with pytest.raises(RuntimeError, match=patch.target):
        patch.module.install()


def test_a_reshaped_target_fails_install_loudly(
    patch: Patch, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def reshaped(self: Any, renamed: Any) -> None: ...

    monkeypatch.setattr(patch.owner, patch.target, reshaped)

    with pytest.raises(PatchTargetError, match="now takes"):
        patch.module.install()


def test_a_target_that_stops_being_a_coroutine_fails_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rewind.install()

    def synchronous(self: Any) -> None: ...

    monkeypatch.setattr(AIOKafkaConsumerThread, "seek_to_committed", synchronous)

    with pytest.raises(PatchTargetError, match="coroutine"):
        rewind.install()


def test_rewind_fails_install_when_a_helper_it_calls_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AIOKafkaConsumerThread, "seek_to_committed", rewind._original)
    monkeypatch.delattr(AIOKafkaConsumerThread, "_ensure_consumer")

    with pytest.raises(PatchTargetError, match="_ensure_consumer"):
        rewind.install()


async def test_aiokafka_keeps_the_isolation_level_where_the_patch_sets_it() -> None:
    # Built, not started: what Faust's _create_worker_consumer returns to the patch.
    consumer = AIOKafkaConsumer(bootstrap_servers="localhost:1")
    try:
        assert consumer._isolation_level == "read_uncommitted"
        require_instance_attribute(
            AIOKafkaConsumer,
            isolation.ISOLATION_ATTRIBUTE,
            set_in="__init__",
            read_in="start",
            patch="test",
        )
    finally:
        await consumer.stop()


def test_a_renamed_isolation_attribute_fails_the_check() -> None:
    with pytest.raises(PatchTargetError, match="_isolation_lvl"):
        require_instance_attribute(
            AIOKafkaConsumer, "_isolation_lvl", set_in="__init__", read_in="start", patch="test"
        )
