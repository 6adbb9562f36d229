"""``clarion bench route`` end to end at a tiny scale: its own broker and one routing worker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# A failure bound for a stuck bench, not a wait: the run takes ~45 s on a loaded machine.
WITHIN_S = 300


def test_route_bench_prints_its_rate_ratios_and_quarter_rates() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "route", "--events=4000", "--users=200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr

    assert re.search(r"^clarion ingest\+route \(one worker.*\): [\d,]+ events/s$", out, re.M), out
    assert re.search(r"^ratio: [\d.]+% of the passthrough \(4,000 events", out, re.M), out
    assert re.search(r"^ratio to the batch passthrough: [\d.]+%$", out, re.M), out
    assert re.search(
        r"^events committed: first quarter [\d,]+ events/s, last quarter [\d,]+ events/s; "
        r"last within 20% of first: (yes|no) \(last/first [\d.]+\)$",
        out,
        re.M,
    ), out
