"""``clarion bench pipeline`` at a tiny scale: its own broker, one worker, the SMTP sink."""

from __future__ import annotations

import re

import pytest

from tests.bench.cli import run_bench

pytestmark = pytest.mark.integration

# A failure bound for a stuck bench, not a wait: the run takes ~60 s on a loaded machine.
WITHIN_S = 300
RATE = r"[\d,]+ events/s"
QUARTERS = (
    r"first quarter [\d,]+ emails/s, last quarter [\d,]+ emails/s; "
    r"last within 20% of first: (yes|no) \(last/first [\d.]+\)"
)


def test_pipeline_bench_delivers_every_committed_email_once() -> None:
    out = run_bench("pipeline", "--events=1000", "--users=200", within_s=WITHIN_S)

    assert re.search(rf"^passthrough \(aiokafka .*\): {RATE}$", out, re.M), out
    assert re.search(rf"^clarion full pipeline \(one worker, every role.*\): {RATE} ", out, re.M)
    assert re.search(r"^ratio: [\d.]+% of the passthrough, [\d.]+% of the batch", out, re.M), out
    emails = re.search(
        r"^emails: ([\d,]+) committed on the email topic \(0 written more than once\), "
        r"([\d,]+) accepted by the sink; duplicates received: (\d+); missing: (\d+)$",
        out,
        re.M,
    )
    assert emails, out
    committed, accepted, duplicates, missing = (int(g.replace(",", "")) for g in emails.groups())
    # Social events go to the inbox only (users opted out of email for it): most, not all.
    assert 500 < committed < 1000
    assert (accepted, duplicates, missing) == (committed, 0, 0)
    assert re.search(rf"^emails accepted: {QUARTERS}$", out, re.M), out
