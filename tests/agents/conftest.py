"""Agent tests use the ``pipeline`` fixture of tests/conftest.py; ``Pipeline`` lives in helpers."""

from __future__ import annotations

from tests.helpers.deployment import PARTITIONS, Pipeline

__all__ = ["PARTITIONS", "Pipeline"]
