from __future__ import annotations

from typing import Any

from pipeline.kafka.resume_order import resuming_partitions_last


class Consumer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def resume_partitions(self, tps: Any) -> None:
        self.log.append(f"resume {sorted(tps)}")


class App:
    def __init__(self, consumer: Consumer, generation: int) -> None:
        self.consumer = consumer
        self.consumer_generation_id = generation


class Recovery:
    def __init__(self, app: App) -> None:
        self.app = app


async def faust_step(self: Recovery, generation_id: int = 0) -> None:
    """What Faust's recovery does: resume, seek, then clear the stream buffers."""
    self.app.consumer.resume_partitions({"events-0", "events-1"})
    self.app.consumer.log.append("seek")
    self.app.consumer.log.append("clear buffers")


async def test_partitions_are_resumed_after_the_buffers_are_cleared() -> None:
    log: list[str] = []
    recovery = Recovery(App(Consumer(log), generation=3))

    await resuming_partitions_last(faust_step)(recovery, 3)

    assert log == ["seek", "clear buffers", "resume ['events-0', 'events-1']"]


async def test_nothing_is_resumed_when_a_new_rebalance_began_meanwhile() -> None:
    log: list[str] = []
    recovery = Recovery(App(Consumer(log), generation=4))

    await resuming_partitions_last(faust_step)(recovery, 3)

    assert log == ["seek", "clear buffers"]


async def test_the_consumer_resumes_directly_again_afterwards() -> None:
    log: list[str] = []
    consumer = Consumer(log)
    await resuming_partitions_last(faust_step)(Recovery(App(consumer, generation=3)), 3)

    consumer.resume_partitions({"status-0"})

    assert log[-1] == "resume ['status-0']"
