"""The counting SMTP sink finds the notification id in the raw header block."""

from __future__ import annotations

from bench.acceptances import notification_id


def test_the_id_is_read_from_the_header_block_only_and_whatever_the_case() -> None:
    message = b"Subject: Hi\r\nX-Clarion-Notification-Id: ntf_1\r\n\r\nbody"
    assert notification_id(message) == "ntf_1"
    assert notification_id(b"x-clarion-notification-id:  ntf_2 \r\nA: b\r\n\r\n") == "ntf_2"
    assert notification_id(b"A: b\r\n\r\nX-Clarion-Notification-Id: ntf_3\r\n") is None
