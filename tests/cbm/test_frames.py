from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cbm.errors import ContractError
from cbm.frames import FrameKind, decode_frame, decode_windows, encode_frame, encode_windows
from cbm.messages import TemperatureStatus, Window

T0 = datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=UTC)


def window(i: int, n: int) -> Window:
    return Window(
        asset_id=f"a{i}",
        time=T0 + timedelta(seconds=i),
        seq=i,
        sample_rate_hz=5000.0 + i,
        samples=np.arange(n, dtype=np.float32) * (i + 1),
        received_at=T0 + timedelta(seconds=i + 1),
        temperature_c=math.nan if i % 2 else 20.0 + i,
        temperature_status=TemperatureStatus.MISSING if i % 2 else TemperatureStatus.SPAN,
    )


def test_windows_round_trip_with_ragged_lengths() -> None:
    sent = [window(i, n) for i, n in enumerate([1000, 64, 4096, 1])]
    got = decode_windows(encode_windows(sent))
    assert len(got) == len(sent)
    for a, b in zip(sent, got, strict=True):
        assert (
            a.asset_id,
            a.time,
            a.seq,
            a.sample_rate_hz,
            a.received_at,
            a.temperature_status,
        ) == (b.asset_id, b.time, b.seq, b.sample_rate_hz, b.received_at, b.temperature_status)
        assert a.temperature_c == b.temperature_c or (
            math.isnan(a.temperature_c) and math.isnan(b.temperature_c)
        )
        np.testing.assert_array_equal(a.samples, b.samples)


def test_empty_frame_round_trips() -> None:
    assert decode_windows(encode_windows([])) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"CBMX" + bytes(8),
        encode_frame(FrameKind.FEATURES, {"x": 1}),
        encode_windows([window(0, 10)])[:-4],
        encode_frame(FrameKind.WINDOWS, {"windows": [{"a": "x"}]}),
        b"CBMF\x01\x01\x00\x00\xff\x00\x00\x00{}",
    ],
)
def test_malformed_frames_raise_contract_errors(payload: bytes) -> None:
    with pytest.raises(ContractError):
        decode_windows(payload)


def test_frame_header_and_body() -> None:
    header, body = decode_frame(
        encode_frame(FrameKind.FEATURES, {"k": [1, 2]}, b"\x01\x02"), FrameKind.FEATURES
    )
    assert header == {"k": [1, 2]} and bytes(body) == b"\x01\x02"
