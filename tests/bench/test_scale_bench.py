"""``clarion bench scale`` end to end at a tiny scale: one routing worker, then two."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# A failure bound for a stuck bench, not a wait: two brokers and three workers, ~90 s.
WITHIN_S = 400


def test_scale_bench_prints_both_rates_and_their_ratio() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "scale", "--events=4000", "--users=200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr

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
