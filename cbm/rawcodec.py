"""Decode what devices publish: raw vibration and temperature, JSON or binary.

JSON vibration (schema_version 1)::

    {"schema_version": 1, "asset_id": "pump-001",          # asset_id optional
     "timestamp": "2026-12-04T10:00:00.000Z",             # or epoch seconds
     "seq": 42, "sample_rate_hz": 5000, "vibration": [0.01, ...]}

JSON temperature: ``schema_version``, optional ``asset_id``, ``timestamp``,
``seq``, ``temperature_c``.

Binary (little-endian), chosen by the 4-byte magic at the start:

    vibration   "CBMV" u8 version=1, u8 flags=0, u16 reserved=0, u32 seq,
                i64 timestamp (µs since epoch, UTC), f32 sample_rate_hz,
                u32 n_samples, then n_samples × f32        (28-byte header)
    temperature "CBMT" u8 version=1, u8 flags=0, u16 reserved=0, u32 seq,
                i64 timestamp (µs), f32 temperature_c       (24 bytes)

Checks that need no settings live here; range checks against the settings
(sample counts, sample rate, time horizon) are the ingest core's.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from cbm.errors import ContractError
from cbm.messages import SCHEMA_VERSION, RawTemperature, RawVibration, from_micros, to_micros

VIBRATION_MAGIC = b"CBMV"
TEMPERATURE_MAGIC = b"CBMT"
VIBRATION_HEADER = struct.Struct("<4sBBHIqfI")
TEMPERATURE_RECORD = struct.Struct("<4sBBHIqf")
BINARY_VERSION = 1

_VIBRATION_FIELDS = frozenset(
    {"schema_version", "asset_id", "timestamp", "seq", "sample_rate_hz", "vibration"}
)
_TEMPERATURE_FIELDS = frozenset({"schema_version", "asset_id", "timestamp", "seq", "temperature_c"})
_OPTIONAL = frozenset({"asset_id"})
_MAX_SEQ = 2**32 - 1


def decode_vibration(payload: bytes, *, asset_id: str, received_at: datetime) -> RawVibration:
    """Decode one raw vibration payload of ``asset_id``; ContractError says why not."""
    if payload[:4] == VIBRATION_MAGIC:
        return _vibration_binary(payload, asset_id, received_at)
    doc = _json_object(payload, _VIBRATION_FIELDS)
    _check_asset(doc, asset_id)
    samples = _samples(doc["vibration"])
    return RawVibration(
        asset_id=asset_id,
        time=_timestamp(doc["timestamp"]),
        seq=_seq(doc["seq"]),
        sample_rate_hz=_number(doc["sample_rate_hz"], "sample_rate_hz"),
        samples=samples,
        received_at=received_at,
    )


def decode_temperature(payload: bytes, *, asset_id: str, received_at: datetime) -> RawTemperature:
    """Decode one raw temperature payload of ``asset_id``; ContractError says why not."""
    if payload[:4] == TEMPERATURE_MAGIC:
        if len(payload) != TEMPERATURE_RECORD.size:
            raise ContractError(
                "bad_binary", f"temperature record is {len(payload)} bytes, expected 24"
            )
        _, version, _flags, _res, seq, time_us, value = TEMPERATURE_RECORD.unpack(payload)
        _binary_version(version)
        return RawTemperature(
            asset_id=asset_id,
            time=_micros(time_us),
            seq=seq,
            temperature_c=_finite(value, "temperature_c"),
            received_at=received_at,
        )
    doc = _json_object(payload, _TEMPERATURE_FIELDS)
    _check_asset(doc, asset_id)
    return RawTemperature(
        asset_id=asset_id,
        time=_timestamp(doc["timestamp"]),
        seq=_seq(doc["seq"]),
        temperature_c=_number(doc["temperature_c"], "temperature_c"),
        received_at=received_at,
    )


def encode_vibration_binary(
    *, seq: int, time: datetime, sample_rate_hz: float, samples: np.ndarray[Any, Any]
) -> bytes:
    """Return the binary form of one vibration window (what a device sends)."""
    data = np.ascontiguousarray(samples, dtype="<f4")
    header = VIBRATION_HEADER.pack(
        VIBRATION_MAGIC, BINARY_VERSION, 0, 0, seq, to_micros(time), sample_rate_hz, data.size
    )
    return header + data.tobytes()


def encode_vibration_json(
    *,
    seq: int,
    time: datetime,
    sample_rate_hz: float,
    samples: np.ndarray[Any, Any],
    asset_id: str | None = None,
) -> bytes:
    """Return the JSON form of one vibration window (what a device sends)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "timestamp": time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "seq": seq,
        "sample_rate_hz": sample_rate_hz,
        "vibration": np.asarray(samples, dtype=np.float64).tolist(),
    }
    if asset_id is not None:
        doc["asset_id"] = asset_id
    return orjson.dumps(doc)


