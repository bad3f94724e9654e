"""Malformed and hostile inputs, one per class, each with the reason code it must get.

The raw classes extend ``tests.ingest.test_core.BAD_VIBRATION`` (whose two
time-relative entries are rebuilt against the real clock here) with
topic-level ones (asset ids a topic must not carry), temperature readings,
oversize, binary garbage, deep nesting, unicode and out-of-range dates. The
internal classes are what a stranger with broker access could put on the
stages' own topics.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from cbm.frames import FrameKind, encode_frame, encode_windows
from cbm.messages import TemperatureStatus, Window
from cbm.prediction import PredictionMessage, encode_prediction
from cbm.rawcodec import (
    VIBRATION_HEADER,
    encode_temperature_binary,
    encode_temperature_json,
    encode_vibration_binary,
)
from cbm.topics import Topics, partition_of
from tests.ingest.test_core import BAD_VIBRATION

# BAD_VIBRATION's JSON names this asset in its payloads.
JSON_ASSET = "pump-1"
TEMPERATURE_ASSET = "temp-1"
DUPLICATE_ASSET = "dup-1"
LISTED = (JSON_ASSET, TEMPERATURE_ASSET, DUPLICATE_ASSET)
_CLOCK_BOUND = {"timestamp in future", "timestamp too old"}


@dataclass(frozen=True)
class Hostile:
    """One bad message: where it goes, what it is, and the reason it must be refused with."""

    name: str
    stage: str
    topic: str
    payload: bytes
    reason: str
    # What the dead letter holds when it is not the whole message: one bad
    # prediction of a frame is dead-lettered on its own.
    item: bytes | None = None

    @property
    def dead_payload(self) -> bytes:
        """Return the payload its dead letter must carry."""
        return self.payload if self.item is None else self.item


def samples(seed: int, n: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, n).astype(np.float32)


def _json(asset: str, **fields: object) -> bytes:
    doc: dict[str, object] = {
        "schema_version": 1,
        "asset_id": asset,
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "seq": 1,
        "sample_rate_hz": 5000,
        "vibration": [0.1] * 100,
    }
    doc.update(fields)
    return orjson.dumps(doc)


def _nested(depth: int) -> list[object]:
    value: list[object] = [1.0]
    for _ in range(depth):
        value = [value]
    return value


def raw_classes(topics: Topics, *, now: datetime) -> list[Hostile]:
    """Return the raw-topic classes (ingest), each on a topic of its own asset or kind."""
    vib = topics.raw(JSON_ASSET, "vibration")
    temp = topics.raw(TEMPERATURE_ASSET, "temperature")
    recent = now - timedelta(minutes=1)
    good = encode_vibration_binary(seq=1, time=recent, sample_rate_hz=5000.0, samples=samples(1))
    out = [
        Hostile(name, "ingest", vib, payload, reason)
        for name, payload, reason in BAD_VIBRATION
        if name not in _CLOCK_BOUND
    ]
    garbage = random.Random(7).randbytes(2000)
    vibration = [
        ("future by an hour", _json(JSON_ASSET, timestamp=(now + timedelta(hours=1)).isoformat())),
        ("eight days old", _json(JSON_ASSET, timestamp=(now - timedelta(days=8)).isoformat())),
        ("year 1 at +01:00", _json(JSON_ASSET, timestamp="0001-01-01T00:00:00+01:00")),
        ("year 9999 at -01:00", _json(JSON_ASSET, timestamp="9999-12-31T23:59:59-01:00")),
        ("epoch 1e20", _json(JSON_ASSET, timestamp=1e20)),
        ("list nested 100k deep", b"[" * 100_000 + b"]" * 100_000),
        ("object nested 5k deep", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("samples nested 200 deep", _json(JSON_ASSET, vibration=_nested(200))),
        ("samples are objects", _json(JSON_ASSET, vibration=[{"g": 1}] * 100)),
        ("UTF-8 BOM before JSON", b"\xef\xbb\xbf" + _json(JSON_ASSET)),
        ("invalid UTF-8 in JSON", b'{"schema_version": 1, "note": "\xff\xfe"}'),
        ("JSON null", b"null"),
        ("JSON number", b"42"),
        ("asset_id null", _json(JSON_ASSET, asset_id=None)),
        ("asset_id object", _json(JSON_ASSET, asset_id={"$ne": None})),
        ("unicode field name", orjson.dumps({**orjson.loads(_json(JSON_ASSET)), "vibrätiön": 1})),
        ("100 kB field name", orjson.dumps({**orjson.loads(_json(JSON_ASSET)), "k" * 100_000: 1})),
        ("random bytes", b"\x00" + garbage),
        ("magic then garbage", b"CBMV" + garbage[:10]),
        (
            "header claims 4e9 samples",
            VIBRATION_HEADER.pack(b"CBMV", 1, 0, 0, 1, 0, 5000.0, 2**32 - 1),
        ),
        (
            "binary time at int64 max",
            VIBRATION_HEADER.pack(b"CBMV", 1, 0, 0, 1, 2**63 - 1, 5000.0, 100) + bytes(400),
        ),
        ("binary negative rate", good[:20] + struct.pack("<f", -5000.0) + good[24:]),
        (
            "oversize (600 kB)",
            encode_vibration_binary(
                seq=2, time=recent, sample_rate_hz=5000.0, samples=samples(2, 150_000)
            ),
        ),
    ]
    reasons = [
        "future_timestamp",
        "stale_timestamp",
        "bad_timestamp",
        "bad_timestamp",
        "bad_timestamp",
        "bad_json",
        "bad_json",
        "wrong_type",
        "wrong_type",
        "unknown_format",
        "bad_json",
        "bad_json",
        "bad_json",
        "asset_mismatch",
        "asset_mismatch",
        "unknown_field",
        "unknown_field",
        "unknown_format",
        "bad_binary",
        "bad_binary",
        "bad_timestamp",
        "bad_sample_rate",
        "payload_too_large",
    ]
    out += [
        Hostile(name, "ingest", vib, payload, reason)
        for (name, payload), reason in zip(vibration, reasons, strict=True)
    ]
    base = topics.base
    for name, asset in (
        ("empty asset id", ""),
        ("asset id of 65 characters", "a" * 65),
        ("asset id of 2,000 characters", "b" * 2000),
        ("asset id starting with a dot", ".hidden"),
        ("asset id with a space", "pump 7"),
        ("asset id with an umlaut", "pümpe-1"),
        ("asset id in Chinese", "泵-1"),
        ("asset id emoji", "💥"),
        ("asset id with right-to-left override", "\u202epmup"),
        ("asset id with zero-width space", "pump\u200b1"),
    ):
        out.append(Hostile(name, "ingest", f"{base}/raw/{asset}/vibration", good, "bad_asset_id"))
    out.append(
        Hostile(
            "asset not in the register",
            "ingest",
            topics.raw("stranger-9", "vibration"),
            good,
            "unknown_asset",
        )
    )
    t = recent
    reading = encode_temperature_binary(seq=1, time=t, temperature_c=40.0)
    out += [
        Hostile(name, "ingest", temp, payload, reason)
        for name, payload, reason in (
            (
                "900 °C",
                encode_temperature_json(seq=2, time=t, temperature_c=900.0),
                "temperature_out_of_range",
            ),
            (
                "temperature missing",
                b'{"schema_version": 1, "timestamp": 1.0, "seq": 1}',
                "missing_field",
            ),
            ("temperature record cut short", reading[:-1], "bad_binary"),
            (
                "temperature NaN",
                encode_temperature_binary(seq=3, time=t, temperature_c=math.nan),
                "non_finite",
            ),
            (
                "temperature as bool",
                orjson.dumps(
                    {"schema_version": 1, "timestamp": 1e9, "seq": 1, "temperature_c": True}
                ),
                "wrong_type",
            ),
            (
                "temperature year 1 at +05:00",
                orjson.dumps(
                    {
                        "schema_version": 1,
                        "timestamp": "0001-01-01T03:00:00+05:00",
                        "seq": 1,
                        "temperature_c": 20,
                    }
                ),
                "bad_timestamp",
            ),
            (
                "temperature an hour ahead",
                encode_temperature_json(seq=4, time=now + timedelta(hours=1), temperature_c=20.0),
                "future_timestamp",
            ),
            ("temperature garbage", b"warm", "unknown_format"),
        )
    ]
    return out


def duplicates(topics: Topics, *, now: datetime) -> list[tuple[str, bytes]]:
    """Return a good window and a good reading (accepted once, refused as duplicates after)."""
    t = now - timedelta(minutes=1)
    return [
        (
            topics.raw(DUPLICATE_ASSET, "vibration"),
            encode_vibration_binary(seq=1, time=t, sample_rate_hz=5000.0, samples=samples(3)),
        ),
        (
            topics.raw(TEMPERATURE_ASSET, "temperature"),
            encode_temperature_binary(seq=9, time=t, temperature_c=41.0),
        ),
    ]


def internal_classes(
    topics: Topics, *, now: datetime, asset: str, partitions: int
) -> list[Hostile]:
    """Return bad messages on the stages' own topics (features, inference, alerter)."""
    window = Window(
        asset_id=asset,
        time=now,
        seq=1,
        sample_rate_hz=5000.0,
        samples=samples(4),
        received_at=now,
        temperature_c=20.0,
        temperature_status=TemperatureStatus.SPAN,
    )
    frame = encode_windows([window])
    item = {"a": asset, "t": 1, "s": 1, "r": 1, "hz": 5000.0, "n": 2, "temp": None, "ts": "span"}
    windows = topics.windows(0)
    features = topics.features(0)
    feature_header = {
        "feature_set": "fs1",
        "columns": ["rms"],
        "a": ["bad id"],
        "t": [1],
        "s": [1],
        "r": [1],
        "on": [True],
    }
    prediction = PredictionMessage(
        asset_id=asset,
        time=now,
        rul_hours=40.0,
        rul_low=30.0,
        rul_high=50.0,
        health_index=0.7,
        anomaly_score=0.5,
        running=True,
        model_version="m-x",
    )
    doc = orjson.loads(encode_prediction(prediction))
    own = partition_of(asset, partitions)
    rul = topics.rul(own)

    def in_frame(name: str, item: dict[str, object], reason: str, topic: str = rul) -> Hostile:
        frame = encode_frame(FrameKind.PREDICTIONS, {"predictions": [item]})
        return Hostile(name, "alerter", topic, frame, reason, item=orjson.dumps(item))

    return [
        Hostile("window frame garbage", "features", windows, b"garbage", "bad_frame"),
        Hostile(
            "window frame of the wrong kind",
            "features",
            windows,
            encode_frame(FrameKind.FEATURES, {"windows": []}),
            "bad_frame",
        ),
        Hostile(
            "window frame version 9",
            "features",
            windows,
            frame[:4] + b"\x09" + frame[5:],
            "bad_schema_version",
        ),
        Hostile("window frame cut short", "features", windows, frame[:-4], "bad_frame"),
        Hostile(
            "window time beyond year 9999",
            "features",
            windows,
            encode_frame(FrameKind.WINDOWS, {"windows": [{**item, "t": 10**18}]}, bytes(8)),
            "bad_frame",
        ),
        Hostile(
            "window of a bad asset id",
            "features",
            windows,
            encode_frame(FrameKind.WINDOWS, {"windows": [{**item, "a": "x/#"}]}, bytes(8)),
            "bad_asset_id",
        ),
        Hostile(
            "window with negative sample count",
            "features",
            windows,
            encode_frame(
                FrameKind.WINDOWS, {"windows": [{**item, "n": -2}, {**item, "n": 4}]}, bytes(8)
            ),
            "bad_frame",
        ),
        Hostile(
            "window at 0 Hz",
            "features",
            windows,
            encode_frame(FrameKind.WINDOWS, {"windows": [{**item, "hz": 0}]}, bytes(8)),
            "bad_frame",
        ),
        Hostile("feature frame garbage", "inference", features, b"\x00" * 64, "bad_frame"),
        Hostile(
            "feature frame of a bad asset id",
            "inference",
            features,
            encode_frame(FrameKind.FEATURES, feature_header, bytes(8)),
            "bad_asset_id",
        ),
        Hostile(
            "feature frame with too few values",
            "inference",
            features,
            encode_frame(FrameKind.FEATURES, {**feature_header, "a": [asset]}, bytes(4)),
            "bad_frame",
        ),
        Hostile(
            "feature frame with other columns",
            "inference",
            features,
            encode_frame(FrameKind.FEATURES, {**feature_header, "a": [asset]}, bytes(8)),
            "bad_frame",
        ),
        Hostile("prediction frame garbage", "alerter", rul, b"{not json", "bad_frame"),
        Hostile(
            "prediction frame with a body",
            "alerter",
            rul,
            encode_frame(FrameKind.PREDICTIONS, {"predictions": []}, b"xx"),
            "bad_frame",
        ),
        in_frame("prediction interval upside down", {**doc, "rul_low": 90.0}, "bad_interval"),
        in_frame(
            "prediction on another partition's topic",
            doc,
            "asset_mismatch",
            topics.rul((own + 1) % partitions),
        ),
        in_frame(
            "prediction in year 1 at +01:00",
            {**doc, "time": "0001-01-01T00:30:00+01:00"},
            "bad_timestamp",
        ),
        in_frame(
            "prediction from the year 9999",
            {**doc, "time": "9999-12-31T23:59:59+00:00"},
            "future_timestamp",
        ),
        in_frame("prediction without its fields", {"schema_version": 1}, "wrong_type"),
    ]
