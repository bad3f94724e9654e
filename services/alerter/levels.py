"""Severity levels, alert channels and notification kinds of the alerter."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Level(IntEnum):
    """Order the severities so that a worse level compares greater."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3


class Channel(StrEnum):
    """Name the independent alert channels an asset has."""

    RUL = "rul"
    ANOMALY = "anomaly"
    STALE = "stale"


# Iterating an Enum class runs a generator each time; hot paths use this tuple.
CHANNELS = tuple(Channel)


class Kind(StrEnum):
    """Name why a notification was emitted."""

    RAISE = "raise"
    ESCALATE = "escalate"
    DOWNGRADE = "downgrade"
    REMINDER = "reminder"
    RESOLVE = "resolve"
    # The episode was closed by a recorded repair or replacement, not by the
    # readings: the bearing it was about is gone.
    RENEWED = "renewed"

    @property
    def ends_episode(self) -> bool:
        """Return whether this notification closes its episode (and any incident)."""
        return self in (Kind.RESOLVE, Kind.RENEWED)
