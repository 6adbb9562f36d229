"""Which parts of the hot path a worker runs: ``CLARION_ROLES`` / ``clarion worker --roles``.

``route`` reads events, preferences and retries; ``store`` keeps what the web views read
(the status history and the in-app inbox, with its read marks); ``deliver:<channel>`` sends
one external channel's deliveries to its providers. Each role has a consumer group of its
own, so a worker owns partitions only of the topics of its roles, and delivery scales apart
from routing: a routing worker never waits behind provider round trips. The web API runs on
every worker and asks the owner of a partition for what it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable

ROUTE = "route"
STORE = "store"
DELIVERY_CHANNELS = ("email", "sms", "push", "webhook")
ALL_ROLES: tuple[str, ...] = (
    ROUTE,
    STORE,
    *(f"deliver:{channel}" for channel in DELIVERY_CHANNELS),
)


class RolesError(ValueError):
    """The roles given name something Clarion does not run."""


def parse_roles(text: str | None) -> frozenset[str]:
    """``route,deliver:email`` → those roles; empty or ``all`` → every role."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names or names == ["all"]:
        return frozenset(ALL_ROLES)
    expanded: set[str] = set()
    for name in names:
        if name == "deliver":
            expanded.update(role for role in ALL_ROLES if role.startswith("deliver:"))
        elif name in ALL_ROLES:
            expanded.add(name)
        else:
            raise RolesError(f"unknown role {name!r}; roles are {', '.join(ALL_ROLES)}, deliver")
    return frozenset(expanded)


def delivery_channels(roles: Iterable[str]) -> tuple[str, ...]:
    """The external channels whose deliveries this worker sends, in a stable order."""
    wanted = set(roles)
    return tuple(c for c in DELIVERY_CHANNELS if f"deliver:{c}" in wanted)
