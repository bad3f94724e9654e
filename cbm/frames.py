"""Encode the internal hops: many records of one partition in one MQTT message.

A frame is::

    "CBMF"  u8 version=1  u8 kind  u16 reserved=0  u32 header_len
    header  JSON object (orjson), header_len bytes
    body    little-endian arrays the header describes

One MQTT message costs ~0.3 ms of Python per hop while a window's numbers cost
microseconds to copy, so a stage packs a whole micro-batch of a partition
into one frame. Per-record metadata sits in the JSON header; the bulky numbers
(samples, feature matrices) sit in the body, decoded with ``np.frombuffer``
without a copy.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import numpy as np
import orjson

from cbm.errors import ContractError
from cbm.messages import FeatureVectors, TemperatureStatus, Window, from_micros, to_micros
from cbm.topics import validate_asset_id

MAGIC = b"CBMF"
VERSION = 1
_PREFIX = struct.Struct("<4sBBHI")


class FrameKind(IntEnum):
    """What a frame carries."""

    WINDOWS = 1
    FEATURES = 2
    PREDICTIONS = 3


def encode_frame(kind: FrameKind, header: dict[str, Any], body: bytes = b"") -> bytes:
    """Return one frame of ``kind`` with a JSON header and a binary body."""
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return _PREFIX.pack(MAGIC, VERSION, int(kind), 0, len(head)) + head + body


def decode_frame(payload: bytes, expected: FrameKind) -> tuple[dict[str, Any], memoryview]:
    """Return the header and body of a frame; ContractError if it is not one of ``expected``."""
    if len(payload) < _PREFIX.size or payload[:4] != MAGIC:
        raise ContractError("bad_frame", "payload is not a CBM frame")
    _, version, kind, _, head_len = _PREFIX.unpack_from(payload)
    if version != VERSION:
        raise ContractError("bad_schema_version", f"frame version {version} is not supported")
    if kind != expected:
        raise ContractError("bad_frame", f"frame kind {kind} where {expected.name} was expected")
    end = _PREFIX.size + head_len
    if end > len(payload):
        raise ContractError("bad_frame", "frame header runs past the payload")
    try:
        header = orjson.loads(payload[_PREFIX.size : end])
    except orjson.JSONDecodeError:
        raise ContractError("bad_frame", "frame header is not JSON") from None
    if not isinstance(header, dict):
        raise ContractError("bad_frame", "frame header is not an object")
    return header, memoryview(payload)[end:]


def encode_windows(windows: Sequence[Window]) -> bytes:
    """Return one frame holding ``windows`` (ingest -> features)."""
    items = [
        {
            "a": w.asset_id,
            "t": to_micros(w.time),
            "s": w.seq,
            "r": to_micros(w.received_at),
            "hz": w.sample_rate_hz,
            "n": int(w.samples.size),
            "temp": None if math.isnan(w.temperature_c) else w.temperature_c,
            "ts": w.temperature_status.value,
        }
        for w in windows
    ]
    body = b"".join(np.ascontiguousarray(w.samples, dtype="<f4").tobytes() for w in windows)
    return encode_frame(FrameKind.WINDOWS, {"windows": items}, body)


def decode_windows(payload: bytes) -> list[Window]:
    """Return the windows of one frame, in the order they were encoded."""
    header, body = decode_frame(payload, FrameKind.WINDOWS)
    try:
        items = header["windows"]
        total = sum(int(item["n"]) for item in items)
        if 4 * total != len(body):
            raise ContractError("bad_frame", f"body holds {len(body)} bytes for {total} samples")
        samples = np.frombuffer(body, dtype="<f4")
        windows: list[Window] = []
        offset = 0
        for item in items:
            n = int(item["n"])
            rate = float(item["hz"])
            if n < 0 or not (math.isfinite(rate) and rate > 0):
                raise ContractError("bad_frame", f"a window of {n} samples at {rate} Hz")
            temp = item["temp"]
            windows.append(
                Window(
                    asset_id=validate_asset_id(str(item["a"])),
                    time=from_micros(int(item["t"])),
                    seq=int(item["s"]),
                    sample_rate_hz=rate,
                    samples=samples[offset : offset + n],
                    received_at=from_micros(int(item["r"])),
                    temperature_c=math.nan if temp is None else float(temp),
                    temperature_status=TemperatureStatus(item["ts"]),
                )
            )
            offset += n
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ContractError("bad_frame", f"window header is malformed: {exc!r}"[:200]) from None
    return windows


def encode_features(vectors: FeatureVectors) -> bytes:
    """Return one frame holding feature vectors (features -> inference)."""
    header = {
        "feature_set": vectors.feature_set,
        "columns": list(vectors.columns),
        "a": list(vectors.asset_ids),
        "t": [to_micros(t) for t in vectors.times],
        "s": list(vectors.seqs),
        "r": [to_micros(t) for t in vectors.received_at],
        "on": list(vectors.running),
    }
    body = np.ascontiguousarray(vectors.values, dtype="<f8").tobytes()
    return encode_frame(FrameKind.FEATURES, header, body)


def decode_features(payload: bytes) -> FeatureVectors:
    """Return the feature vectors of one frame."""
    header, body = decode_frame(payload, FrameKind.FEATURES)
    try:
        columns = tuple(str(c) for c in header["columns"])
        assets = tuple(validate_asset_id(str(a)) for a in header["a"])
        n, f = len(assets), len(columns)
        if len(body) != 8 * n * f:
            raise ContractError("bad_frame", f"body holds {len(body)} bytes for {n}x{f} values")
        fields = (header["t"], header["s"], header["r"], header["on"])
        if any(len(x) != n for x in fields):
            raise ContractError("bad_frame", "feature header lists differ in length")
        return FeatureVectors(
            feature_set=str(header["feature_set"]),
            columns=columns,
            asset_ids=assets,
            times=tuple(from_micros(int(t)) for t in header["t"]),
            seqs=tuple(int(s) for s in header["s"]),
            received_at=tuple(from_micros(int(t)) for t in header["r"]),
            running=tuple(bool(x) for x in header["on"]),
            values=np.frombuffer(body, dtype="<f8").reshape(n, f),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ContractError("bad_frame", f"feature header is malformed: {exc!r}"[:200]) from None
