"""``clarion bench latency`` end to end at a tiny scale: its own broker, a worker, the SMTP sink."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RATE, SECONDS = 50, 3
SENT = RATE * SECONDS
# A failure bound for a stuck bench, not a wait: the run takes ~40 s on a loaded machine.
WITHIN_S = 240


def test_latency_bench_measures_every_critical_event_at_commit_and_at_the_smtp_sink() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "bench",
            "latency",
            "--backlog=200",
            "--users=50",
            f"--rate={RATE}",
            f"--seconds={SECONDS}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr

    assert f"critical stream: {SENT} events in" in out
    percentiles = r"p50 [\d,.]+ ms, p90 [\d,.]+ ms, p99 [\d,.]+ ms, max [\d,.]+ ms"
    for line in (
        "produce -> Delivery committed on bench.deliver.email",
        "produce -> SMTP sink accepted",
    ):
        found = re.search(
            rf"^{re.escape(line)}: {percentiles} \((\d+) of (\d+) measured\)", out, re.M
        )
        assert found, out
        assert (int(found[1]), int(found[2])) == (SENT, SENT), found[0]
    # Every user had a low event in the backlog, so each one's digest closed.
    assert re.search(
        r"^digests closed during the stream: [\d,]+ \(of 50 seen, 50 expected", out, re.M
    ), out
