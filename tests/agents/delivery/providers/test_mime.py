"""The bytes SmtpProvider.build_message writes, read back by the ``email`` package's strict
parser: no defects, every header and part decoding to what was put in.

Line breaks are the one thing normalised: any of CRLF, CR and LF in a body is a line break
on the wire (CRLF), and a body always ends with one, so a decoded part equals the original
text with its line breaks as CRLF and a final CRLF added when it had none.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.delivery.providers.config import SmtpConfig
from agents.delivery.providers.mime import (
    boundary_for,
    email_message,
    one_line,
    structured_header,
    unstructured_header,
)
from agents.delivery.providers.smtp import SmtpProvider
from tests.agents.delivery.providers.conftest import make_delivery

_NEWLINE = re.compile(r"\r\n|\r|\n")

LONG_ASCII = "Your weekly summary: " + " ".join(f"item-{n}" for n in range(60))
SUBJECTS = [
    pytest.param("Your invoice is ready", id="ascii"),
    pytest.param("", id="empty"),
    pytest.param(LONG_ASCII, id="long-ascii"),
    pytest.param("x" * 300, id="one-300-char-word"),
    pytest.param("Ça coûte 42 € — merci", id="latin-1-and-euro"),
    pytest.param("🎉 Party time 🎉👩‍👩‍👧‍👦 family emoji", id="emoji-zwj"),
    pytest.param("新しい通知があります、请查看您的账户。" * 4, id="cjk-long"),
    pytest.param("=?utf-8?q?not_an_encoded_word?=", id="looks-encoded"),
    pytest.param("price =? 42 ?= maybe", id="equals-question"),
    pytest.param("  padded  with   blanks  ", id="blanks"),
    pytest.param("Hi\r\nBcc: eve@example.com", id="crlf-injection"),
    pytest.param("one\rtwo\nthree\u2028four\x0bfive", id="line-breaks"),
    pytest.param("tab\there, esc\x1b, del\x7f, bell\x07", id="controls"),
    pytest.param('quotes "and" (comments) <angles> ; : , \\', id="specials"),
]
BODIES = [
    pytest.param("Invoice #42 is ready.\nThanks!", id="ascii"),
    pytest.param("", id="empty"),
    pytest.param("a = b, 100% sure =3D", id="equals"),
    pytest.param("x" * 5000 + "\n" + "y" * 2000, id="long-lines"),
    pytest.param("." + "\n.\n..two dots\n.", id="dot-lines"),
    pytest.param("carriage\rreturn\r\nand crlf\n", id="cr-and-crlf"),
    pytest.param("trailing blanks   \nand tab\t\n", id="trailing-blanks"),
    pytest.param("bell\x07 esc\x1b vt\x0b ff\x0c del\x7f nel\x85 ls\u2028", id="controls"),
    pytest.param("Ünïcødé and emoji 🎉, then 日本語のテキスト " * 40, id="non-ascii-long"),
    pytest.param("请查看您的账户。" * 200, id="cjk"),
    pytest.param("--=_ not the boundary\n--" + boundary_for("x"), id="boundary-like"),
]
HTMLS = [
    pytest.param(None, id="no-html"),
    pytest.param("", id="empty-html"),
    pytest.param("<p>Invoice <b>#42</b> is ready.</p>", id="html"),
    pytest.param("<p>Ça coûte 42 € 🎉 日本語</p>\n" * 30, id="html-non-ascii"),
    pytest.param("<p>" + "long line " * 500 + "</p>", id="html-long-line"),
]


def provider(sender: str = "Clarion <notifications@clarion.localhost>") -> SmtpProvider:
    return SmtpProvider(SmtpConfig(sender=sender))


def parse(data: bytes) -> EmailMessage:
    """``data`` parsed strictly, after checking the wire format the parser forgives."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        assert b"\r" not in line
        assert b"\n" not in line
        assert line.isascii(), line
        assert len(line) <= 998
    head = lines[: lines.index(b"")]
    assert all(len(line) <= 78 for line in head), head
    message = email.message_from_bytes(data, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        assert part.defects == []
        for name, value in part.items():
            assert value.defects == (), (name, value)
    return message


def wire_text(text: str) -> str:
    """What a part decodes to: line breaks as CRLF, and a final one."""
    canonical = _NEWLINE.sub("\r\n", text)
    return canonical if canonical.endswith("\r\n") else canonical + "\r\n"


def content(part: EmailMessage) -> str:
    value = part.get_content()
    assert isinstance(value, str)
    return value


def check(delivery: dict[str, Any], sent: EmailMessage) -> None:
    assert sent["From"] == "Clarion <notifications@clarion.localhost>"
    assert sent["To"] == delivery["address"]
    assert sent["Subject"] == one_line(delivery["subject"] or "")
    assert sent["Message-ID"] == f"<{delivery['notification_id']}@clarion.localhost>"
    assert sent["X-Clarion-Notification-Id"] == delivery["notification_id"]
    assert sent["Auto-Submitted"] == "auto-generated"
    assert sent["MIME-Version"] == "1.0"
    assert sent["Date"].datetime.tzinfo is not None
    if delivery["html"]:
        assert sent.get_content_type() == "multipart/alternative"
        plain, html = sent.iter_parts()
        assert isinstance(plain, EmailMessage)
        assert isinstance(html, EmailMessage)
        assert html.get_content_type() == "text/html"
        assert html.get_content_charset() == "utf-8"
        assert content(html) == wire_text(delivery["html"])
    else:
        plain = sent
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content_charset() == "utf-8"
    assert content(plain) == wire_text(delivery["body"])


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_decode_to_the_one_line_original(subject: str) -> None:
    delivery = make_delivery(subject=subject)
    check(delivery, parse(provider().build_message(delivery).data))


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("html", HTMLS)
def test_parts_decode_to_the_original_text(body: str, html: str | None) -> None:
    delivery = make_delivery(body=body, html=html)
    check(delivery, parse(provider().build_message(delivery).data))


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(max_size=300),
    body=st.text(max_size=2000),
    html=st.one_of(st.none(), st.text(max_size=2000)),
)
def test_any_text_round_trips(subject: str, body: str, html: str | None) -> None:
    delivery = make_delivery(subject=subject, body=body, html=html)
    check(delivery, parse(provider().build_message(delivery).data))


