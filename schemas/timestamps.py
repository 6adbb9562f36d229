"""The one timestamp format Clarion accepts: RFC 3339, which every producer language can write."""

from __future__ import annotations

import re
from datetime import datetime

# Shared verbatim with the JSON Schemas (tests compare them), so it stays within the regex
# dialect that Python and ECMA-262 have in common. datetime.fromisoformat alone would also
# take compact forms ("20240101T100000Z") and offsets with seconds that other languages'
# parsers reject.
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def parse_timestamp(value: str) -> datetime | None:
    """The aware datetime ``value`` names, or None unless it is RFC 3339 with a UTC offset."""
    if _TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        # Still needed for what a pattern cannot see, such as 30 February.
        return datetime.fromisoformat(value)
    except ValueError:
        return None
