"""Ingest's pure core: validate raw payloads, deduplicate, pair with temperature.

No I/O and no clock: the shell passes the batch, the receipt times and
``now``; the core returns accepted windows and readings, dead letters with a
reason code, and per-asset bookkeeping (gaps, last sequence number).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cbm.errors import ContractError
from cbm.messages import (
    DeadLetter,
    RawTemperature,
    RawVibration,
    TemperatureStatus,
    Window,
    to_micros,
)
from cbm.rawcodec import decode_temperature, decode_vibration
from cbm.settings import AssetsSettings, IngestSettings
from cbm.topics import Topics

STAGE = "ingest"


@dataclass(frozen=True, slots=True)
class RawInput:
    """One raw MQTT message handed to the core."""

    topic: str
    payload: bytes
    received_at: datetime
    redelivered: bool = False


@dataclass
class AssetTrack:
    """What ingest remembers of one asset between batches."""

    window_times: set[int] = field(default_factory=set)
    window_seqs: dict[int, int] = field(default_factory=dict)  # seq -> time µs
    order: deque[tuple[int, int]] = field(default_factory=deque)  # (time µs, seq), FIFO
    temperature_times: list[int] = field(default_factory=list)  # sorted µs
    temperature_values: list[float] = field(default_factory=list)
    last_seq: int | None = None
    last_time_us: int | None = None

    def remember_window(self, time_us: int, seq: int, depth: int) -> None:
        """Remember a window for duplicate detection, forgetting the oldest past ``depth``."""
        self.window_times.add(time_us)
        self.window_seqs[seq] = time_us
        self.order.append((time_us, seq))
        while len(self.order) > depth:
            old_time, old_seq = self.order.popleft()
            self.window_times.discard(old_time)
            if self.window_seqs.get(old_seq) == old_time:
                del self.window_seqs[old_seq]

    def add_temperature(self, time_us: int, value: float, horizon_us: int) -> bool:
        """Insert a reading in time order; return False if that time is already known."""
        i = bisect.bisect_left(self.temperature_times, time_us)
        if i < len(self.temperature_times) and self.temperature_times[i] == time_us:
            return False
        self.temperature_times.insert(i, time_us)
        self.temperature_values.insert(i, value)
        # Forget readings older than the horizon behind the newest one.
        cut = bisect.bisect_left(self.temperature_times, self.temperature_times[-1] - horizon_us)
        if cut:
            del self.temperature_times[:cut]
            del self.temperature_values[:cut]
        return True


@dataclass
class IngestState:
    """Per-asset tracks, keyed by asset id."""

    tracks: dict[str, AssetTrack] = field(default_factory=dict)

    def track(self, asset_id: str) -> AssetTrack:
        """Return the asset's track, creating it on first sight."""
        found = self.tracks.get(asset_id)
        if found is None:
            found = self.tracks[asset_id] = AssetTrack()
        return found


@dataclass
class AssetTally:
    """Per-asset bookkeeping of one batch."""

    gaps: int = 0
    last_seq: int | None = None
    dead_letters: int = 0
    last_received_at: datetime | None = None


@dataclass
class IngestOutput:
    """What one batch produced."""

    windows: list[Window] = field(default_factory=list)
    temperatures: list[RawTemperature] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tallies: dict[str, AssetTally] = field(default_factory=dict)

    def tally(self, asset_id: str) -> AssetTally:
        """Return the asset's tally for this batch."""
        found = self.tallies.get(asset_id)
        if found is None:
            found = self.tallies[asset_id] = AssetTally()
        return found


@dataclass(frozen=True, slots=True)
class IngestRules:
    """Everything the core needs from the settings."""

    ingest: IngestSettings
    assets: AssetsSettings
    topics: Topics


def temperature_horizon_s(max_age_s: float) -> float:
    """Return how far back readings are kept: a few max ages, so a late window still pairs."""
    return max_age_s * 4


def step(
    state: IngestState, batch: Sequence[RawInput], rules: IngestRules, *, now: datetime
) -> tuple[IngestState, IngestOutput]:
    """Validate and pair one batch; temperatures first so windows see them."""
    out = IngestOutput()
    vibrations: list[tuple[RawInput, RawVibration]] = []
    for message in batch:
        asset_id: str | None = None
        try:
            if len(message.payload) > rules.ingest.max_payload_bytes:
                raise ContractError(
                    "payload_too_large",
                    f"{len(message.payload)} bytes > {rules.ingest.max_payload_bytes}",
                )
            asset_id, kind = rules.topics.parse_raw(message.topic)
            if not rules.ingest.accept_unknown_assets and rules.assets.get(asset_id) is None:
                raise ContractError("unknown_asset", f"{asset_id!r} is not in the asset list")
            if kind == "temperature":
                reading = decode_temperature(
                    message.payload, asset_id=asset_id, received_at=message.received_at
                )
                _accept_temperature(state, out, reading, message, rules, now=now)
            else:
                window = decode_vibration(
                    message.payload, asset_id=asset_id, received_at=message.received_at
                )
                _check_window(window, rules.ingest, now)
                vibrations.append((message, window))
        except ContractError as exc:
            _dead_letter(out, message, exc, asset_id)
    for message, window in vibrations:
        try:
            _accept_window(state, out, window, message, rules)
        except ContractError as exc:
            _dead_letter(out, message, exc, window.asset_id)
    return state, out


