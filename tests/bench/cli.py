"""Running a bench as a user would (``clarion bench …``), for the smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, within_s: float) -> str:
    """The bench's standard output; ``within_s`` bounds a stuck run, it is not a wait."""
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=within_s,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout
