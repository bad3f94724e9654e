"""Typed messages that travel inside the pipeline; decoded once at the edge."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from cbm.errors import ContractError

SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FloatArray = npt.NDArray[np.float32]


def to_micros(t: datetime) -> int:
    """Return microseconds since the Unix epoch of an aware datetime."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: the pipeline uses aware UTC times only")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    """Return the aware UTC datetime of microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=us)


class TemperatureStatus(StrEnum):
    """How a window's temperature was found."""

    SPAN = "span"  # mean of the readings inside the window's time span
    LATEST = "latest"  # the latest reading before the window, within the max age
    MISSING = "missing"  # none recent enough; temperature_c is NaN


@dataclass(frozen=True, slots=True, kw_only=True)
class RawVibration:
    """One vibration window as a device sent it, after validation."""

    asset_id: str
    time: datetime  # event time of the first sample, UTC
    seq: int
    sample_rate_hz: float
    samples: FloatArray
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RawTemperature:
    """One temperature reading as a device sent it, after validation."""

    asset_id: str
    time: datetime
    seq: int
    temperature_c: float
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A validated vibration window paired with its temperature (ingest's output)."""

    asset_id: str
    time: datetime
    seq: int
    sample_rate_hz: float
    samples: FloatArray
    received_at: datetime
    temperature_c: float
    temperature_status: TemperatureStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An input a stage rejected, with the reason and an excerpt of the payload."""

    stage: str
    reason: str
    detail: str
    topic: str
    received_at: datetime
    payload: bytes
    asset_id: str | None = None

    @classmethod
    def of(
        cls,
        stage: str,
        exc: ContractError,
        *,
        topic: str,
        payload: bytes,
        received_at: datetime,
        asset_id: str | None = None,
    ) -> DeadLetter:
        """Return the dead letter of an input refused with ``exc``."""
        return cls(
            stage=stage,
            reason=exc.reason,
            detail=exc.detail,
            topic=topic,
            received_at=received_at,
            payload=payload,
            asset_id=asset_id,
        )

    def document(self, excerpt_bytes: int) -> dict[str, object]:
        """Return the JSON document published on ``{base}/deadletter/{stage}``."""
        return {
            "schema_version": 1,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "asset_id": self.asset_id,
            "received_at": self.received_at.isoformat(),
            "payload_size": len(self.payload),
            "payload_excerpt_b64": base64.b64encode(self.payload[:excerpt_bytes]).decode(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureVectors:
    """Feature vectors of many windows, column-wise (features -> inference).

    ``values[i]`` holds the features of ``asset_ids[i]`` at ``times[i]`` in the
    order of ``columns``; ``running[i]`` is False while the machine was off.
    """

    feature_set: str
    columns: tuple[str, ...]
    asset_ids: tuple[str, ...]
    times: tuple[datetime, ...]
    seqs: tuple[int, ...]
    received_at: tuple[datetime, ...]
    running: tuple[bool, ...]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.asset_ids)