def _dead_letter(
    out: IngestOutput, message: RawInput, exc: ContractError, asset_id: str | None
) -> None:
    out.dead_letters.append(
        DeadLetter.of(
            STAGE,
            exc,
            topic=message.topic,
            payload=message.payload,
            received_at=message.received_at,
            asset_id=asset_id,
        )
    )
    if asset_id is not None:
        out.tally(asset_id).dead_letters += 1


def _check_time(t: datetime, ingest: IngestSettings, now: datetime) -> None:
    if t > now + timedelta(seconds=ingest.max_future_s):
        raise ContractError("future_timestamp", f"{t.isoformat()} is ahead of {now.isoformat()}")
    if t < now - timedelta(seconds=ingest.max_age_s):
        raise ContractError("stale_timestamp", f"{t.isoformat()} is older than the horizon")


def _check_window(window: RawVibration, ingest: IngestSettings, now: datetime) -> None:
    n = window.samples.size
    if n < ingest.min_samples:
        raise ContractError("too_few_samples", f"{n} samples < {ingest.min_samples}")
    if n > ingest.max_samples:
        raise ContractError("too_many_samples", f"{n} samples > {ingest.max_samples}")
    rate = window.sample_rate_hz
    if not ingest.min_sample_rate_hz <= rate <= ingest.max_sample_rate_hz:
        raise ContractError("bad_sample_rate", f"sample_rate_hz {rate} out of bounds")
    _check_time(window.time, ingest, now)


def _accept_temperature(
    state: IngestState,
    out: IngestOutput,
    reading: RawTemperature,
    message: RawInput,
    rules: IngestRules,
    *,
    now: datetime,
) -> None:
    ingest = rules.ingest
    if not ingest.temperature_min_c <= reading.temperature_c <= ingest.temperature_max_c:
        raise ContractError("temperature_out_of_range", f"{reading.temperature_c} °C")
    _check_time(reading.time, ingest, now)
    horizon_us = round(temperature_horizon_s(ingest.temperature_max_age_s) * 1_000_000)
    track = state.track(reading.asset_id)
    added = track.add_temperature(to_micros(reading.time), reading.temperature_c, horizon_us)
    if not added and not message.redelivered:
        raise ContractError("duplicate", f"temperature at {reading.time.isoformat()} seen")
    out.temperatures.append(reading)
    out.tally(reading.asset_id).last_received_at = reading.received_at


def _accept_window(
    state: IngestState,
    out: IngestOutput,
    raw: RawVibration,
    message: RawInput,
    rules: IngestRules,
) -> None:
    track = state.track(raw.asset_id)
    time_us = to_micros(raw.time)
    seen = time_us in track.window_times
    seq_time = track.window_seqs.get(raw.seq)
    newest = track.last_time_us is None or time_us > track.last_time_us
    if seen or (seq_time is not None and not newest):
        # A redelivery is what we may have emitted before a crash or a
        # reconnect: emit it again; downstream writes are idempotent.
        if not message.redelivered:
            raise ContractError(
                "duplicate", f"window at {raw.time.isoformat()} / seq {raw.seq} already accepted"
            )
    else:
        tally = out.tally(raw.asset_id)
        if newest:
            if track.last_seq is not None and raw.seq > track.last_seq + 1:
                tally.gaps += raw.seq - track.last_seq - 1
            track.last_seq = raw.seq
            track.last_time_us = time_us
            tally.last_seq = raw.seq
        if seq_time is not None:
            # Same seq with a newer time: the device restarted its counter.
            track.window_seqs.pop(raw.seq, None)
        track.remember_window(time_us, raw.seq, rules.ingest.dedupe_depth)
    temperature, status = _pair(track, raw, rules.ingest)
    out.windows.append(
        Window(
            asset_id=raw.asset_id,
            time=raw.time,
            seq=raw.seq,
            sample_rate_hz=raw.sample_rate_hz,
            samples=raw.samples,
            received_at=raw.received_at,
            temperature_c=temperature,
            temperature_status=status,
        )
    )
    out.tally(raw.asset_id).last_received_at = raw.received_at


def _pair(
    track: AssetTrack, raw: RawVibration, ingest: IngestSettings
) -> tuple[float, TemperatureStatus]:
    times = track.temperature_times
    if not times:
        return math.nan, TemperatureStatus.MISSING
    start = to_micros(raw.time)
    end = start + round(raw.samples.size / raw.sample_rate_hz * 1_000_000)
    lo = bisect.bisect_left(times, start)
    hi = bisect.bisect_right(times, end)
    if hi > lo:
        values = track.temperature_values[lo:hi]
        return sum(values) / len(values), TemperatureStatus.SPAN
    if lo > 0 and start - times[lo - 1] <= ingest.temperature_max_age_s * 1_000_000:
        return track.temperature_values[lo - 1], TemperatureStatus.LATEST
    return math.nan, TemperatureStatus.MISSING
