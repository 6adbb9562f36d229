"""The ``clarion`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.delivery.providers.config import ProviderConfigError
from pipeline.kafka.local import LocalKafkaError, fetch_kafka
from pipeline.settings import Settings, SettingsError
from pipeline.web.auth import ApiKeys
from schemas.topics import TopicNames
from schemas.validation import HoldHorizon, Invalid, encode_decoded, parse_event, parse_preferences

# Default sizes of the benches that run a whole pipeline or several workers: each finishes
# within 5 minutes on the 2-core machine (the pipeline bench took 6m50s at 200,000 events,
# 557 events/s); --events 200000 or 1000000 shows how the cost grows with the work.
PIPELINE_EVENTS = 100_000
SCALE_EVENTS = 100_000
# Issue 11's operator scenario: 20,000 events over 75 s to 2,000 users.
FAULTS_EVENTS = 20_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clarion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="local Kafka broker + topics + one worker; Ctrl-C stops all")
    worker = commands.add_parser("worker", help="one worker against CLARION_BROKER")
    worker.add_argument(
        "--roles",
        help="what this worker runs: route, deliver:email, deliver:sms, deliver:push, "
        "deliver:webhook, deliver (every channel); comma-separated; default all "
        "(CLARION_ROLES)",
    )

    send = commands.add_parser("send", help="publish events (JSON argument, or stdin)")
    send.add_argument(
        "json",
        nargs="?",
        help="an event, a JSON array of events or JSON lines; '-' or nothing reads stdin",
    )
    send.add_argument("--preferences", action="store_true", help="publish UserPreferences instead")
    send.add_argument("--delete-user", metavar="USER_ID", help="publish a preferences tombstone")
    send.add_argument(
        "--no-validate", action="store_true", help="send even what Clarion would reject"
    )

    tail = commands.add_parser("tail", help="print committed records of topics (Ctrl-C stops)")
    tail.add_argument("topics", nargs="+", help="e.g. clarion.deliver.email clarion.status")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=int, default=0, help="stop after this many records")

    dlq = commands.add_parser("dlq", help="dead letters: list them, or replay them")
    dlq_actions = dlq.add_subparsers(dest="dlq_action", required=True)
    dlq_actions.add_parser("list", help="print every dead letter, one per line")
    replay = dlq_actions.add_parser("replay", help="publish dead letters to their channel again")
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", action="append", metavar="NOTIFICATION_ID", help="repeatable")
    chosen.add_argument("--all", action="store_true", help="every dead letter on the topic")

    commands.add_parser(
        "upgrade-state",
        help="copy status histories and inboxes out of the Faust tables of versions before "
        "the store runtime; run once, with every worker stopped, before starting the new one",
    )

    kafka = commands.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["fetch"], help="fetch the broker jars with Maven")

    bench = commands.add_parser(
        "bench", help="benchmarks against a fresh local broker (mime: no broker)"
    )
    bench.add_argument(
        "scenario",
        choices=["route", "pipeline", "scale", "digest", "delivery", "latency", "faults", "mime"],
    )
    bench.add_argument(
        "--events",
        type=int,
        default=None,
        help=f"events (route, digest: 200,000; pipeline: {PIPELINE_EVENTS:,}; scale: "
        f"{SCALE_EVENTS:,}; faults: {FAULTS_EVENTS:,}), deliveries (delivery: 20,000) or "
        "email messages per round (mime: 2,000)",
    )
    bench.add_argument("--users", type=int, default=None, help="10,000 (faults: 2,000)")
    bench.add_argument(
        "--windows", type=int, default=3, help="digest windows the events span (digest only)"
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=None,
        help="delivery: webhook rate limit of the second run, per second (200; 0 skips it); "
        "latency: critical events per second (1,000)",
    )
    bench.add_argument(
        "--backlog", type=int, default=50_000, help="low events published first (latency only)"
    )
    bench.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length of the critical stream (latency: 30) or of the event stream (faults: 75)",
    )
    return parser


def _read_values(text: str) -> list[object]:
    text = text.strip()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return value if isinstance(value, list) else [value]


async def _send(settings: Settings, values: list[object], *, preferences: bool) -> None:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - keep `clarion --help` fast

    topics = TopicNames(prefix=settings.topic_prefix)
    topic = topics.preferences if preferences else topics.events
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for value in values:
            user_id = value.get("user_id") if isinstance(value, dict) else None
            key = str(user_id).encode() if user_id is not None else None
            payload = None if value is None else orjson.dumps(value)
            metadata = await producer.send_and_wait(topic, payload, key=key)
            label = value.get("event_id", user_id) if isinstance(value, dict) else user_id
            print(f"sent {label} to {topic}[{metadata.partition}]@{metadata.offset}")
    finally:
        await producer.stop()


async def _tail(settings: Settings, args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

    consumer = AIOKafkaConsumer(
        *args.topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        # Only what the pipeline committed: aborted attempts of a crashed worker stay hidden.
        isolation_level="read_committed",
    )
    await consumer.start()
    shown = 0
    try:
        async for record in consumer:
            key = record.key.decode("utf-8", "replace") if record.key else None
            value = record.value.decode("utf-8", "replace") if record.value else None
            print(f"{record.topic}[{record.partition}]@{record.offset} {key}\t{value}", flush=True)
            shown += 1
            if args.max and shown >= args.max:
                break
    finally:
        await consumer.stop()


async def _command_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.dlq import read_dead_letters, replay  # noqa: PLC0415 - aiokafka is slow to load

    letters = await read_dead_letters(settings)
    if args.dlq_action == "list":
        for letter in letters:
            print(letter.summary())
        print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        return 0
    chosen = (
        letters
        if args.all
        else [letter for letter in letters if letter.notification_id in set(args.id)]
    )
    missing = set() if args.all else set(args.id) - {letter.notification_id for letter in chosen}
    for notification_id in sorted(missing):
        print(f"no dead letter with notification_id {notification_id}", file=sys.stderr)
    replayed = await replay(settings, chosen)
    for letter in replayed:
        print(f"replayed {letter.notification_id} to {letter.value.get('channel')}")
    return 1 if missing else 0


def _command_send(settings: Settings, args: argparse.Namespace) -> int:
    if args.delete_user:
        from aiokafka import AIOKafkaProducer  # noqa: PLC0415

        async def tombstone() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
            await producer.start()
            try:
                topic = TopicNames(prefix=settings.topic_prefix).preferences
                await producer.send_and_wait(topic, None, key=args.delete_user.encode())
            finally:
                await producer.stop()
            print(f"deleted preferences of {args.delete_user}")

        asyncio.run(tombstone())
        return 0
    text = sys.stdin.read() if args.json in (None, "-") else args.json
    try:
        values = _read_values(text)
    except orjson.JSONDecodeError as exc:
        print(f"not JSON: {exc}", file=sys.stderr)
        return 2
    if not args.no_validate:
        reasons = [
            f"item {index}: {result.reason}"
            for index, value in enumerate(values)
            if isinstance(
                result := _validate(value, settings, preferences=args.preferences), Invalid
            )
        ]
        if reasons:
            print("\n".join(reasons), file=sys.stderr)
            print("nothing sent (use --no-validate to send anyway)", file=sys.stderr)
            return 2
    asyncio.run(_send(settings, values, preferences=args.preferences))
    return 0


def _validate(value: Any, settings: Settings, *, preferences: bool) -> object:
    """The parsed record, or :class:`Invalid` with the reasons the pipeline would give."""
    raw = encode_decoded(value, what="preferences" if preferences else "event")
    if isinstance(raw, Invalid):
        return raw
    if preferences:
        return parse_preferences(raw, max_bytes=settings.max_event_bytes)
    horizon = HoldHorizon(now=datetime.now(UTC), max_hold=settings.max_hold)
    return parse_event(raw, max_bytes=settings.max_event_bytes, horizon=horizon)


def _command_bench(settings: Settings, args: argparse.Namespace) -> None:
    # Each scenario imported on its own: they pull in aiokafka and the dev sinks.
    events = args.events or 200_000
    faults = args.scenario == "faults"
    if args.users is None:
        args.users = 2_000 if faults else 10_000
    if args.seconds is None:
        args.seconds = 75.0 if faults else 30.0
    if args.scenario == "mime":
        from bench.mime import run_mime_bench  # noqa: PLC0415

        run_mime_bench(messages=args.events or 2_000, rounds=5)
    elif args.scenario == "delivery":
        from bench.delivery import run_delivery_bench  # noqa: PLC0415

        rate = 200.0 if args.rate is None else args.rate
        run_delivery_bench(settings, deliveries=args.events or 20_000, rate=rate or None)
    elif args.scenario == "latency":
        from bench.latency import run_latency_bench  # noqa: PLC0415

        run_latency_bench(
            settings,
            backlog=args.backlog,
            users=args.users,
            rate=args.rate or 1000.0,
            seconds=args.seconds,
        )
    elif args.scenario == "pipeline":
        from bench.pipeline import run_pipeline_bench  # noqa: PLC0415

        run_pipeline_bench(settings, events=args.events or PIPELINE_EVENTS, users=args.users)
    elif args.scenario == "scale":
        from bench.scale import run_scale_bench  # noqa: PLC0415

        run_scale_bench(settings, events=args.events or SCALE_EVENTS, users=args.users)
    elif faults:
        from bench.faults import run_faults_bench  # noqa: PLC0415

        run_faults_bench(
            settings, events=args.events or FAULTS_EVENTS, users=args.users, seconds=args.seconds
        )
    elif args.scenario == "digest":
        from bench.digest import run_digest_bench  # noqa: PLC0415

        run_digest_bench(settings, events=events, users=args.users, windows=args.windows)
    else:
        from bench.route import run_route_bench  # noqa: PLC0415

        run_route_bench(settings, events=events, users=args.users)


def _command_upgrade_state(settings: Settings) -> int:
    from pipeline.upgrade import run_upgrade_state  # noqa: PLC0415 - faust is slow to import

    # The command's own lines say what failed; aiokafka's connection retries would bury them.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return run_upgrade_state(settings, out=sys.stdout, err=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        env = dict(os.environ)
        if getattr(args, "roles", None):
            env["CLARION_ROLES"] = args.roles
        settings = Settings.from_env(env)
        ApiKeys.parse(settings.api_keys)  # refused here rather than by a starting worker
    except (SettingsError, ProviderConfigError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "dev":
            from pipeline.runner import run_dev  # noqa: PLC0415 - faust is slow to import

            run_dev(settings)
        elif args.command == "worker":
            from pipeline.runner import run_worker  # noqa: PLC0415

            run_worker(settings)
        elif args.command == "send":
            return _command_send(settings, args)
        elif args.command == "tail":
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_tail(settings, args))
        elif args.command == "kafka":
            print(fetch_kafka())
        elif args.command == "dlq":
            return asyncio.run(_command_dlq(settings, args))
        elif args.command == "bench":
            _command_bench(settings, args)
        elif args.command == "upgrade-state":
            return _command_upgrade_state(settings)
    except LocalKafkaError as exc:
        print(f"local Kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
