"""Topic matching and packet parsing of the embedded broker, without a socket."""

from __future__ import annotations

import pytest

from services.broker import packets as p
from services.broker.server import matches, valid_filter


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("cbm/raw/+/vibration", "cbm/raw/pump-1/vibration", True),
        ("cbm/raw/+/vibration", "cbm/raw/pump-1/temperature", False),
        ("cbm/raw/+/vibration", "cbm/raw/vibration", False),
        ("cbm/#", "cbm", True),
        ("cbm/#", "cbm/a/b/c", True),
        ("#", "$SYS/broker/uptime", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("a/+/+", "a/b/", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "ok"),
    [("a/+/b", True), ("a/#", True), ("#", True), ("a/#/b", False), ("a/b+", False), ("", False)],
)
def test_filter_validation(topic_filter: str, ok: bool) -> None:
    assert valid_filter(topic_filter) is ok


def test_a_publish_round_trips_with_its_properties() -> None:
    message = p.Publish("cbm/x", b"\x00payload", 1, True, properties=b"\x01\x01")
    raw = p.publish(message, packet_id=7, dup=True)
    assert raw[0] == (p.PUBLISH << 4 | 0b1011)
    body = raw[2:]  # one length byte for a short packet
    back = p.parse_publish(raw[0] & 0x0F, body)
    assert (back.topic, back.payload, back.qos, back.retain, back.dup) == (
        "cbm/x",
        b"\x00payload",
        1,
        True,
        True,
    )
    assert (back.packet_id, back.properties) == (7, b"\x01\x01")


@pytest.mark.parametrize(
    ("parse", "body", "reason"),
    [
        (p.parse_connect, b"\x00\x04MQTT\x04\x02\x00\x3c\x00", p.UNSUPPORTED_VERSION),
        (p.parse_connect, b"\x00\x04MQTT\x05", p.MALFORMED),
        (lambda b: p.parse_publish(0b0010, b), b"\x00\x03a/#\x00\x01\x00", p.PROTOCOL_ERROR),
        (lambda b: p.parse_publish(0, b), b"\x00\x01a\x03\x23\x00\x01", p.PROTOCOL_ERROR),
        (lambda b: p.parse_publish(0, b), b"\x00\x02\xff\xfe\x00", p.MALFORMED),
        (lambda b: p.parse_publish(0, b), b"\x00\x01a\x02\x7f\x00", p.MALFORMED),
        (p.parse_subscribe, b"\x00\x01\x00", p.PROTOCOL_ERROR),
    ],
)
def test_bad_packets_are_refused_with_a_reason(parse, body: bytes, reason: int) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        parse(body)
    assert refused.value.reason == reason
