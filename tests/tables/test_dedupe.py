from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tables.dedupe import DedupeLedger
from tests.helpers.timers import TOPICS, commit, local_dedupe_table

P = 3


@pytest.fixture
def dedupe(tmp_path: Path) -> DedupeLedger:
    return DedupeLedger(table=local_dedupe_table(tmp_path / "dedupe"), window=100.0)


def remember(dedupe: DedupeLedger, event_id: str, source: tuple[int, int], now: float) -> None:
    records = dedupe.record(
        P, user_id="u", event_id=event_id, dedupe_key=None, source=source, now=now
    )
    dedupe.table.stage(P, records)


def test_first_event_is_not_a_duplicate_and_is_recorded_as_a_changelog_record(
    dedupe: DedupeLedger,
) -> None:
    check = dedupe.check(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 1), now=10.0)
    assert check is None
    records = dedupe.record(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 1), now=10.0)
    assert [(r.topic, r.partition, orjson.loads(r.value or b"")) for r in records] == [
        (TOPICS.dedupe_state, P, [10.0, P, 1])
    ]


def test_same_event_id_at_another_offset_is_a_duplicate_within_the_window(
    dedupe: DedupeLedger,
) -> None:
    remember(dedupe, "e", (P, 1), 10.0)
    duplicate = dedupe.check(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 2), now=50.0)
    assert duplicate is not None
    assert "event_id 'e'" in duplicate.reason


def test_replay_of_the_same_message_after_a_crash_is_not_a_duplicate_nor_rewritten(
    dedupe: DedupeLedger,
) -> None:
    remember(dedupe, "e", (P, 9), 10.0)
    assert (
        dedupe.check(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 9), now=11.0) is None
    )
    again = dedupe.record(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 9), now=11.0)
    assert again == []


def test_dedupe_key_collapses_different_event_ids_for_the_same_user_only(
    dedupe: DedupeLedger,
) -> None:
    records = dedupe.record(
        P, user_id="u", event_id="e1", dedupe_key="order-1", source=(P, 1), now=10.0
    )
    dedupe.table.stage(P, records)
    duplicate = dedupe.check(
        P, user_id="u", event_id="e2", dedupe_key="order-1", source=(P, 2), now=11.0
    )
    assert duplicate is not None
    assert "dedupe_key 'order-1'" in duplicate.reason
    other = dedupe.check(
        P, user_id="v", event_id="e2", dedupe_key="order-1", source=(P, 3), now=11.0
    )
    assert other is None


def test_entries_expire_after_the_window(dedupe: DedupeLedger) -> None:
    remember(dedupe, "e", (P, 1), 10.0)
    late = dedupe.check(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 2), now=109.9)
    assert late is not None
    assert (
        dedupe.check(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 2), now=110.0)
        is None
    )


def test_expired_finds_only_entries_past_the_window_through_the_index(
    dedupe: DedupeLedger,
) -> None:
    for event_id, offset, seen in (("old", 1, 10.0), ("new", 2, 95.0)):
        records = dedupe.record(
            P, user_id="u", event_id=event_id, dedupe_key=None, source=(P, offset), now=seen
        )
        commit(dedupe.table, P, records)  # the index follows committed writes
    deletions = dedupe.expired(P, now=120.0)
    assert [(r.key, r.value) for r in deletions] == [(b"u\x1fe\x1fold", None)]
    commit(dedupe.table, P, deletions)
    assert dedupe.expired(P, now=120.0) == []
    assert dedupe.check(P, user_id="u", event_id="new", dedupe_key=None, source=(P, 9), now=120.0)


def test_an_entry_renewed_since_it_was_indexed_is_not_expired(dedupe: DedupeLedger) -> None:
    records = dedupe.record(P, user_id="u", event_id="e", dedupe_key=None, source=(P, 1), now=10.0)
    commit(dedupe.table, P, records)
    # Replayed from another offset after expiry: a new first-seen, pending in the overlay.
    remember(dedupe, "e", (P, 5), 115.0)
    assert dedupe.expired(P, now=120.0) == []
