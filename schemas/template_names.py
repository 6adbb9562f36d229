"""What a template name may be: it becomes a folder name under every template directory.

Checked by the event validator (a reason on the invalid topic) and again by the renderer,
which also serves names that never went through validation (digests, stored events).
"""

from __future__ import annotations

import re

MAX_TEMPLATE_NAME_LENGTH = 128
# Shared verbatim with notification_event.json (tests compare them). A letter or digit
# first, so neither "..", a hidden folder nor an absolute path can be named; no "/", so
# the name is one folder; bounded well below the file systems' 255 bytes per name.
TEMPLATE_NAME_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_TEMPLATE_NAME = re.compile(TEMPLATE_NAME_PATTERN)
TEMPLATE_NAME_RULE = (
    "may only contain letters, digits, '-', '_' and '.', "
    "must start with a letter or digit and must not contain '..'"
)


def template_name_problem(name: str, label: str = "field 'template'") -> str | None:
    """Why ``name`` cannot be a template name, or None when it can."""
    if len(name) > MAX_TEMPLATE_NAME_LENGTH:
        return f"{label} must be at most {MAX_TEMPLATE_NAME_LENGTH} characters (got {len(name)})"
    if _TEMPLATE_NAME.fullmatch(name) is None:
        # The value is repr()'d, so a control character in it is shown, not acted on.
        shown = repr(name) if len(name) <= 60 else repr(name[:60]) + "..."
        return f"{label} {TEMPLATE_NAME_RULE} (got {shown})"
    return None
