"""Turn simulated windows into what edge devices publish, with optional faults.

Pure: a function of the windows, the options and a seeded generator. The
shell (``services.simulator.run``) decides when each message goes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from cbm.messages import TemperatureStatus, Window
from cbm.rawcodec import (
    encode_temperature_binary,
    encode_temperature_json,
    encode_vibration_binary,
    encode_vibration_json,
)
from cbm.topics import Topics
from services.simulator.asset import SimWindow
from services.simulator.fleet import AssetSpec

PayloadFormat = Literal["json", "binary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """Robustness faults, each a probability per window."""

    glitch: float = 0.0  # a malformed payload instead of the window
    nan_burst: float = 0.0  # a run of NaN samples (ingest dead-letters it)
    dropout: float = 0.0  # the window is never sent (a sequence gap)
    duplicate: float = 0.0  # the window is sent twice
    late: float = 0.0  # the window is held back and sent a few windows later


@dataclass(frozen=True, slots=True)
class EdgeMessage:
    """One MQTT publish of a device, with what it is for the accounting."""

    asset_id: str
    topic: str
    payload: bytes
    kind: Literal["window", "temperature", "glitch", "duplicate", "nan"]
    time: datetime  # the event time the device stamped
    window: SimWindow | None = None


def _glitches(payload: bytes) -> list[bytes]:
    return [
        payload[: len(payload) // 2],
        b"\x00\xff" * 16,
        b'{"schema_version": 7}',
        b'{"schema_version": 1, "timestamp": "soon", "seq": 1, "sample_rate_hz": 5000, '
        b'"vibration": [1, 2]}',
        b"",
    ]


def edge_messages(
    windows: Iterable[SimWindow],
    *,
    topics: Topics,
    payload_format: PayloadFormat,
    faults: Faults,
    seed: int,
    stamp: Any = None,
) -> Iterator[EdgeMessage]:
    """Yield the publishes of a fleet: temperature, then the window, per window.

    ``stamp(window) -> datetime`` gives the event time to publish (the live
    simulator compresses time to wall-clock); by default the window's own time.
    """
    rng = np.random.default_rng(seed)
    held: list[tuple[int, EdgeMessage]] = []
    for index, window in enumerate(windows):
        time: datetime = stamp(window) if stamp is not None else window.time
        yield EdgeMessage(
            window.asset_id,
            topics.raw(window.asset_id, "temperature"),
            _temperature(window, time, payload_format),
            "temperature",
            time,
        )
        due = [m for at, m in held if at <= index]
        held = [(at, m) for at, m in held if at > index]
        yield from due
        draw = rng.random(5)
        topic = topics.raw(window.asset_id, "vibration")
        payload = _vibration(window, time, payload_format)
        if draw[0] < faults.dropout:
            continue
        if draw[1] < faults.glitch:
            choices = _glitches(payload)
            bad = choices[int(rng.integers(len(choices)))]
            yield EdgeMessage(window.asset_id, topic, bad, "glitch", time)
            continue
        if draw[2] < faults.nan_burst:
            samples = window.samples.copy()
            start = int(rng.integers(0, max(1, samples.size - 20)))
            samples[start : start + 20] = np.nan
            bad = encode_vibration_binary(
                seq=window.seq, time=time, sample_rate_hz=window.sample_rate_hz, samples=samples
            )
            yield EdgeMessage(window.asset_id, topic, bad, "nan", time)
            continue
        message = EdgeMessage(window.asset_id, topic, payload, "window", time, window)
        if draw[3] < faults.late:
            held.append((index + int(rng.integers(2, 6)), message))
        else:
            yield message
        if draw[4] < faults.duplicate:
            yield EdgeMessage(window.asset_id, topic, payload, "duplicate", time, window)
    for _, message in held:
        yield message


def _vibration(window: SimWindow, time: datetime, fmt: PayloadFormat) -> bytes:
    if fmt == "binary":
        return encode_vibration_binary(
            seq=window.seq, time=time, sample_rate_hz=window.sample_rate_hz, samples=window.samples
        )
    return encode_vibration_json(
        seq=window.seq,
        time=time,
        sample_rate_hz=window.sample_rate_hz,
        samples=window.samples,
        asset_id=window.asset_id,
    )


def _temperature(window: SimWindow, time: datetime, fmt: PayloadFormat) -> bytes:
    if fmt == "binary":
        return encode_temperature_binary(
            seq=window.seq, time=time, temperature_c=window.temperature_c
        )
    return encode_temperature_json(
        seq=window.seq, time=time, temperature_c=window.temperature_c, asset_id=window.asset_id
    )


def asset_register(specs: Sequence[AssetSpec], *, site: str = "sim") -> list[dict[str, Any]]:
    """Return the settings' asset list for a simulated fleet (YAML-ready).

    The features stage needs each machine's shaft speed, bearing and resonance
    band, exactly as a real asset register would hold them; training builds its
    features from the same register, so live and training numbers agree.
    The envelope band is (0.67, 1.33) x the resonance, clipped to Nyquist.
    """
    items = []
    for spec in specs:
        nyquist = spec.sample_rate_hz / 2
        g = spec.geometry
        items.append(
            {
                "id": spec.asset_id,
                "name": f"{spec.asset_id} ({spec.fault_mode})",
                "site": site,
                "sample_rate_hz": spec.sample_rate_hz,
                "shaft_hz": spec.shaft_hz,
                "bearing": {
                    "n_balls": g.n_balls,
                    "ball_diameter_mm": g.ball_diameter_mm,
                    "pitch_diameter_mm": g.pitch_diameter_mm,
                    "contact_angle_deg": g.contact_angle_deg,
                },
                "resonance_band_hz": [
                    min(spec.resonance_hz * 0.67, nyquist),
                    min(spec.resonance_hz * 1.33, nyquist),
                ],
            }
        )
    return items


def ingested(sim: SimWindow) -> Window:
    """Return the window ingest would emit for a simulated one (received at event time)."""
    return Window(
        asset_id=sim.asset_id,
        time=sim.time,
        seq=sim.seq,
        sample_rate_hz=sim.sample_rate_hz,
        samples=sim.samples,
        received_at=sim.time,
        temperature_c=sim.temperature_c,
        temperature_status=TemperatureStatus.SPAN,
    )
