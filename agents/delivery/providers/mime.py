"""Clarion's one email shape, written as bytes: text/plain, or multipart/alternative of a
text/plain and a text/html part.

Why not the ``email`` package: an ``EmailMessage`` parses every header value assigned to it
and flattening folds them all again, 1-2 ms per message, which was 44 % of a worker's time
late in the route bench. The shape never varies, so it is written directly here. What the
output guarantees (``tests/agents/delivery/providers/test_mime.py`` parses it under
``email.policy.strict``):

* Every line ends in CRLF and is 7-bit ASCII, except a header value the caller passes with
  non-ASCII on purpose (an SMTPUTF8 address). Body lines are at most 76 characters, folded
  header lines at most 78; a structured value (an address, a Message-ID) cannot be folded
  and is as long as the caller made it (SmtpProvider caps addresses at 254 octets).
* Data reaches a header only through :func:`unstructured_header`, which writes text that
  is not plain printable ASCII as RFC 2047 encoded-words (UTF-8, base64), or through
  :func:`structured_header`, which refuses control characters: CR and LF from data never
  reach the header block, so no header can be injected.
* Bodies are UTF-8, quoted-printable, or base64 when that is shorter (CJK text, say). Line
  breaks of the text (CRLF, CR or LF) are written as CRLF and the text gets a final line
  break when it has none, as ``EmailMessage.set_content`` does; a reader decoding a part
  sees the text with those line breaks normalised, every other character intact.
* The multipart boundary starts with ``=_``, which neither encoding can produce (a
  quoted-printable ``=`` is followed by hex digits or the line end, base64 has no ``_``).
"""

from __future__ import annotations

import binascii
import hashlib
import re

CRLF = "\r\n"
# RFC 5322 recommends header lines of at most 78 characters, CRLF excluded.
MAX_HEADER_LINE = 78
# RFC 2047: an encoded-word is at most 75 characters.
_MAX_ENCODED_WORD = 75
_ENCODED_WORD_OVERHEAD = len("=?utf-8?b??=")
# Base64 lines of 76 characters (RFC 2045), i.e. 57 input bytes each.
_BASE64_LINE_BYTES = 57

