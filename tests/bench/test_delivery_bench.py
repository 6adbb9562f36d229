"""``clarion bench delivery`` at a tiny scale: it waits for the delivery runtime's own commits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# A failure bound, not a wait: the run takes ~30 s. The bench once waited here forever for
# the route runtime's group to commit the webhook topic, which only the delivery group does.
WITHIN_S = 240


def test_delivery_bench_finishes_once_every_webhook_offset_is_committed() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", "delivery", "--events=300", "--rate=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert re.search(
        r"^clarion webhook delivery, rate limit off \(one worker\): [\d,]+ deliveries/s$", out, re.M
    ), out
    assert re.search(r"^  300 delivered in [\d.,]+ s \(300 requests, 0 repeated", out, re.M), out
