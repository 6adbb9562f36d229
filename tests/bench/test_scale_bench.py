"""``clarion bench scale`` end to end at a tiny scale: one routing worker, then two."""

from __future__ import annotations

import re

import pytest

from tests.bench.cli import run_bench

pytestmark = pytest.mark.integration

# A failure bound for a stuck bench, not a wait: two brokers and three workers, ~90 s.
WITHIN_S = 400


def test_scale_bench_prints_both_rates_and_their_ratio() -> None:
    out = run_bench("scale", "--events=4000", "--users=200", within_s=WITHIN_S)

    one = re.search(r"^clarion route, one worker: ([\d,]+) events/s$", out, re.M)
    two = re.search(r"^clarion route, two workers: ([\d,]+) events/s$", out, re.M)
    assert one, out
    assert two, out
    assert re.search(r"^  2 worker\(s\) in the route group, every partition owned", out, re.M)
    ratio = re.search(
        r"^scale-out: two workers ([\d.]+)x one worker; target 1.6x: (met|NOT met)$", out, re.M
    )
    assert ratio, out
    rates = [int(found[1].replace(",", "")) for found in (one, two)]
    assert float(ratio[1]) == pytest.approx(rates[1] / rates[0], abs=0.01)
