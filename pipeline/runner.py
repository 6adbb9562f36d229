"""Start a worker (and, for ``clarion dev``, the local broker it talks to)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import gc
import logging
import os
import threading
from pathlib import Path

import faust

from agents.delivery.providers.config import ProvidersConfig
from pipeline.app import create_app, topic_specs
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.local import LocalKafka, fetch_kafka
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Run one worker until it is stopped (SIGINT/SIGTERM); topics are created first."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Faust creates only the last level of its data directory.
    (settings.data_dir / "tables").mkdir(parents=True, exist_ok=True)
    clarion = create_app(settings)
    # Every topic exists before the worker joins its groups.
    loop.run_until_complete(
        ensure_topics(
            settings.bootstrap_servers,
            topic_specs(settings),
            client_options=settings.kafka_options,
        )
    )
    # At warning level faust turns on its spinner, which sets the root logger to DEBUG and
    # costs a quarter of the throughput in logging; info is both cheaper and more useful.
    # Plain stdout: the dev sinks print what they receive, and those lines are not log records.
    worker = faust.Worker(
        clarion.app, loglevel=settings.log_level, loop=loop, redirect_stdouts=False
    )
    _tune_garbage_collector()
    worker.execute_from_commandline()


def _tune_garbage_collector() -> None:
    """Fewer, cheaper collections: the hot path allocates fast (records, dicts per event) and
    reference counting frees nearly all of it; the cycle collector's full passes over the
    long-lived heap (cached preferences, modules) were 7 % of a routing worker's time, one of
    them 0.3 s (py-spy --native on ``clarion bench route``)."""
    gc.freeze()  # what start-up built is never garbage: out of every collection
    gc.set_threshold(50_000, 50, 100)


def start_dev_sinks_thread(*, quiet: bool = False, ephemeral: bool = False) -> dict[str, str]:
    """Local SMTP/Twilio/FCM/webhook sinks on a thread of their own; the provider variables.

    A thread, not the worker's loop: Faust owns that loop and its shutdown. ``quiet`` stops
    them printing each message; ``ephemeral`` takes free ports instead of the usual ones.
    """
    from pipeline.devsinks.run import (  # noqa: PLC0415 - dev only
        DevSinkPorts,
        echo_to_stdout,
        start_dev_sinks,
    )

    # aiosmtpd logs every SMTP command at info level; the sink prints one line per message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[dict[str, str]] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            sinks = loop.run_until_complete(
                start_dev_sinks(
                    ports=DevSinkPorts.ephemeral() if ephemeral else None,
                    echo=None if quiet else echo_to_stdout,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            ready.set_exception(exc)
            return
        ready.set_result(sinks.provider_env())
        loop.run_forever()

    threading.Thread(target=serve, name="clarion-dev-sinks", daemon=True).start()
    return ready.result(timeout=30)


def run_dev(settings: Settings) -> None:
    """A local Apache Kafka broker, provider sinks and one worker; Ctrl-C stops them all."""
    kafka = LocalKafka(data_dir=Path(settings.data_dir) / "kafka", port=settings.dev_kafka_port)
    print("resolving the Apache Kafka broker jars (Maven, first run only) ...", flush=True)  # noqa: T201
    print(f"broker jars in {fetch_kafka()}", flush=True)  # noqa: T201
    print(f"starting Apache Kafka on {kafka.bootstrap} (data in {kafka.data_dir}) ...", flush=True)  # noqa: T201
    sink_env = start_dev_sinks_thread()
    print(  # noqa: T201
        f"provider sinks: SMTP {sink_env['CLARION_SMTP_HOST']}:{sink_env['CLARION_SMTP_PORT']}, "
        f"Twilio {sink_env['CLARION_TWILIO_BASE_URL']}, FCM {sink_env['CLARION_FCM_BASE_URL']}; "
        "what they receive is printed here",
        flush=True,
    )
    # The user's own provider variables win over the sinks'.
    providers = ProvidersConfig.from_env({**sink_env, **os.environ})
    with kafka:
        print(  # noqa: T201
            f"Kafka ready. Worker web on http://{settings.web_host}:{settings.web_port}/health; "
            "send events with `clarion send`. Ctrl-C stops everything.",
            flush=True,
        )
        # Faust's worker exits through SystemExit; the broker must still be stopped after it.
        with contextlib.suppress(SystemExit):
            run_worker(
                dataclasses.replace(
                    settings, broker=f"kafka://{kafka.bootstrap}", providers=providers
                )
            )
