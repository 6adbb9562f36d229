"""``clarion bench faults`` end to end at a tiny scale: its own broker, four workers coming and
going, a broker restart, the SMTP sink. Nothing may be missing and no Delivery repeated."""

from __future__ import annotations

import re

import pytest

from tests.bench.cli import run_bench

pytestmark = pytest.mark.integration

EVENTS = 600
# A failure bound for a stuck bench, not a wait: the run takes ~2 minutes on a loaded machine.
WITHIN_S = 280


def test_faults_bench_loses_nothing_and_repeats_no_delivery() -> None:
    out = run_bench("faults", f"--events={EVENTS}", "--users=50", "--seconds=60", within_s=WITHIN_S)

    assert f"events accepted: {EVENTS} of {EVENTS} (0 refused)" in out, out
    assert re.search(r"^\s+[\d.]+ s  everything delivered$", out, re.M), out
    # No assertion that every worker lived: one may stop itself around the broker restart
    # (a transaction refused past its retries stops a worker, by design); the bench reports
    # it, and nothing may be lost or delivered twice for it.
    for channel in ("email", "in_app"):
        line = (
            f"read_committed bench.deliver.{channel}: {EVENTS} of {EVENTS} events delivered "
            "once or more; missing 0, repeated 0"
        )
        assert line in out, out
    assert re.search(
        rf"^SMTP sink: {EVENTS} emails expected .*, missing 0, duplicates", out, re.M
    ), out
    for change in ("A SIGKILLed", "broker restarted", "B SIGKILLed", "C stopped (SIGTERM)"):
        assert re.search(rf"^  {re.escape(change)}: email accepted: served again", out, re.M), out
