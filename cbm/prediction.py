"""The prediction message: inference -> alerter and outside consumers.

Published as JSON on ``{base}/predictions/{asset}``, one per asset and time,
so other systems can subscribe to one machine without knowing partitions.
The alerter reads the same documents batched: one frame per partition and
inference batch on ``{base}/rul/{partition}`` (:func:`encode_predictions`),
so it pays for one MQTT message per batch, not per prediction::

    {"schema_version": 1, "asset_id": "pump-001", "time": "2026-12-04T10:00:00+00:00",
     "rul_hours": 42.1, "rul_low": 30.5, "rul_high": 55.0, "health_index": 0.62,
     "anomaly_score": 1.3, "running": true, "model_version": "m-3f2a9c1b",
     "top_features": [["env_bpfo", 0.41], ["rms", 0.22]]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from cbm.errors import ContractError
from cbm.frames import FrameKind, decode_frame, encode_frame
from cbm.messages import SCHEMA_VERSION
from cbm.topics import validate_asset_id


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionMessage:
    """RUL in hours with an interval, health index and anomaly score of one asset at one time."""

    asset_id: str
    time: datetime
    rul_hours: float
    rul_low: float
    rul_high: float
    health_index: float  # 1 healthy .. 0 at failure
    anomaly_score: float  # distance from the asset's healthy baseline, in baseline sigmas
    running: bool
    model_version: str
    top_features: tuple[tuple[str, float], ...] = field(default=())


def encode_prediction(p: PredictionMessage) -> bytes:
    """Return the JSON form of a prediction."""
    return orjson.dumps(_document(p))


def encode_predictions(predictions: Sequence[PredictionMessage]) -> bytes:
    """Return one frame holding predictions (inference -> alerter), as JSON documents."""
    return encode_frame(FrameKind.PREDICTIONS, {"predictions": [_document(p) for p in predictions]})


def decode_predictions(payload: bytes) -> list[tuple[bytes, PredictionMessage | ContractError]]:
    """Return each prediction of a frame as (its JSON, the prediction or why it is malformed).

    A frame that is not one raises ContractError; a bad document inside a good
    frame is returned with its error, so the others still count.
    """
    header, body = decode_frame(payload, FrameKind.PREDICTIONS)
    items = header.get("predictions")
    if not isinstance(items, list) or len(body):
        raise ContractError("bad_frame", "a predictions frame holds a list and no body")
    out: list[tuple[bytes, PredictionMessage | ContractError]] = []
    for item in items:
        raw = orjson.dumps(item)
        try:
            out.append((raw, _from_document(item)))
        except ContractError as exc:
            out.append((raw, exc))
    return out


def _document(p: PredictionMessage) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "asset_id": p.asset_id,
        "time": p.time.astimezone(UTC).isoformat(),
        "rul_hours": p.rul_hours,
        "rul_low": p.rul_low,
        "rul_high": p.rul_high,
        "health_index": p.health_index,
        "anomaly_score": p.anomaly_score,
        "running": p.running,
        "model_version": p.model_version,
        "top_features": [list(t) for t in p.top_features],
    }


def decode_prediction(payload: bytes) -> PredictionMessage:
    """Decode a prediction; ContractError (reason code + detail) if it is malformed."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ContractError("bad_json", "prediction is not valid JSON") from None
    return _from_document(doc)


def _from_document(doc: Any) -> PredictionMessage:
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise ContractError("bad_schema_version", "prediction schema_version is not 1")
    try:
        time = datetime.fromisoformat(doc["time"])
        if time.tzinfo is None:
            raise ContractError("bad_timestamp", "prediction time has no time zone")
        try:
            time = time.astimezone(UTC)
        except OverflowError:
            raise ContractError("bad_timestamp", "prediction time is out of range") from None
        numbers = {
            k: float(doc[k])
            for k in ("rul_hours", "rul_low", "rul_high", "health_index", "anomaly_score")
        }
        if not all(math.isfinite(v) for v in numbers.values()):
            raise ContractError("non_finite", "prediction holds NaN or infinity")
        top = tuple((str(name), float(w)) for name, w in doc.get("top_features", []))
        return PredictionMessage(
            asset_id=validate_asset_id(str(doc["asset_id"])),
            time=time,
            running=bool(doc["running"]),
            model_version=str(doc["model_version"]),
            top_features=top,
            **numbers,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError("wrong_type", f"prediction is malformed: {exc!r}"[:200]) from None
