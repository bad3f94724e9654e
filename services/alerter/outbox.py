"""The alert outbox's records: what is stored per notification, where it goes, how it went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from cbm.messages import SCHEMA_VERSION
from services.alerter.events import Notification
from services.alerter.levels import Channel, Kind, Level

TopFeatures = tuple[tuple[str, float], ...]


class Receiver(StrEnum):
    """Name where an outbox row is delivered."""

    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    MQTT = "mqtt"  # alerts from the tick loop; the worker publishes the others itself
    LOG = "log"  # no chat receiver configured: the alert is logged instead


@dataclass(frozen=True, kw_only=True)
class PendingAlert:
    """Carry one notification with what the outbox stores beside it."""

    notification: Notification
    # The prediction whose figures the notification carries (a tick's is the last one).
    prediction_time: datetime | None
    episode_started_at: datetime | None
    top_features: TopFeatures = ()


@dataclass(frozen=True, kw_only=True)
class Routing:
    """Say which receivers are configured when an alert is stored."""

    slack: bool
    pagerduty: bool


@dataclass(frozen=True, kw_only=True)
class Route:
    """One outbox row to write: the receiver, and whether it needs an open incident."""

    receiver: Receiver
    # A PagerDuty resolve is only sent for an episode that triggered an incident.
    needs_incident: bool = False


def routes(alert: PendingAlert, routing: Routing) -> list[Route]:
    """Return the outbox rows one notification becomes.

    Every notification goes to Slack (or the log); PagerDuty only hears of
    EMERGENCY raises and escalations and of the resolve that ends such an
    episode. Downgrades and reminders are not sent there: the incident stays
    open until the episode resolves, and PagerDuty does its own re-notifying.
    Every notification also gets an MQTT row: published from the outbox, a copy
    is not lost when the alerter dies between its commit and the broker's ack.
    """
    n = alert.notification
    found = [Route(receiver=Receiver.SLACK if routing.slack else Receiver.LOG)]
    if routing.pagerduty:
        if n.level == Level.EMERGENCY and n.kind in (Kind.RAISE, Kind.ESCALATE):
            found.append(Route(receiver=Receiver.PAGERDUTY))
        elif n.kind.ends_episode:
            found.append(Route(receiver=Receiver.PAGERDUTY, needs_incident=True))
    found.append(Route(receiver=Receiver.MQTT))
    return found


@dataclass(frozen=True, kw_only=True)
class AlertRow:
    """One outbox row as the delivery loop reads it."""

    id: int
    key: str
    receiver: Receiver
    asset_id: str
    channel: Channel
    kind: Kind
    level: Level
    previous_level: Level
    episode: int
    episode_started_at: datetime | None
    time: datetime
    prediction_time: datetime | None
    rul_hours: float
    rul_low: float
    rul_high: float
    anomaly_score: float
    model_version: str
    top_features: TopFeatures
    attempts: int

    def notification(self) -> Notification:
        """Return the notification this row stores."""
        return Notification(
            asset_id=self.asset_id,
            channel=self.channel,
            kind=self.kind,
            level=self.level,
            previous_level=self.previous_level,
            time=self.time,
            episode=self.episode,
            rul_hours=self.rul_hours,
            rul_low=self.rul_low,
            rul_high=self.rul_high,
            anomaly_score=self.anomaly_score,
            model_version=self.model_version,
            key=self.key,
        )


@dataclass(frozen=True, kw_only=True)
class Sent:
    """The receiver took the message."""

    via: str
    slack_channel: str | None = None
    slack_ts: str | None = None
    slack_thread_ts: str | None = None
    note: str | None = None  # a side step failed (e.g. editing the original message)


@dataclass(frozen=True, kw_only=True)
class Retry:
    """The receiver could not take it now; try again later."""

    error: str
    after_s: float | None = None  # the receiver's Retry-After, if it gave one


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The receiver refused it for good; retrying cannot help."""

    error: str


Outcome = Sent | Retry | Failed


def classify_http(status: int, detail: str, *, retry_after: str | None) -> Retry | Failed:
    """Return what a non-success HTTP answer means for the outbox."""
    error = f"HTTP {status}: {detail[:200]}"
    if status == 429:
        return Retry(error=error, after_s=parse_retry_after(retry_after))
    if status == 408 or status >= 500:
        return Retry(error=error)
    return Failed(error=error)


def parse_retry_after(value: str | None) -> float | None:
    """Return a Retry-After header's delay in seconds (HTTP dates are not used by Slack)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def encode_alert(notification: Notification, top_features: TopFeatures) -> bytes:
    """Return the JSON published on ``{base}/alerts/{asset}``."""
    n = notification
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "asset_id": n.asset_id,
        "channel": n.channel.value,
        "kind": n.kind.value,
        "level": n.level.name,
        "previous_level": n.previous_level.name,
        "episode": n.episode,
        "time": n.time.astimezone(UTC).isoformat(),
        "rul_hours": n.rul_hours,
        "rul_low": n.rul_low,
        "rul_high": n.rul_high,
        "anomaly_score": n.anomaly_score,
        "model_version": n.model_version,
        "top_features": [list(t) for t in top_features],
        "key": n.key,
    }
    return orjson.dumps(doc)
