"""The mime bench compares like with like: both builders' messages read back the same."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from agents.delivery.providers.config import SmtpConfig
from bench.mime import (
    SHAPES,
    clarion_builder,
    email_package_builder,
    run_mime_bench,
    workload,
)


def read_back(data: bytes) -> tuple[dict[str, str], list[tuple[str, str]]]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers = {name: str(value) for name, value in message.items()}
    del headers["Date"]  # the clock moved between the two builds
    parts = [
        (part.get_content_type(), str(part.get_content()).replace("\r\n", "\n"))
        for part in message.walk()
        if not part.is_multipart()
    ]
    return headers, parts


@pytest.mark.parametrize("delivery", workload(len(SHAPES)))
def test_old_and_new_builders_write_the_same_message(delivery: dict[str, object]) -> None:
    config = SmtpConfig()
    old_headers, old_parts = read_back(email_package_builder(config)(delivery))
    new_headers, new_parts = read_back(clarion_builder(config)(delivery))
    # Same values; the transfer encodings (and so the MIME headers) may differ.
    for mime_header in ("Content-Type", "Content-Transfer-Encoding"):
        old_headers.pop(mime_header, None)
        new_headers.pop(mime_header, None)
    assert new_headers == old_headers
    assert new_parts == old_parts


def test_the_bench_reports_both_builders(capsys: pytest.CaptureFixture[str]) -> None:
    medians = run_mime_bench(messages=len(SHAPES), rounds=1)
    assert set(medians) == {"email package", "clarion"}
    assert "ratio" in capsys.readouterr().out
