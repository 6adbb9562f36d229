"""``clarion bench delivery`` at a tiny scale: it waits for the delivery runtime's own commits."""

from __future__ import annotations

import re

import pytest

from tests.bench.cli import run_bench

pytestmark = pytest.mark.integration

# A failure bound, not a wait: the run takes ~30 s. The bench once waited here forever for
# the route runtime's group to commit the webhook topic, which only the delivery group does.
WITHIN_S = 240


def test_delivery_bench_finishes_once_every_webhook_offset_is_committed() -> None:
    out = run_bench("delivery", "--events=300", "--rate=0", within_s=WITHIN_S)
    assert re.search(
        r"^clarion webhook delivery, rate limit off \(one worker\): [\d,]+ deliveries/s$", out, re.M
    ), out
    assert re.search(r"^  300 delivered in [\d.,]+ s \(300 requests, 0 repeated", out, re.M), out
