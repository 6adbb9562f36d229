from __future__ import annotations

from typing import Any

from tables.dedupe import DedupeLedger, changelog_config, is_expired, prune_expired


def ledger(window: float = 100.0) -> tuple[DedupeLedger, dict[str, list[Any]]]:
    table: dict[str, list[Any]] = {}
    return DedupeLedger(table=table, window=window), table


def test_first_event_is_not_a_duplicate_and_is_recorded() -> None:
    dedupe, table = ledger()
    assert dedupe.check(user_id="u", event_id="e", dedupe_key=None, source=(0, 1), now=10.0) is None
    dedupe.record(user_id="u", event_id="e", dedupe_key=None, source=(0, 1), now=10.0)
    assert list(table.values()) == [[10.0, 0, 1]]


def test_same_event_id_at_another_offset_is_a_duplicate_within_the_window() -> None:
    dedupe, _ = ledger()
    dedupe.record(user_id="u", event_id="e", dedupe_key=None, source=(0, 1), now=10.0)
    duplicate = dedupe.check(user_id="u", event_id="e", dedupe_key=None, source=(0, 2), now=50.0)
    assert duplicate is not None
    assert "event_id 'e'" in duplicate.reason


def test_replay_of_the_same_message_after_a_crash_is_not_a_duplicate() -> None:
    dedupe, table = ledger()
    dedupe.record(user_id="u", event_id="e", dedupe_key="k", source=(3, 9), now=10.0)
    assert dedupe.check(user_id="u", event_id="e", dedupe_key="k", source=(3, 9), now=11.0) is None
    dedupe.record(user_id="u", event_id="e", dedupe_key="k", source=(3, 9), now=11.0)
    assert all(entry[0] == 10.0 for entry in table.values())


def test_dedupe_key_collapses_different_event_ids_for_the_same_user_only() -> None:
    dedupe, _ = ledger()
    dedupe.record(user_id="u", event_id="e1", dedupe_key="order-1", source=(0, 1), now=10.0)
    duplicate = dedupe.check(
        user_id="u", event_id="e2", dedupe_key="order-1", source=(0, 2), now=11.0
    )
    assert duplicate is not None
    assert "dedupe_key 'order-1'" in duplicate.reason
    assert (
        dedupe.check(user_id="v", event_id="e2", dedupe_key="order-1", source=(0, 3), now=11.0)
        is None
    )


def test_entries_expire_after_the_window() -> None:
    dedupe, table = ledger(window=100.0)
    dedupe.record(user_id="u", event_id="e", dedupe_key=None, source=(0, 1), now=10.0)
    assert (
        dedupe.check(user_id="u", event_id="e", dedupe_key=None, source=(0, 2), now=109.9)
        is not None
    )
    assert (
        dedupe.check(user_id="u", event_id="e", dedupe_key=None, source=(0, 2), now=110.0) is None
    )
    (entry,) = table.values()
    assert is_expired(entry, window=100.0, now=110.0)
    assert not is_expired(entry, window=100.0, now=109.0)


def test_changelog_deletes_segments_after_twice_the_window() -> None:
    assert changelog_config(3600.0) == {
        "cleanup.policy": "compact,delete",
        "retention.ms": "7200000",
    }


async def test_prune_removes_only_expired_entries() -> None:
    dedupe, table = ledger(window=100.0)
    dedupe.record(user_id="u", event_id="old", dedupe_key=None, source=(0, 1), now=10.0)
    dedupe.record(user_id="u", event_id="new", dedupe_key=None, source=(0, 2), now=95.0)
    assert await prune_expired(table, window=100.0, now=120.0, chunk=1) == 1
    assert [key.split("\x1f")[-1] for key in table] == ["new"]
