"""A Clarion worker in its own process, as ``clarion worker`` runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.kafka.local import die_with_parent, free_port


@dataclass
class WorkerProcess:
    bootstrap: str
    data_dir: Path
    prefix: str
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CLARION_BROKER": f"kafka://{self.bootstrap}",
            "CLARION_TOPIC_PREFIX": self.prefix,
            "CLARION_APP_ID": self.prefix.rstrip("."),
            "CLARION_PARTITIONS": str(self.partitions),
            "CLARION_DATA_DIR": str(self.data_dir),
            "CLARION_WEB_PORT": str(self.web_port),
            # No provider listens unless a test starts one: failed attempts must not come
            # back onto the channel topics in the middle of a routing test.
            "CLARION_RETRY_BACKOFF": "3600",
            **self.extra_env,
        }

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A worker outliving an interrupted test run would spin against a dead broker.
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.web_port}/health"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)  # polling interval of the deadline loop, not synchronisation
        raise AssertionError(f"worker not healthy after {timeout}s:\n{self.log()}")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "worker.log"

    def log(self, tail: int = 5000) -> str:
        path = self.log_path
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def dump_tasks(self, timeout: float = 10.0) -> None:
        """Have the worker log the stack of every thread and asyncio task (mode's SIGUSR1)."""
        if self.process is None or self.process.poll() is not None:
            return
        with self.log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            self.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + timeout
            written = b""
            while time.monotonic() < deadline and b"TASKS" not in written:
                time.sleep(0.1)  # polling interval of the deadline loop, not synchronisation
                written += log.read()

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
