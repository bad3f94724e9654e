"""The ingest core: every bad payload gets its reason; good data is paired and kept."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from cbm.messages import TemperatureStatus
from cbm.rawcodec import (
    encode_temperature_binary,
    encode_temperature_json,
    encode_vibration_binary,
    encode_vibration_json,
)
from cbm.settings import from_mapping
from cbm.topics import Topics
from services.ingest.core import IngestRules, IngestState, RawInput, step

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(minutes=5)
SAMPLES = np.sin(np.linspace(0, 20, 1000)).astype(np.float32)
TOPICS = Topics("cbm")


def rules(**ingest: object) -> IngestRules:
    s = from_mapping({"ingest": ingest, "assets": {"items": [{"id": "pump-1"}]}})
    return IngestRules(ingest=s.ingest, assets=s.assets, topics=TOPICS)


def vib_topic(asset: str = "pump-1") -> str:
    return f"cbm/raw/{asset}/vibration"


def temp_topic(asset: str = "pump-1") -> str:
    return f"cbm/raw/{asset}/temperature"


def good_json(**override: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schema_version": 1,
        "asset_id": "pump-1",
        "timestamp": "2026-12-04T11:55:00Z",
        "seq": 1,
        "sample_rate_hz": 5000,
        "vibration": SAMPLES[:200].tolist(),
    }
    doc.update(override)
    return doc


def without(key: str) -> dict[str, object]:
    doc = good_json()
    del doc[key]
    return doc


def run(
    *messages: tuple[str, bytes],
    state: IngestState | None = None,
    r: IngestRules | None = None,
    redelivered: bool = False,
):
    batch = [RawInput(t, p, NOW, redelivered=redelivered) for t, p in messages]
    return step(state or IngestState(), batch, r or rules(), now=NOW)


def binary(
    n: int = 1000,
    *,
    version: int = 1,
    rate: float = 5000.0,
    extra: bytes = b"",
    samples: np.ndarray | None = None,
) -> bytes:
    data = SAMPLES[:n] if samples is None else samples
    payload = encode_vibration_binary(seq=1, time=T0, sample_rate_hz=rate, samples=data)
    if version != 1:
        payload = payload[:4] + bytes([version]) + payload[5:]
    return payload + extra


BAD_VIBRATION: list[tuple[str, bytes, str]] = [
    ("not json nor binary", b"hello", "unknown_format"),
    ("truncated json", b'{"schema_version": 1, "vibr', "bad_json"),
    ("json array", b"[1, 2, 3]", "bad_json"),
    ("json string", b'"text"', "bad_json"),
    ("empty payload", b"", "unknown_format"),
    ("NaN literal", b'{"schema_version": 1, "vibration": [NaN]}', "bad_json"),
    ("schema 2", orjson.dumps(good_json(schema_version=2)), "bad_schema_version"),
    ("schema as string", orjson.dumps(good_json(schema_version="1")), "bad_schema_version"),
    ("schema as bool", orjson.dumps(good_json(schema_version=True)), "bad_schema_version"),
    ("missing timestamp", orjson.dumps(without("timestamp")), "missing_field"),
    ("missing vibration", orjson.dumps(without("vibration")), "missing_field"),
    ("missing seq", orjson.dumps(without("seq")), "missing_field"),
    ("missing schema", orjson.dumps(without("schema_version")), "bad_schema_version"),
    ("extra field", orjson.dumps(good_json(gain=3)), "unknown_field"),
    ("vibration not a list", orjson.dumps(good_json(vibration="1,2,3")), "wrong_type"),
    ("strings in samples", orjson.dumps(good_json(vibration=[1.0, "x"] * 100)), "wrong_type"),
    ("nested samples", orjson.dumps(good_json(vibration=[[1.0, 2.0]] * 100)), "wrong_type"),
    ("null in samples", orjson.dumps(good_json(vibration=[1.0, None] * 100)), "wrong_type"),
    ("bools as samples", orjson.dumps(good_json(vibration=[True] * 200)), "wrong_type"),
    ("empty samples", orjson.dumps(good_json(vibration=[])), "empty_samples"),
    ("too few samples", orjson.dumps(good_json(vibration=[0.1] * 10)), "too_few_samples"),
    ("too many samples", orjson.dumps(good_json(vibration=[0.1] * 70_000)), "too_many_samples"),
    ("huge number overflows", orjson.dumps(good_json(vibration=[1e300] * 100)), "non_finite"),
    ("sample rate string", orjson.dumps(good_json(sample_rate_hz="5k")), "wrong_type"),
    ("sample rate zero", orjson.dumps(good_json(sample_rate_hz=0)), "bad_sample_rate"),
    ("sample rate huge", orjson.dumps(good_json(sample_rate_hz=1e9)), "bad_sample_rate"),
    ("seq negative", orjson.dumps(good_json(seq=-1)), "bad_seq"),
    ("seq float", orjson.dumps(good_json(seq=1.5)), "wrong_type"),
    ("timestamp garbage", orjson.dumps(good_json(timestamp="yesterday")), "bad_timestamp"),
    ("timestamp naive", orjson.dumps(good_json(timestamp="2026-12-04T11:55:00")), "bad_timestamp"),
    ("timestamp object", orjson.dumps(good_json(timestamp={"s": 1})), "wrong_type"),
    (
        "timestamp in future",
        orjson.dumps(good_json(timestamp="2026-12-04T13:00:00Z")),
        "future_timestamp",
    ),
    (
        "timestamp too old",
        orjson.dumps(good_json(timestamp="2026-11-01T00:00:00Z")),
        "stale_timestamp",
    ),
    ("epoch negative", orjson.dumps(good_json(timestamp=-5)), "bad_timestamp"),
    ("asset mismatch", orjson.dumps(good_json(asset_id="pump-2")), "asset_mismatch"),
    ("binary short header", b"CBMV\x01\x00", "bad_binary"),
    ("binary count too big", binary(extra=b"\x00\x00"), "bad_binary"),
    ("binary version 9", binary(version=9), "bad_schema_version"),
    ("binary NaN sample", binary(samples=np.array([0.0, np.nan] * 100, np.float32)), "non_finite"),
    ("binary inf rate", binary(rate=math.inf), "non_finite"),
    ("binary zero samples", binary(samples=np.zeros(0, np.float32)), "empty_samples"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(p, r) for _, p, r in BAD_VIBRATION],
    ids=[name for name, _, _ in BAD_VIBRATION],
)
def test_bad_vibration_is_dead_lettered_with_its_reason(payload: bytes, reason: str) -> None:
    _, out = run((vib_topic(), payload))
    assert out.windows == []
    assert [d.reason for d in out.dead_letters] == [reason]
    dead = out.dead_letters[0]
    assert dead.topic == vib_topic() and dead.payload == payload and dead.detail


def test_the_bad_table_is_broad() -> None:
    assert len(BAD_VIBRATION) >= 25
    assert len({reason for _, _, reason in BAD_VIBRATION}) >= 15


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "r"),
    [
        (
            temp_topic(),
            encode_temperature_json(seq=1, time=T0, temperature_c=900.0),
            "temperature_out_of_range",
            None,
        ),
        (temp_topic(), b'{"schema_version": 1, "timestamp": 1.0, "seq": 1}', "missing_field", None),
        (
            temp_topic(),
            encode_temperature_binary(seq=1, time=T0, temperature_c=20.0)[:-1],
            "bad_binary",
            None,
        ),
        (
            temp_topic(),
            encode_temperature_binary(seq=1, time=T0, temperature_c=math.nan),
            "non_finite",
            None,
        ),
        ("cbm/raw/bad id/vibration", binary(), "bad_asset_id", None),
        ("cbm/raw/pump-1/pressure", binary(), "bad_topic", None),
        (vib_topic("stranger"), binary(), "unknown_asset", rules(accept_unknown_assets=False)),
        (
            vib_topic(),
            binary(samples=np.zeros(2000, np.float32)),
            "payload_too_large",
            rules(max_payload_bytes=4096),
        ),
    ],
)
def test_other_bad_inputs(topic: str, payload: bytes, reason: str, r: IngestRules | None) -> None:
    _, out = run((topic, payload), r=r)
    assert [d.reason for d in out.dead_letters] == [reason]
    assert out.windows == [] and out.temperatures == []


def test_good_message_after_a_bad_one_still_goes_through() -> None:
    _, out = run((vib_topic(), b"garbage"), (vib_topic(), binary()))
    assert [d.reason for d in out.dead_letters] == ["unknown_format"]
    assert len(out.windows) == 1
    np.testing.assert_array_equal(out.windows[0].samples, SAMPLES)


def test_json_and_binary_decode_to_the_same_window() -> None:
    _, out = run(
        (
            vib_topic("a"),
            encode_vibration_json(seq=1, time=T0, sample_rate_hz=5000.0, samples=SAMPLES),
        ),
        (vib_topic("b"), binary()),
    )
    a, b = out.windows
    assert a.time == b.time == T0 and a.seq == b.seq == 1
    np.testing.assert_array_equal(a.samples, b.samples)


def test_window_is_paired_with_temperatures_in_its_span() -> None:
    span_readings = [
        (
            temp_topic(),
            encode_temperature_binary(
                seq=i, time=T0 + timedelta(milliseconds=50 * i), temperature_c=40.0 + i
            ),
        )
        for i in range(3)
    ]
    _, out = run((vib_topic(), binary()), *span_readings)  # readings after the window
    (window,) = out.windows
    assert window.temperature_status is TemperatureStatus.SPAN
    assert window.temperature_c == pytest.approx(41.0)


def test_window_takes_latest_reading_within_max_age_else_is_flagged() -> None:
    old = T0 - timedelta(seconds=100)
    state, _ = run((temp_topic(), encode_temperature_json(seq=1, time=old, temperature_c=35.5)))
    _, out = run((vib_topic(), binary()), state=state)
    assert out.windows[0].temperature_status is TemperatureStatus.LATEST
    assert out.windows[0].temperature_c == 35.5

    state, _ = run((temp_topic(), encode_temperature_json(seq=1, time=old, temperature_c=35.5)))
    _, out = run((vib_topic(), binary()), state=state, r=rules(temperature_max_age_s=10))
    assert out.windows[0].temperature_status is TemperatureStatus.MISSING
    assert math.isnan(out.windows[0].temperature_c)


def test_duplicates_are_dead_lettered_but_redeliveries_pass() -> None:
    state, out = run((vib_topic(), binary()))
    assert len(out.windows) == 1
    _, again = run((vib_topic(), binary()), state=state)
    assert [d.reason for d in again.dead_letters] == ["duplicate"]
    _, redelivered = run((vib_topic(), binary()), state=state, redelivered=True)
    assert len(redelivered.windows) == 1 and redelivered.dead_letters == []


def test_same_seq_with_an_older_time_is_a_duplicate_but_a_newer_one_is_a_restart() -> None:
    def at(seq: int, t: datetime) -> tuple[str, bytes]:
        return vib_topic(), encode_vibration_binary(
            seq=seq, time=t, sample_rate_hz=5000.0, samples=SAMPLES
        )

    state, _ = run(at(7, T0))
    _, replay = run(at(7, T0 - timedelta(seconds=1)), state=state)
    assert [d.reason for d in replay.dead_letters] == ["duplicate"]
    _, restart = run(at(7, T0 + timedelta(seconds=1)), state=state)
    assert len(restart.windows) == 1 and restart.dead_letters == []


def test_sequence_gaps_are_counted() -> None:
    msgs = [
        (
            vib_topic(),
            encode_vibration_binary(
                seq=s, time=T0 + timedelta(seconds=s), sample_rate_hz=5000.0, samples=SAMPLES
            ),
        )
        for s in (1, 2, 5, 6, 10)
    ]
    _, out = run(*msgs)
    tally = out.tallies["pump-1"]
    assert tally.gaps == 2 + 3 and tally.last_seq == 10


def test_dead_letters_are_tallied_per_asset() -> None:
    _, out = run((vib_topic(), b"x"), (vib_topic(), b"y"), (vib_topic(), binary()))
    assert out.tallies["pump-1"].dead_letters == 2


def test_binary_header_layout_is_as_documented() -> None:
    payload = binary(4, samples=np.array([1, 2, 3, 4], np.float32))
    magic, version, flags, reserved, seq, time_us, rate, n = struct.unpack_from(
        "<4sBBHIqfI", payload
    )
    assert (magic, version, flags, reserved, seq, rate, n) == (b"CBMV", 1, 0, 0, 1, 5000.0, 4)
    assert time_us == round(T0.timestamp() * 1e6)
    assert len(payload) == 28 + 16
