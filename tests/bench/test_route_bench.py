"""``clarion bench route`` end to end at a tiny scale: its own broker and one routing worker."""

from __future__ import annotations

import re

import pytest

from tests.bench.cli import run_bench

pytestmark = pytest.mark.integration

# A failure bound for a stuck bench, not a wait: the run takes ~45 s on a loaded machine.
WITHIN_S = 300


def test_route_bench_prints_its_rate_ratios_and_quarter_rates() -> None:
    out = run_bench("route", "--events=4000", "--users=200", within_s=WITHIN_S)

    assert re.search(r"^clarion ingest\+route \(one worker.*\): [\d,]+ events/s$", out, re.M), out
    assert re.search(r"^ratio: [\d.]+% of the passthrough \(4,000 events", out, re.M), out
    assert re.search(r"^ratio to the batch passthrough: [\d.]+%$", out, re.M), out
    assert re.search(
        r"^events committed: first quarter [\d,]+ events/s, last quarter [\d,]+ events/s; "
        r"last within 20% of first: (yes|no) \(last/first [\d.]+\)$",
        out,
        re.M,
    ), out
