"""Shared fixtures: one real Apache Kafka broker per run, one isolated deployment per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka.local import LocalKafka
from tests.helpers.deployment import Pipeline, deployment


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(data_dir=Path(tmp_path_factory.mktemp("kafka")))
    with broker:
        yield broker


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    # Kept on the item so fixtures can tell, at teardown, that the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def pipeline(
    kafka: LocalKafka, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """Topics of its own on the shared broker; workers started by the test stop after it."""
    deployed = deployment(kafka, tmp_path)
    started = next(deployed)
    yield started
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        # Printed at teardown, so CI shows what the workers said about a failure.
        for worker in started.workers:
            worker.dump_tasks()
            print(f"--- {worker.data_dir.name} log (tail) ---\n{worker.log(tail=60_000)}")
    next(deployed, None)
