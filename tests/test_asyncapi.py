"""The AsyncAPI document matches the code: addresses, and every example decodes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from cbm.errors import ContractError
from cbm.frames import decode_features, decode_windows
from cbm.messages import DeadLetter
from cbm.prediction import PredictionMessage, decode_prediction, decode_predictions
from cbm.rawcodec import decode_temperature, decode_vibration
from cbm.topics import Topics
from cbm.worker import EXCERPT_BYTES, status_document

DOC = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml").read_text())
NOW = datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC)
T = Topics("cbm")


def _json(payload: Any) -> bytes:
    return orjson.dumps(payload)


def _b64(payload: Any) -> bytes:
    return base64.b64decode(payload)


def _check_vibration(raw: bytes) -> None:
    w = decode_vibration(raw, asset_id="pump-001", received_at=NOW)
    assert w.samples.size == 8 and w.seq == 42 and w.time == datetime(2026, 12, 4, 10, tzinfo=UTC)


def _check_temperature(raw: bytes) -> None:
    r = decode_temperature(raw, asset_id="pump-001", received_at=NOW)
    assert r.temperature_c == 41.25 and r.seq == 7


def _check_windows(raw: bytes) -> None:
    (w,) = decode_windows(raw)
    assert w.asset_id == "pump-001" and w.samples.size == 8


def _check_features(raw: bytes) -> None:
    v = decode_features(raw)
    assert v.asset_ids == ("pump-001",) and v.values.shape == (1, len(v.columns))


def _check_prediction(raw: bytes) -> None:
    p = decode_prediction(raw)
    assert p.rul_low <= p.rul_hours <= p.rul_high


def _check_prediction_frame(raw: bytes) -> None:
    ((_, p),) = decode_predictions(raw)
    assert isinstance(p, PredictionMessage) and p.rul_low <= p.rul_hours <= p.rul_high


def _check_alert(raw: bytes) -> None:
    from services.alerter.levels import Channel, Kind, Level

    doc = orjson.loads(raw)
    Channel(doc["channel"]), Kind(doc["kind"]), Level[doc["level"]]
    assert doc["key"].startswith(doc["asset_id"])


def _check_dead_letter(raw: bytes) -> None:
    doc = orjson.loads(raw)
    _conforms(doc, "deadLetter")
    assert base64.b64decode(doc["payload_excerpt_b64"])


def _check_status(raw: bytes) -> None:
    _conforms(orjson.loads(raw), "status")


def _conforms(doc: dict[str, Any], message: str) -> None:
    """``doc`` matches the documented schema and has no key the schema does not name."""
    schema = DOC["components"]["messages"][message]["payload"]
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    assert set(doc) <= set(schema["properties"]), set(doc) - set(schema["properties"])


DECODERS = {
    "vibrationJson": (_json, _check_vibration),
    "vibrationBinary": (_b64, _check_vibration),
    "temperatureJson": (_json, _check_temperature),
    "temperatureBinary": (_b64, _check_temperature),
    "windowFrame": (_b64, _check_windows),
    "featureFrame": (_b64, _check_features),
    "prediction": (_json, _check_prediction),
    "predictionFrame": (_b64, _check_prediction_frame),
    "alert": (_json, _check_alert),
    "deadLetter": (_json, _check_dead_letter),
    "status": (_json, _check_status),
}


@pytest.mark.parametrize("name", sorted(DOC["components"]["messages"]))
def test_every_example_decodes_with_the_real_codecs(name: str) -> None:
    message = DOC["components"]["messages"][name]
    assert name in DECODERS, f"no decoder registered for documented message {name}"
    examples = message.get("examples") or []
    assert examples, f"{name} has no example"
    to_bytes, check = DECODERS[name]
    for example in examples:
        check(to_bytes(example["payload"]))


def test_channel_addresses_are_the_ones_the_code_builds() -> None:
    built = {
        "rawVibration": T.raw("ASSET", "vibration"),
        "rawTemperature": T.raw("ASSET", "temperature"),
        "windows": T.windows(0).replace("p000", "PARTITION"),
        "features": T.features(0).replace("p000", "PARTITION"),
        "predictions": T.predictions("ASSET"),
        "rul": T.rul(0).replace("p000", "PARTITION"),
        "alerts": T.alerts("ASSET"),
        "deadLetter": T.deadletter("ingest").replace("ingest", "STAGE"),
        "status": T.status("ingest").replace("ingest", "SERVICE"),
    }
    channels = DOC["channels"]
    for name, address in built.items():
        documented = (
            channels[name]["address"]
            .replace("{base}", "cbm")
            .replace("{asset}", "ASSET")
            .replace("{partition}", "PARTITION")
            .replace("{stage}", "STAGE")
            .replace("{service}", "SERVICE")
        )
        assert documented == address, name
    assert set(channels) >= set(built)


def test_the_workers_json_documents_match_the_documented_schemas() -> None:
    """What the worker shell publishes (not only the examples) conforms to the document."""
    dead = DeadLetter.of(
        "ingest",
        ContractError("missing_field", "missing seq"),
        topic=T.raw("pump-001", "vibration"),
        payload=b"x" * (EXCERPT_BYTES + 10),
        received_at=NOW,
        asset_id="pump-001",
    )
    doc = orjson.loads(orjson.dumps(dead.document(EXCERPT_BYTES)))
    _conforms(doc, "deadLetter")
    assert doc["payload_size"] == EXCERPT_BYTES + 10
    assert len(base64.b64decode(doc["payload_excerpt_b64"])) == EXCERPT_BYTES
    _conforms(
        orjson.loads(orjson.dumps(status_document("ingest", "0", "online", "running"))), "status"
    )
