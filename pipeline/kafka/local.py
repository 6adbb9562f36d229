"""A real single-node Apache Kafka broker (KRaft) on loopback, fetched with Maven.

Used by ``clarion dev`` and by the test suite. The jars come from Maven Central through the
machine's ``mvn`` into a cache folder outside the repository; storage is formatted for one
combined broker/controller node; the broker dies with its parent process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import importlib.resources
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
_PR_SET_PDEATHSIG = 1


class LocalKafkaError(RuntimeError):
    """The local broker cannot be fetched or started; the message says what to do."""


def default_cache_dir() -> Path:
    base = os.environ.get("CLARION_KAFKA_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "clarion" / "kafka"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _java_major_version(java: str) -> int:
    result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
        [java, "-version"], capture_output=True, text=True, check=False, timeout=60
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise LocalKafkaError(f"could not read the Java version from `{java} -version`")
    major = int(match.group(1))
    # Java 8 and older report themselves as 1.x.
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(
            f"Java {MIN_JAVA}+ is needed to run the local Kafka broker and `java` is not on "
            "PATH; install a JDK (e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    major = _java_major_version(java)
    if major < MIN_JAVA:
        raise LocalKafkaError(f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, found Java {major}")
    return java


def fetch_kafka(cache_dir: Path | None = None, *, version: str = KAFKA_VERSION) -> Path:
    """Return the folder of broker jars, resolving them with Maven the first time."""
    libs = (cache_dir or default_cache_dir()) / version / "libs"
    complete = libs / ".complete"
    if complete.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "Maven is needed once to fetch the Kafka broker jars and `mvn` is not on PATH; "
            "install it (e.g. `apt-get install maven`)"
        )
    pom = importlib.resources.files("pipeline.kafka").joinpath("pom.xml")
    staging = libs.with_name(f"libs.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("fetching Apache Kafka %s with Maven into %s", version, libs)
    with importlib.resources.as_file(pom) as pom_path:
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom_path),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(
            f"Maven could not fetch org.apache.kafka:kafka_2.13:{version}:\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    (staging / ".complete").touch()
    # Another process may have won the race; its copy is as good as ours.
    if not complete.exists():
        shutil.rmtree(libs, ignore_errors=True)
        staging.replace(libs)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def _accepts_connections(port: int) -> bool:
    # A bare TCP probe first keeps aiokafka from logging a connection error per attempt.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL the broker when we die.
    # Linux means the thread that forked, not the process: start children on a thread that
    # lives as long as they should.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(kw_only=True)
class LocalKafka:
    """One KRaft node on 127.0.0.1: ``with LocalKafka(...) as kafka: kafka.bootstrap``."""

    data_dir: Path
    port: int = 0
    partitions: int = 8
    cache_dir: Path | None = None
    heap: str = "512m"
    start_timeout: float = 90.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    # Kept for a restart: the voter's address is part of the node's KRaft configuration.
    _controller_port: int = field(default=0, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._launch()
        try:
            asyncio.run(self._wait_until_ready())
        except BaseException:
            self.stop()
            raise

    async def restart(self) -> None:
        """Stop the broker as an operator would (SIGTERM, controlled shutdown) and start it
        again on the same ports and data: topics, offsets and transactions survive.

        A coroutine, for callers that keep clients running meanwhile. The new process is
        started on the calling thread, not in an executor: ``PR_SET_PDEATHSIG`` kills the
        broker when the *thread* that started it ends, and executor threads end.
        """
        await asyncio.to_thread(self.stop)
        self._launch()
        try:
            await self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> None:
        java = require_java()
        libs = fetch_kafka(self.cache_dir)
        if not self.port:
            self.port = free_port()
        if not self._controller_port:
            self._controller_port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dirs = self.data_dir / "logs"
        config = self._write_config(log_dirs, self._controller_port)
        log_config = importlib.resources.files("pipeline.kafka").joinpath("log4j2.properties")
        classpath = f"{libs}/*"
        if not (log_dirs / "meta.properties").exists():
            self._format(java, classpath, config)
        with importlib.resources.as_file(log_config) as log_config_path:
            argv = [
                java,
                f"-Xmx{self.heap}",
                "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={log_config_path}",
                f"-Dclarion.kafka.log={self.log_file}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ]
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
                argv,
                stdout=subprocess.DEVNULL,
                stderr=(self.data_dir / "broker.stderr").open("ab"),
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
                # Out of the terminal's process group: Ctrl-C stops the worker, which commits
                # and leaves its groups, and only then the broker (`clarion dev`); it dies with
                # its parent all the same.
                start_new_session=True,
            )

    def _write_config(self, log_dirs: Path, controller_port: int) -> Path:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dirs),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created explicitly with the configured partition count.
            "auto.create.topics.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return config

    def _format(self, java: str, classpath: str, config: Path) -> None:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                # One argument: an id starting with '-' would otherwise be read as an option.
                f"--cluster-id={cluster}",
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}"
            )

    async def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            process = self._process
            if process is not None and process.poll() is not None:
                raise LocalKafkaError(
                    f"the Kafka broker exited with code {process.returncode}; see {self.log_file}"
                )
            if not _accepts_connections(self.port):
                await asyncio.sleep(0.2)
                continue
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            try:
                await admin.start()
                await admin.describe_cluster()
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
            else:
                return
            finally:
                await admin.close()
            await asyncio.sleep(0.2)
        raise LocalKafkaError(
            f"the Kafka broker did not answer within {self.start_timeout:.0f}s "
            f"({last_error!r}); see {self.log_file}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
