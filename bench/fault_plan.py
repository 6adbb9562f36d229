"""The operator's sequence of the faults bench, played against the running stream.

Issue 11's sequence: worker A; B joins; A SIGKILLed; C joins; the broker restarted; B
SIGKILLed; D joins; then C stopped gracefully (SIGTERM), which leaves D alone: the graceful
handover the issue's "0 provider duplicates across a graceful rebalance" is about.

Each step has a window in the stream (shares of its length): it starts no earlier than
``at``, once the changes before it have settled (a joining worker ready and every partition
served since; every partition served again after a kill, the restart or a stop), and no
later than ``latest`` whether they have or not, so that every change still has traffic to
be measured against, however slow the one before it was. D joins right after B's death
without waiting, while B's session has not expired yet, as in the issue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient

from bench.fault_figures import Kill
from bench.harness import BenchBroker
from bench.observed import Stream
from bench.workers import Worker
from pipeline.kafka.local import LocalKafka

Kind = Literal["join", "kill", "restart", "stop"]
# Whether every partition progressed at or after a time (bench/faults.py reads the sink
# and the channel topics for it).
ServedSince = Callable[[float], Awaitable[bool]]

# A failure bound for a joining worker, never waited out when things go well.
READY_ALLOWANCE_S = 180.0
_POLL_S = 0.5  # polling interval of the settle loop


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    kind: Kind
    worker: str | None
    at: float  # shares of the stream's length
    latest: float | None  # None: no waiting for the changes before it


PLAN = (
    Step("B joins", "join", "B", 0.03, None),
    Step("A SIGKILLed", "kill", "A", 0.12, 0.20),
    Step("C joins", "join", "C", 0.30, 0.34),
    Step("broker restarted", "restart", None, 0.36, 0.45),
    Step("B SIGKILLed", "kill", "B", 0.66, 0.76),
    Step("D joins", "join", "D", 0.0, None),  # at once after B's death
    Step("C stopped (SIGTERM)", "stop", "C", 0.86, 0.90),
)
FIRST_WORKER = "A"


@dataclass
class Done:
    """A step as it happened (``perf_counter`` times)."""

    step: Step
    at: float
    # From when every partition must have progressed for the change to have settled: the
    # kill or the signal, the broker's answer after the restart, the join's readiness.
    since: float | None = None
    notes: list[str] = field(default_factory=list)
    over: bool = False  # a join that never became ready will not settle
    target_gone: bool = False  # the worker to kill or stop had exited already


@dataclass
class Scenario:
    broker: BenchBroker
    kafka: LocalKafka
    worker_env: dict[str, str]
    stream: Stream
    seconds: float
    served_since: ServedSince
    workers: dict[str, Worker] = field(default_factory=dict)
    done: list[Done] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    # Workers found dead by the step meant to end them.
    early_exits: list[str] = field(default_factory=list)
    # Joins waiting to be ready, stops waiting for their worker to exit.
    pending: list[asyncio.Task[None]] = field(default_factory=list)

    async def play(self, plan: tuple[Step, ...] = PLAN) -> None:
        await self.stream.running.wait()
        for step in plan:
            await self._until(step.at)  # the plan's schedule
            waited = ""
            if step.latest is not None:
                waited = await self._settle(self.stream.started + step.latest * self.seconds)
            done = await self._do(step)
            if waited:
                done.notes.append(f"went ahead unsettled: {waited}")
            self.done.append(done)

    async def _until(self, share: float) -> None:
        due = self.stream.started + share * self.seconds
        await asyncio.sleep(max(0.0, due - time.perf_counter()))

    async def _settle(self, before: float) -> str:
        """Wait until every change so far settled, or until ``before``; what had not."""
        while True:
            unsettled = [d.step.label for d in self.done if not await self._settled(d)]
            if not unsettled or time.perf_counter() >= before:
                return ", ".join(unsettled)
            await asyncio.sleep(min(_POLL_S, max(0.0, before - time.perf_counter())))

    async def _settled(self, done: Done) -> bool:
        if done.over:
            return True
        if done.since is None:
            return False  # a join not ready yet
        if await self.served_since(done.since):
            done.over = True  # settled stays settled: no need to look again
        return done.over

    async def _do(self, step: Step) -> Done:
        done = Done(step, time.perf_counter())
        if step.kind == "restart":
            await self.kafka.restart()
            done.since = time.perf_counter()
            done.notes.append(f"broker answered again after {done.since - done.at:.1f} s")
            return done
        assert step.worker is not None
        target = self.workers.get(step.worker)
        if target is not None and not target.alive:
            self.early_exits.append(f"{target.name} exited with {target.process.returncode}")
            done.notes.append(f"{target.name} had already exited: {target.process.returncode}")
            done.target_gone = True
        if step.kind == "join":
            worker = Worker.start(self.broker, step.worker, self.worker_env)
            self.workers[worker.name] = worker
            self.pending.append(asyncio.create_task(self._ready(worker, done)))
        elif step.kind == "stop":
            done.since = done.at
            self.pending.append(asyncio.create_task(self._stop(self.workers[step.worker], done)))
        else:
            done.at = done.since = self.workers[step.worker].kill()
            wall_at = time.time()  # after the kill returned: the worker is gone by then
            committed = await committed_offsets(self.broker, self.broker.topics.deliver("email"))
            self.kills.append(
                Kill(label=step.label, at=done.at, wall_at=wall_at, committed=committed)
            )
        return done

    async def _ready(self, worker: Worker, done: Done) -> None:
        try:
            done.since = await worker.wait_ready(READY_ALLOWANCE_S)
        except asyncio.CancelledError:
            done.notes.append(f"{worker.name} not ready yet when the bench ended")
            raise
        except (RuntimeError, TimeoutError) as exc:
            done.over = True
            done.notes.append(f"{worker.name} never ready ({exc or 'timed out'})")
        else:
            done.notes.append(f"{worker.name} ready after {done.since - done.at:.1f} s")

    async def _stop(self, worker: Worker, done: Done) -> None:
        await worker.terminate()
        done.notes.append(
            f"{worker.name} exited with {worker.process.returncode} after "
            f"{time.perf_counter() - done.at:.1f} s"
        )

    async def finish(self) -> None:
        """Stop waiting for joins to be ready and stops to be over."""
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)

    def alive(self) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.alive]

    def unexpected_exits(self) -> list[str]:
        """Workers that exited although no step ended them (or before it did)."""
        ended = {d.step.worker for d in self.done if d.step.kind in ("kill", "stop")}
        return self.early_exits + [
            f"{w.name} exited with {w.process.returncode}"
            for w in self.workers.values()
            if not w.alive and w.name not in ended
        ]


async def committed_offsets(broker: BenchBroker, topic: str) -> dict[int, int]:
    """The delivery runtime's committed offsets of ``topic``, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{broker.settings.group_id}.deliver")
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
