"""Named Clarion workers of one bench, each a ``clarion worker`` process of its own.

A bench that starts, kills and stops several workers needs each one's data directory and log
apart (a second worker on the first one's RocksDB folder would not start) and needs to know
when one is ready, on its own web port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.harness import APP_ID, PARTITIONS, PREFIX, BenchBroker
from pipeline.kafka.local import die_with_parent, free_port

# How long a worker told to stop (SIGTERM) may take: its delivery runtime waits up to 30 s
# for the attempts in flight before it commits and leaves the group.
STOP_TIMEOUT_S = 60.0
DUMP_TIMEOUT_S = 10.0
_READY_POLL_S = 0.2  # polling interval of the deadline loop in wait_ready


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path

    @classmethod
    def start(cls, broker: BenchBroker, name: str, env: Mapping[str, str]) -> Worker:
        """Start ``clarion worker`` with ``env`` (provider settings) on top of the bench's."""
        web_port = free_port()
        log_path = broker.workdir / f"{name}.log"
        full_env = {
            **os.environ,
            "CLARION_BROKER": broker.settings.broker,
            "CLARION_PARTITIONS": str(PARTITIONS),
            "CLARION_TOPIC_PREFIX": PREFIX,
            "CLARION_APP_ID": APP_ID,
            "CLARION_DATA_DIR": str(broker.workdir / name),
            "CLARION_WEB_PORT": str(web_port),
            **env,
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker"],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # An interrupted bench must not leave a worker spinning against a dead broker.
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        return cls(name=name, process=process, web_port=web_port, log_path=log_path)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_ready(self, within: float) -> float:
        """Wait until ``/ready`` answers 200 (runtimes started, state recovered); return the
        ``perf_counter`` time it did. ``RuntimeError`` if the worker exits first,
        ``TimeoutError`` after ``within`` seconds."""
        url = f"http://127.0.0.1:{self.web_port}/ready"
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.timeout(within):
            while True:
                if not self.alive:
                    raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}")
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return time.perf_counter()
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not listening yet, or busy starting
                await asyncio.sleep(_READY_POLL_S)

    def kill(self) -> float:
        """SIGKILL: no flush, no commit, no goodbye. Returns the time it was sent."""
        at = time.perf_counter()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        return at

    async def terminate(self) -> float:
        """SIGTERM, and wait for the worker to finish its graceful stop (in a thread, so the
        bench's loop keeps observing meanwhile). Returns the time the signal was sent."""
        at = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(
                f"worker {self.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; its tasks' "
                "stacks are in its log; killing it",
                flush=True,
            )
            await self._dump_tasks()
            self.kill()
        return at

    async def _dump_tasks(self) -> None:
        """Have the worker log the stack of every thread and asyncio task (mode's SIGUSR1)."""
        with self.log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            self.process.send_signal(signal.SIGUSR1)
            written = b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DUMP_TIMEOUT_S):
                    while b"TASKS" not in written:
                        await asyncio.sleep(_READY_POLL_S)  # polling interval of the deadline
                        written += log.read()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]
