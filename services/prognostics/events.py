"""Maintenance events: what happened to a machine, as recorded by people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from cbm.topics import validate_asset_id

NOTE_MAX_CHARS: Final = 2000


class EventKind(StrEnum):
    """Name what happened to the machine (the CHECK of sql/0007 lists the same)."""

    FAILURE = "failure"
    REPAIR = "repair"
    REPLACEMENT = "replacement"
    INSPECTION = "inspection"


@dataclass(frozen=True, slots=True, kw_only=True)
class MaintenanceEvent:
    """Record one thing that happened to one asset at one event time."""

    asset_id: str
    time: datetime
    kind: EventKind
    note: str = ""
    recorded_by: str
    recorded_at: datetime | None = None  # set by the database on insert

    def __post_init__(self) -> None:
        validate_asset_id(self.asset_id)
        object.__setattr__(self, "time", _utc(self.time, "time"))
        object.__setattr__(self, "kind", EventKind(self.kind))
        if self.recorded_at is not None:
            object.__setattr__(self, "recorded_at", _utc(self.recorded_at, "recorded_at"))
        if len(self.note) > NOTE_MAX_CHARS:
            msg = f"note has {len(self.note)} characters, at most {NOTE_MAX_CHARS} are kept"
            raise ValueError(msg)
        if not self.recorded_by:
            msg = "recorded_by must name who recorded the event"
            raise ValueError(msg)


def parse_time(text: str) -> datetime:
    """Return the aware UTC time of an ISO 8601 string that carries a UTC offset (or Z)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 time, e.g. 2026-03-01T12:00:00Z"
        raise ValueError(msg) from None
    return _utc(value, "time")


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{name} {value.isoformat()} has no UTC offset; add one, e.g. Z or +01:00"
        raise ValueError(msg)
    return value.astimezone(UTC)
