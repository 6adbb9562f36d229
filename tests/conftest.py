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


@pytest.fixture
def pipeline(kafka: LocalKafka, tmp_path: Path) -> Iterator[Pipeline]:
    """Topics of its own on the shared broker; workers started by the test stop after it."""
    yield from deployment(kafka, tmp_path)