# Rendered subjects are one line. Every character that str.splitlines() breaks on is a line
# break to some reader (U+2028 included), so runs of them collapse to one space.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
_ANY_NEWLINE = re.compile(r"\r\n|\r|\n")
# Text that can go into an unstructured header as it is: printable ASCII words separated by
# single spaces. Anything else (non-ASCII, control characters, runs of blanks, leading or
# trailing blanks, which readers strip) is written as encoded-words so it decodes exactly.
_PLAIN_WORDS = re.compile(r"[!-~]+(?: [!-~]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with every run of line breaks replaced by one space."""
    return _LINE_BREAKS.sub(" ", text)


def has_control_character(text: str) -> bool:
    """Whether ``text`` has a C0 control character (CR and LF among them) or DEL."""
    return _CONTROL.search(text) is not None


def structured_header(name: str, value: str) -> str:
    """``name: value`` for a value the caller built or validated (a date, a Message-ID, an
    addr-spec); a control character in it is a bug upstream, not something to encode."""
    if has_control_character(value):
        raise ValueError(f"{name} header value {value!r} contains a control character")
    return f"{name}: {value}{CRLF}"


def unstructured_header(name: str, value: str) -> str:
    """``name: value`` (RFC 5322 unstructured, such as Subject), folded to 78 characters,
    as encoded-words unless ``value`` is plain printable ASCII that decodes as itself."""
    prefix = f"{name}: "
    if not value:
        return f"{name}:{CRLF}"
    words = value.split(" ")
    longest_foldable = MAX_HEADER_LINE - len(prefix)
    if (
        _PLAIN_WORDS.fullmatch(value)
        and "=?" not in value  # would be taken for the start of an encoded-word
        and max(map(len, words)) <= longest_foldable
    ):
        return _fold_words(prefix, words)
    return _fold_words(prefix, _encoded_words(value, first_line_room=longest_foldable))


def _fold_words(prefix: str, words: list[str]) -> str:
    # Folding puts CRLF before the space between two words; unfolding removes only the
    # CRLF, so the value reads back unchanged.
    lines: list[str] = []
    line = prefix + words[0]
    for word in words[1:]:
        if len(line) + 1 + len(word) > MAX_HEADER_LINE:
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return CRLF.join(lines) + CRLF


def _encoded_words(value: str, *, first_line_room: int) -> list[str]:
    data = value.encode("utf-8")
    words: list[str] = []
    start = 0
    # A header name so long that no character fits after it is not one of ours; 24 keeps
    # room for at least one character (four UTF-8 bytes) in the word.
    room = max(min(first_line_room, _MAX_ENCODED_WORD), 24)
    while start < len(data):
        cut = min(start + (room - _ENCODED_WORD_OVERHEAD) // 4 * 3, len(data))
        # An encoded-word must hold whole characters: never cut inside a UTF-8 sequence.
        while cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        encoded = binascii.b2a_base64(data[start:cut], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{encoded}?=")
        start = cut
        # Continuation lines start with the folding space.
        room = min(MAX_HEADER_LINE - 1, _MAX_ENCODED_WORD)
    return words


def boundary_for(seed: str) -> str:
    """A multipart boundary, the same for the same ``seed`` (a retried message is the same
    message); its ``=_`` start keeps it out of any encoded body."""
    return "=_" + hashlib.blake2b(seed.encode("utf-8"), digest_size=12).hexdigest()


def text_part(subtype: str, text: str) -> bytes:
    """The Content-Type and Content-Transfer-Encoding headers, a blank line and the body."""
    encoding, body = _encode_text(text)
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: {encoding}{CRLF}{CRLF}"
    ).encode("ascii") + body


def _encode_text(text: str) -> tuple[str, bytes]:
    canonical = _ANY_NEWLINE.sub(CRLF, text)
    if not canonical.endswith(CRLF):
        canonical += CRLF
    data = canonical.encode("utf-8")
    # binascii keeps the CRLF line breaks, escapes '=', controls, non-ASCII and trailing
    # blanks, and soft-breaks lines at 76 characters.
    quoted = binascii.b2a_qp(data, istext=True)
    if len(quoted) <= _base64_length(len(data)):
        return "quoted-printable", quoted
    lines = (
        binascii.b2a_base64(data[start : start + _BASE64_LINE_BYTES], newline=False)
        for start in range(0, len(data), _BASE64_LINE_BYTES)
    )
    return "base64", b"\r\n".join(lines) + b"\r\n"


def _base64_length(size: int) -> int:
    lines = -(-size // _BASE64_LINE_BYTES)
    return -(-size // 3) * 4 + 2 * lines


def email_message(headers: str, *, text: str, html: str | None, boundary: str) -> bytes:
    """The whole message: ``headers`` (complete CRLF-terminated lines, no MIME headers),
    then the text alone, or text and HTML as multipart/alternative when there is HTML.

    ``headers`` is encoded as UTF-8: it is ASCII unless the caller put an SMTPUTF8 address
    in it, and then the message must go out with the SMTPUTF8 extension."""
    head = headers.encode("utf-8") + b"MIME-Version: 1.0\r\n"
    plain = text_part("plain", text)
    if not html:
        return head + plain
    alternative = text_part("html", html)
    delimiter = b"--" + boundary.encode("ascii")
    if delimiter in plain or delimiter in alternative:
        # Impossible with the "=_" boundaries of boundary_for(); checked because a part
        # containing its boundary would silently cut the message short.
        raise ValueError(f"boundary {boundary!r} occurs in a part")
    # The CRLF before each delimiter belongs to the delimiter, not to the part before it.
    return b"".join(
        (
            head,
            f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'.encode(
                "ascii"
            ),
            delimiter,
            b"\r\n",
            plain,
            b"\r\n",
            delimiter,
            b"\r\n",
            alternative,
            b"\r\n",
            delimiter,
            b"--\r\n",
        )
    )