def encode_temperature_binary(*, seq: int, time: datetime, temperature_c: float) -> bytes:
    """Return the binary form of one temperature reading."""
    return TEMPERATURE_RECORD.pack(
        TEMPERATURE_MAGIC, BINARY_VERSION, 0, 0, seq, to_micros(time), temperature_c
    )


def encode_temperature_json(
    *, seq: int, time: datetime, temperature_c: float, asset_id: str | None = None
) -> bytes:
    """Return the JSON form of one temperature reading."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "timestamp": time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "seq": seq,
        "temperature_c": temperature_c,
    }
    if asset_id is not None:
        doc["asset_id"] = asset_id
    return orjson.dumps(doc)


def _vibration_binary(payload: bytes, asset_id: str, received_at: datetime) -> RawVibration:
    if len(payload) < VIBRATION_HEADER.size:
        raise ContractError("bad_binary", f"{len(payload)} bytes is shorter than the header")
    _, version, _flags, _res, seq, time_us, rate, n = VIBRATION_HEADER.unpack_from(payload)
    _binary_version(version)
    expected = VIBRATION_HEADER.size + 4 * n
    if len(payload) != expected:
        raise ContractError(
            "bad_binary", f"header announces {n} samples ({expected} bytes), got {len(payload)}"
        )
    samples = np.frombuffer(payload, dtype="<f4", offset=VIBRATION_HEADER.size)
    if samples.size == 0:
        raise ContractError("empty_samples", "window has no samples")
    if not np.isfinite(samples).all():
        raise ContractError("non_finite", "samples contain NaN or infinity")
    return RawVibration(
        asset_id=asset_id,
        time=_micros(time_us),
        seq=seq,
        sample_rate_hz=_finite(rate, "sample_rate_hz"),
        samples=samples.astype(np.float32, copy=False),
        received_at=received_at,
    )


def _binary_version(version: int) -> None:
    if version != BINARY_VERSION:
        raise ContractError("bad_schema_version", f"binary version {version} is not supported")


def _json_object(payload: bytes, fields: frozenset[str]) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        if payload[:1] in (b"{", b"["):
            raise ContractError("bad_json", "payload is not valid JSON") from None
        raise ContractError(
            "unknown_format", "payload is neither JSON nor a known binary form"
        ) from None
    if not isinstance(doc, dict):
        raise ContractError("bad_json", f"JSON payload is a {type(doc).__name__}, not an object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ContractError("bad_schema_version", f"schema_version {version!r} is not supported")
    missing = sorted(fields - _OPTIONAL - doc.keys())
    if missing:
        raise ContractError("missing_field", f"missing {', '.join(missing)}")
    extra = sorted(doc.keys() - fields)
    if extra:
        raise ContractError("unknown_field", f"unknown {', '.join(extra)[:200]}")
    return doc


def _check_asset(doc: dict[str, Any], asset_id: str) -> None:
    claimed = doc.get("asset_id", asset_id)
    if claimed != asset_id:
        raise ContractError(
            "asset_mismatch", f"payload asset_id {str(claimed)[:80]!r} != topic {asset_id!r}"
        )


def _samples(value: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not isinstance(value, list):
        raise ContractError("wrong_type", f"vibration is a {type(value).__name__}, not a list")
    if not value:
        raise ContractError("empty_samples", "window has no samples")
    try:
        array = np.array(value)
    except ValueError:  # ragged nesting
        raise ContractError("wrong_type", "vibration must be a flat list of numbers") from None
    # Only ints and floats: None, strings, bools and nested lists are refused
    # rather than coerced (numpy would turn None into NaN and True into 1.0).
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        raise ContractError("wrong_type", "vibration must be a flat list of numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ContractError("non_finite", "samples contain NaN or infinity")
    # float32 is the pipeline's sample type; a finite float64 may still overflow it.
    with np.errstate(over="ignore"):
        samples = array.astype(np.float32)
    if not np.isfinite(samples).all():
        raise ContractError("non_finite", "samples overflow float32")
    return samples


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError("wrong_type", f"{name} is a {type(value).__name__}, not a number")
    return _finite(float(value), name)


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ContractError("non_finite", f"{name} is not finite")
    return value


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError("wrong_type", f"seq is a {type(value).__name__}, not an integer")
    if not 0 <= value <= _MAX_SEQ:
        raise ContractError("bad_seq", f"seq {value} is outside 0..2^32-1")
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ContractError("wrong_type", "timestamp is a bool")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 32_503_680_000:  # year 3000
            raise ContractError("bad_timestamp", f"epoch seconds {value!r} out of range")
        return _micros(round(value * 1_000_000))
    if not isinstance(value, str):
        raise ContractError("wrong_type", f"timestamp is a {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ContractError("bad_timestamp", f"timestamp {value[:64]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise ContractError("bad_timestamp", f"timestamp {value[:64]!r} has no time zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +01:00 is in year 0 at UTC
        raise ContractError("bad_timestamp", f"timestamp {value[:64]!r} is out of range") from None


def _micros(us: int) -> datetime:
    try:
        return from_micros(us)
    except OverflowError:
        raise ContractError("bad_timestamp", f"timestamp {us} µs is out of range") from None
