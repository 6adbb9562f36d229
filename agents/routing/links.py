"""Only ``https``, ``http`` and ``mailto`` links in rendered HTML.

Templates put event data into ``href`` and ``src`` attributes (``<a href="{{ action_url }}">``),
and autoescaping does not stop a producer's ``javascript:`` or ``data:`` URL there. So the
renderer passes every HTML part through :func:`drop_unsafe_links` once it is rendered,
whatever template, built-in or user, produced it: an attribute naming another scheme is
removed, so its element stays and its text is shown, but is not a link.

The markup searched is the rendered template, in which autoescaped data cannot open a tag
or end an attribute value (``<``, ``>``, ``"`` and ``'`` are escaped), so tags and quoted
values are found by patterns without parsing the whole document.
"""

from __future__ import annotations

import html
import re

ALLOWED_SCHEMES = frozenset({"https", "http", "mailto"})

_TAG = re.compile(r"<[A-Za-z][^\s<>/]*(?P<attributes>[^<>]*)>")
# One attribute with its value; matched one after the other, so nothing inside a value is
# taken for an attribute of its own.
_ATTRIBUTE = re.compile(
    r"""(?P<space>\s*)(?P<name>[^\s"'<>/=]+)"""
    r"""(?:\s*=\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<bare>[^\s"'=<>`]+)))?"""
)
# Attributes a browser or mail client follows or loads as a URL.
_URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "background", "poster", "cite"}
)
# What browsers ignore when they read a URL's scheme (WHATWG URL: leading C0 controls and
# spaces, and tabs and newlines anywhere).
_LEADING = re.compile(r"^[\x00-\x20]+")
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def drop_unsafe_links(markup: str) -> str:
    """``markup`` with every URL attribute of another scheme than the allowed ones removed."""
    return _TAG.sub(_clean_tag, markup)


def is_allowed_url(url: str) -> bool:
    """True for a URL of an allowed scheme, or a relative one (which has none)."""
    cleaned = _TAB_OR_NEWLINE.sub("", _LEADING.sub("", url))
    scheme = _SCHEME.match(cleaned)
    return scheme is None or scheme.group(1).lower() in ALLOWED_SCHEMES


def _clean_tag(tag: re.Match[str]) -> str:
    start, end = tag.span("attributes")
    attributes = _ATTRIBUTE.sub(_clean_attribute, tag.group("attributes"))
    return tag.string[tag.start() : start] + attributes + tag.string[end : tag.end()]


def _clean_attribute(attribute: re.Match[str]) -> str:
    if attribute.group("name").lower() not in _URL_ATTRIBUTES:
        return attribute.group(0)
    value = next((v for v in attribute.group("double", "single", "bare") if v is not None), "")
    # A browser reads the value with character references resolved: "&#106;avascript:".
    if is_allowed_url(html.unescape(value)):
        return attribute.group(0)
    return ""
