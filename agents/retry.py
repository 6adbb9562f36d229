"""A failed Delivery waits as a row of the timers table, due at its ``not_before``.

The sweep puts it back on its channel topic when it is due; nothing sleeps. The row is keyed
by notification id, so scheduling the same retry twice (a replay after a crash) changes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson

from agents.dispatch import millis
from schemas.structs import OutRecord, SourceMessage
from schemas.timestamps import parse_timestamp
from tables.timers import TimerTable, retry_key


def schedule_retry(
    timers: TimerTable, message: SourceMessage, clock: Callable[[], datetime]
) -> list[OutRecord]:
    """The timers row of the retry in ``message``, staged; raises on a malformed record."""
    delivery = orjson.loads(message.value or b"")
    not_before = parse_timestamp(delivery.get("not_before") or "")
    due = millis(not_before) if not_before else millis(clock())
    key = retry_key(delivery["user_id"], delivery["notification_id"])
    records = [timers.put(message.partition, key, {"due": due, "delivery": delivery})]
    timers.stage(message.partition, records)
    return records
