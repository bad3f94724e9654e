"""Per-asset alert state and its exact JSON round trip (stored as PostgreSQL jsonb)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.alerter.events import Prediction, ensure_utc
from services.alerter.levels import CHANNELS, Channel, Level

STATE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class ChannelState:
    """Track one alert channel of one asset: level, episode, ack and send history."""

    level: Level = Level.OK
    # Count of episodes so far; an episode starts when the channel leaves OK and
    # its raise, escalations, reminders and resolve all carry this number.
    episode: int = 0
    episode_started_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    # Last notification actually sent on this channel: the base for reminders.
    last_sent_at: datetime | None = None
    # Last notification sent per level, across episodes: the base for the rate limit.
    last_sent_by_level: Mapping[Level, datetime] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Return whether the channel is in an alert episode."""
        return self.level > Level.OK

    @property
    def acked(self) -> bool:
        """Return whether the current episode was acknowledged."""
        return self.acked_by is not None


def _new_channels() -> dict[Channel, ChannelState]:
    return {channel: ChannelState() for channel in CHANNELS}


@dataclass(frozen=True, kw_only=True)
class AssetAlertState:
    """Hold everything the alerter remembers about one asset between events."""

    asset_id: str
    channels: Mapping[Channel, ChannelState] = field(default_factory=_new_channels)
    # The last debounce_count predictions taken while running, oldest first.
    recent: tuple[Prediction, ...] = ()
    # The newest prediction, running or not: last data time and message values.
    last_prediction: Prediction | None = None
    # Event time of the latest repair or replacement applied: predictions up to
    # it are about the old bearing and are ignored.
    renewed_at: datetime | None = None

    def channel(self, channel: Channel) -> ChannelState:
        """Return the state of one channel."""
        return self.channels[channel]

    def with_channel(self, channel: Channel, channel_state: ChannelState) -> AssetAlertState:
        """Return a copy with one channel's state replaced."""
        channels = {**self.channels, channel: channel_state}
        return dataclasses.replace(self, channels=channels)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict that ``from_dict`` turns back into an equal state."""
        return {
            "version": STATE_VERSION,
            "asset_id": self.asset_id,
            "channels": {
                channel.value: _channel_to_dict(self.channels[channel]) for channel in CHANNELS
            },
            "recent": [_prediction_to_dict(p) for p in self.recent],
            "last_prediction": (
                None if self.last_prediction is None else _prediction_to_dict(self.last_prediction)
            ),
            "renewed_at": _time_to_json(self.renewed_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AssetAlertState:
        """Rebuild a state from ``to_dict`` output; raise ValueError if it is malformed."""
        try:
            if data["version"] != STATE_VERSION:
                msg = f"unsupported alert state version {data['version']!r}"
                raise ValueError(msg)
            asset_id = str(data["asset_id"])
            channels = {
                channel: _channel_from_dict(data["channels"][channel.value]) for channel in CHANNELS
            }
            recent = tuple(_prediction_from_dict(asset_id, p) for p in data["recent"])
            last = data["last_prediction"]
            last_prediction = None if last is None else _prediction_from_dict(asset_id, last)
            # Absent from states written before repairs were tracked.
            renewed_at = _time_from_json(data.get("renewed_at"))
        except (KeyError, TypeError, AttributeError) as exc:
            msg = f"malformed alert state: {exc!r}"
            raise ValueError(msg) from exc
        return cls(
            asset_id=asset_id,
            channels=channels,
            recent=recent,
            last_prediction=last_prediction,
            renewed_at=renewed_at,
        )


def _time_to_json(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_from_json(value: str | None) -> datetime | None:
    return None if value is None else ensure_utc(datetime.fromisoformat(value), "state time")


def _required_time(value: str) -> datetime:
    return ensure_utc(datetime.fromisoformat(value), "state time")


def _channel_to_dict(state: ChannelState) -> dict[str, Any]:
    return {
        "level": state.level.name,
        "episode": state.episode,
        "episode_started_at": _time_to_json(state.episode_started_at),
        "acked_by": state.acked_by,
        "acked_at": _time_to_json(state.acked_at),
        "last_sent_at": _time_to_json(state.last_sent_at),
        "last_sent_by_level": {
            level.name: sent_at.isoformat()
            for level, sent_at in sorted(state.last_sent_by_level.items())
        },
    }


def _channel_from_dict(data: Mapping[str, Any]) -> ChannelState:
    return ChannelState(
        level=Level[data["level"]],
        episode=int(data["episode"]),
        episode_started_at=_time_from_json(data["episode_started_at"]),
        acked_by=data["acked_by"],
        acked_at=_time_from_json(data["acked_at"]),
        last_sent_at=_time_from_json(data["last_sent_at"]),
        last_sent_by_level={
            Level[name]: _required_time(sent_at)
            for name, sent_at in data["last_sent_by_level"].items()
        },
    )


def _prediction_to_dict(prediction: Prediction) -> dict[str, Any]:
    return {
        "time": prediction.time.isoformat(),
        "rul_hours": prediction.rul_hours,
        "rul_low": prediction.rul_low,
        "rul_high": prediction.rul_high,
        "anomaly_score": prediction.anomaly_score,
        "running": prediction.running,
        "model_version": prediction.model_version,
    }


def _prediction_from_dict(asset_id: str, data: Mapping[str, Any]) -> Prediction:
    return Prediction(
        asset_id=asset_id,
        time=_required_time(data["time"]),
        rul_hours=float(data["rul_hours"]),
        rul_low=float(data["rul_low"]),
        rul_high=float(data["rul_high"]),
        anomaly_score=float(data["anomaly_score"]),
        running=bool(data["running"]),
        model_version=str(data["model_version"]),
    )
