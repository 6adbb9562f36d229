"""Session-wide fixtures: one real Apache Kafka broker for the whole test run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka.local import LocalKafka


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(data_dir=Path(tmp_path_factory.mktemp("kafka")))
    with broker:
        yield broker
