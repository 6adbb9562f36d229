"""The one rule for the key of a user-keyed input record (events and preferences alike).

Both topics are keyed by user_id, so a key is the user's id as UTF-8. A key that is missing
or not valid UTF-8 names no user: decoding it with replacement characters would invent one
(and two different bad keys could become the same user), so the record is rejected instead.
"""

from __future__ import annotations

from schemas.validation import Invalid


def user_id_of_key(key: bytes | None) -> str | Invalid:
    """The user id a record's key names, or why it names none."""
    if not key:
        return Invalid("the message has no key; messages must be keyed by user_id")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(
            f"message key {key!r} is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
            "messages must be keyed by user_id"
        )
