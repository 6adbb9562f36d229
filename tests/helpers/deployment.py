"""One isolated Clarion deployment on the shared broker: its topics, workers and readers."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.kafka.local import LocalKafka
from schemas.topics import TopicNames
from tests.helpers.kafka import TopicReader
from tests.helpers.worker import WorkerProcess

PARTITIONS = 4
_counter = itertools.count()


@dataclass
class Pipeline:
    """One isolated Clarion deployment on the shared broker."""

    bootstrap: str
    prefix: str
    data_dir: Path
    workers: list[WorkerProcess]

    @property
    def topics(self) -> TopicNames:
        return TopicNames(prefix=self.prefix)

    @property
    def app_id(self) -> str:
        """CLARION_APP_ID of the test workers (tests/helpers/worker.py)."""
        return self.prefix.rstrip(".")

    def worker(self, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(
            bootstrap=self.bootstrap,
            data_dir=self.data_dir / f"worker-{len(self.workers)}",
            prefix=self.prefix,
            partitions=PARTITIONS,
            extra_env=extra_env,
        )
        self.workers.append(worker)
        return worker

    def reader(self, *topics: str) -> TopicReader:
        return TopicReader(self.bootstrap, topics)


def deployment(kafka: LocalKafka, tmp_path: Path) -> Iterator[Pipeline]:
    prefix = f"t{next(_counter)}{uuid.uuid4().hex[:6]}."
    deployment = Pipeline(bootstrap=kafka.bootstrap, prefix=prefix, data_dir=tmp_path, workers=[])
    try:
        yield deployment
    finally:
        for worker in deployment.workers:
            worker.stop()
