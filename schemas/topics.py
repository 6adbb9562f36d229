"""The names of every topic Clarion reads or writes, derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import CHANNELS


@dataclass(frozen=True, kw_only=True)
class TopicNames:
    prefix: str = "clarion."

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def preferences(self) -> str:
        return f"{self.prefix}preferences"

    @property
    def events_repartition(self) -> str:
        """Events that arrived on another partition than their user's, forwarded to it."""
        return f"{self.prefix}events.repartition"

    @property
    def preferences_repartition(self) -> str:
        """Preferences that arrived on another partition than their user's, forwarded to it."""
        return f"{self.prefix}preferences.repartition"

    @property
    def invalid(self) -> str:
        return f"{self.prefix}invalid"

    @property
    def status(self) -> str:
        return f"{self.prefix}status"

    @property
    def retry(self) -> str:
        return f"{self.prefix}retry"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def timers(self) -> str:
        """Changelog of held notifications and digest windows, written in transactions."""
        return f"{self.prefix}timers"

    @property
    def dedupe_state(self) -> str:
        """Changelog of the event ids and dedupe keys seen, written in transactions."""
        return f"{self.prefix}state.dedupe"

    @property
    def preferences_state(self) -> str:
        """Changelog of the preferences routing reads, written in transactions."""
        return f"{self.prefix}state.preferences"

    @property
    def status_state(self) -> str:
        """Changelog of each notification's status history, written in transactions."""
        return f"{self.prefix}state.status"

    @property
    def inbox_state(self) -> str:
        """Changelog of each user's in-app inbox rows, written in transactions."""
        return f"{self.prefix}state.inbox"

    @property
    def inbox_commands(self) -> str:
        """Read marks for in-app notifications, published by the web API, keyed by user."""
        return f"{self.prefix}inbox.commands"

    def deliver(self, channel: str) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        return f"{self.prefix}deliver.{channel}"

    def user_keyed(self) -> list[str]:
        """Topics keyed by user_id: they must all have the same partition count."""
        return [
            self.events,
            self.preferences,
            self.events_repartition,
            self.preferences_repartition,
            self.timers,
            self.dedupe_state,
            self.preferences_state,
            self.inbox_state,
            self.inbox_commands,
            self.retry,
            self.dlq,
            *(self.deliver(channel) for channel in CHANNELS),
        ]

    def other(self) -> list[str]:
        return [self.invalid, self.status, self.status_state]
