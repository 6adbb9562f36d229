"""Each notification's status history, from the status records of ``clarion.status``.

Clarion writes every status change as a record (the contract's audit log); this core folds
them into the history the web views show (tables.status_history), in the checkpoint of the
record that changed it (pipeline/runtime/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.structs import OutRecord, SourceMessage
from tables.status_history import StatusHistories


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusRecorder:
    histories: StatusHistories

    def process(self, message: SourceMessage) -> list[OutRecord]:
        return self.histories.append(message.partition, orjson.loads(message.value or b""))
