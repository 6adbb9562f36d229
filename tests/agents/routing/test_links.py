from __future__ import annotations

import pytest

from agents.routing.links import drop_unsafe_links, is_allowed_url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/x?a=1&b=2",
        "HTTP://example.com",
        "mailto:help@example.com",
        "/relative/path",
        "#anchor",
        "//example.com/protocol-relative",
        "&#106;avascript:alert(1)",  # as the browser reads it after one unescape: no scheme
        "",
    ],
)
def test_allowed_and_relative_urls(url: str) -> None:
    assert is_allowed_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "  javascript:alert(1)",
        "\x01javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "tel:+33612345678",
    ],
)
def test_every_other_scheme_is_refused(url: str) -> None:
    assert not is_allowed_url(url)


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ('<a href="javascript:x">Go</a>', "<a>Go</a>"),
        ("<a href='data:x' id=k>Go</a>", "<a id=k>Go</a>"),
        ("<a HREF = javascript:x>Go</a>", "<a>Go</a>"),
        ('<a href="java&#x09;script:x">Go</a>', "<a>Go</a>"),
        # A character reference in the markup is resolved by the browser: still a script.
        ('<a href="&#106;avascript:x">Go</a>', "<a>Go</a>"),
        # Escaped data ("&#106;..." as sent) reads as text, a relative link: harmless.
        ('<a href="&amp;#106;avascript:x">Go</a>', None),
        ('<img src="javascript:x" alt="i"/>', '<img alt="i"/>'),
        ('<form action="javascript:x"><button formaction="data:y">', "<form><button>"),
        ('<a title="x href=javascript:y" href="https://e/">Go</a>', None),
        ('<a href="https://e/?a=1&amp;b=2">Go</a>', None),
        ('<a href="mailto:a@b.c">Mail</a>', None),
        ("<p>javascript:alert(1) as text</p>", None),
        ("<p>see href=javascript:x, just text</p>", None),
    ],
)
def test_only_url_attributes_of_other_schemes_are_removed(
    markup: str, expected: str | None
) -> None:
    assert drop_unsafe_links(markup) == (markup if expected is None else expected)
