"""Start a worker (and, for ``clarion dev``, the local broker it talks to)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path

import faust

from pipeline.app import create_app, topic_specs
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.local import LocalKafka, fetch_kafka
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Run one worker until it is stopped (SIGINT/SIGTERM); topics are created first."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        ensure_topics(
            settings.bootstrap_servers, topic_specs(settings), client_options=settings.kafka_options
        )
    )
    # Faust creates only the last level of its data directory.
    (settings.data_dir / "tables").mkdir(parents=True, exist_ok=True)
    clarion = create_app(settings)
    # At warning level faust turns on its spinner, which sets the root logger to DEBUG and
    # costs a quarter of the throughput in logging; info is both cheaper and more useful.
    worker = faust.Worker(clarion.app, loglevel=settings.log_level, loop=loop)
    worker.execute_from_commandline()


def run_dev(settings: Settings) -> None:
    """A local Apache Kafka broker plus one worker; Ctrl-C stops both."""
    kafka = LocalKafka(data_dir=Path(settings.data_dir) / "kafka", port=settings.dev_kafka_port)
    print("resolving the Apache Kafka broker jars (Maven, first run only) ...", flush=True)  # noqa: T201
    print(f"broker jars in {fetch_kafka()}", flush=True)  # noqa: T201
    print(f"starting Apache Kafka on {kafka.bootstrap} (data in {kafka.data_dir}) ...", flush=True)  # noqa: T201
    with kafka:
        print(  # noqa: T201
            f"Kafka ready. Worker web on http://{settings.web_host}:{settings.web_port}/health; "
            "send events with `clarion send`. Ctrl-C stops everything.",
            flush=True,
        )
        # Faust's worker exits through SystemExit; the broker must still be stopped after it.
        with contextlib.suppress(SystemExit):
            run_worker(dataclasses.replace(settings, broker=f"kafka://{kafka.bootstrap}"))
