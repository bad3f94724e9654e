"""Typed inputs (prediction, tick, acknowledgement) and output (notification) of the alerter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from services.alerter.levels import Channel, Kind, Level


def ensure_utc(value: datetime, name: str) -> datetime:
    """Return ``value`` converted to UTC; raise ValueError if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}"
        raise ValueError(msg)
    # Normalising keeps idempotency keys identical for the same instant.
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """Carry one inference result for one asset at one event time."""

    asset_id: str
    time: datetime
    rul_hours: float
    rul_low: float
    rul_high: float
    anomaly_score: float
    running: bool
    model_version: str

    def __post_init__(self) -> None:
        if not self.asset_id:
            msg = "asset_id must not be empty"
            raise ValueError(msg)
        object.__setattr__(self, "time", ensure_utc(self.time, "Prediction.time"))
        values = {
            "rul_hours": self.rul_hours,
            "rul_low": self.rul_low,
            "rul_high": self.rul_high,
            "anomaly_score": self.anomaly_score,
        }
        for name, value in values.items():
            # NaN compares False with every threshold and would read as "healthy".
            if not math.isfinite(value):
                msg = f"{name} must be finite for asset {self.asset_id}, got {value!r}"
                raise ValueError(msg)
        if not self.rul_low <= self.rul_hours <= self.rul_high:
            msg = (
                f"need rul_low <= rul_hours <= rul_high for asset {self.asset_id},"
                f" got {self.rul_low!r}, {self.rul_hours!r}, {self.rul_high!r}"
            )
            raise ValueError(msg)


@dataclass(frozen=True, kw_only=True)
class Tick:
    """Mark the passing of wall-clock time, for staleness and reminders."""

    now: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", ensure_utc(self.now, "Tick.now"))


@dataclass(frozen=True, kw_only=True)
class Ack:
    """Acknowledge an asset's active alerts on behalf of an engineer."""

    asset_id: str
    now: datetime
    by: str

    def __post_init__(self) -> None:
        if not self.by:
            msg = f"Ack for asset {self.asset_id} must name who acknowledged"
            raise ValueError(msg)
        object.__setattr__(self, "now", ensure_utc(self.now, "Ack.now"))


@dataclass(frozen=True, kw_only=True)
class Notification:
    """Describe one message for the on-call engineer, with an idempotency key."""

    asset_id: str
    channel: Channel
    kind: Kind
    level: Level
    previous_level: Level
    time: datetime
    episode: int
    rul_hours: float
    rul_low: float
    rul_high: float
    anomaly_score: float
    model_version: str
    key: str


def notification_key(
    *, asset_id: str, channel: Channel, episode: int, kind: Kind, level: Level, time: datetime
) -> str:
    """Build the deterministic idempotency key of a notification."""
    return f"{asset_id}:{channel.value}:{episode}:{kind.value}:{level.name}:{time.isoformat()}"