def test_a_line_break_in_the_subject_cannot_start_a_header() -> None:
    data = provider().build_message(make_delivery(subject="Hi\r\nBcc: eve@example.com")).data
    sent = parse(data)
    assert sent["Bcc"] is None
    assert sent["Subject"] == "Hi Bcc: eve@example.com"


def test_plain_ascii_headers_stay_readable_and_fold_at_spaces() -> None:
    folded = unstructured_header("Subject", LONG_ASCII)
    assert "=?" not in folded
    lines = folded.removesuffix("\r\n").split("\r\n")
    assert len(lines) > 1
    assert all(len(line) <= 78 for line in lines)
    assert "".join(lines) == "Subject: " + LONG_ASCII


@pytest.mark.parametrize(
    "value", ["=?utf-8?q?x?=", "é", " leading", "trailing ", "two  spaces", "tab\t", "x" * 70]
)
def test_values_that_would_not_read_back_are_encoded_words(value: str) -> None:
    assert unstructured_header("Subject", value).startswith("Subject: =?utf-8?b?")


def test_encoded_words_never_split_a_character() -> None:
    # 4-byte characters: a 42- or 45-byte word boundary falls inside one unless avoided.
    for offset in range(4):
        value = "a" * offset + "🎉" * 40
        header = parse(
            unstructured_header("Subject", value).encode() + b"\r\nbody\r\n"
        )  # a bare header block parses as a message
        assert header["Subject"] == value


@pytest.mark.parametrize("value", ["a\r\nBcc: x@y.z", "a\nb", "a\rb", "nul\x00"])
def test_structured_headers_refuse_control_characters(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        structured_header("To", value)


def test_cjk_text_goes_as_base64_and_ascii_as_quoted_printable() -> None:
    cjk = parse(provider().build_message(make_delivery(body="请查看您的账户。" * 20)).data)
    ascii_text = parse(provider().build_message(make_delivery(body="Invoice #42")).data)
    cjk_plain, _ = cjk.iter_parts()
    ascii_plain, _ = ascii_text.iter_parts()
    assert cjk_plain["Content-Transfer-Encoding"] == "base64"
    assert ascii_plain["Content-Transfer-Encoding"] == "quoted-printable"


def test_the_boundary_is_stable_per_notification_and_absent_from_the_parts() -> None:
    delivery = make_delivery(body="--" + boundary_for("ntf_1"), html="=_" * 100)
    first = provider().build_message({**delivery, "notification_id": "ntf_1"}).data
    again = provider().build_message({**delivery, "notification_id": "ntf_1"}).data
    other = provider().build_message({**delivery, "notification_id": "ntf_2"}).data
    boundary = parse(first).get_boundary()
    assert boundary == boundary_for("ntf_1") == parse(again).get_boundary()
    assert boundary != parse(other).get_boundary()
    # Three delimiters and nothing else: the parts never contain the boundary.
    assert first.count(b"--" + boundary.encode()) == 3


def test_a_boundary_found_in_a_part_is_refused() -> None:
    with pytest.raises(ValueError, match="occurs in a part"):
        email_message("", text="--plain boundary", html="<p>x</p>", boundary="plain")


def test_a_display_name_in_the_sender_is_encoded_once() -> None:
    sent = parse(
        provider("Équipe Clarion 🎉 <noreply@acme.example>").build_message(make_delivery()).data
    )
    assert sent["From"] == "Équipe Clarion 🎉 <noreply@acme.example>"
    assert sent["From"].addresses[0].addr_spec == "noreply@acme.example"


def test_the_envelope_is_the_sender_address_and_the_recipient() -> None:
    outgoing = provider("Acme <noreply@mail.acme.example>").build_message(
        make_delivery(address=" bob@example.com ", notification_id="ntf_1")
    )
    assert outgoing.sender == "noreply@mail.acme.example"
    assert outgoing.recipient == "bob@example.com"
    assert outgoing.message_id == "<ntf_1@mail.acme.example>"
    assert not outgoing.needs_smtputf8
    assert email.utils.parseaddr(parse(outgoing.data)["To"])[1] == "bob@example.com"


def test_a_non_ascii_recipient_needs_smtputf8_and_is_written_in_utf8() -> None:
    outgoing = provider().build_message(make_delivery(address="jörg@exämple.de"))
    assert outgoing.needs_smtputf8
    assert "To: jörg@exämple.de\r\n".encode() in outgoing.data
