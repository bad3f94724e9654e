"""MQTT 5 packets: the subset the embedded broker reads and writes.

Reading turns a packet body into a small typed object; writing builds the
bytes of the few packets a broker sends. Properties the broker does not act
on are skipped when read, and a PUBLISH's properties travel on unchanged.
Reference: MQTT Version 5.0, OASIS Standard, sections 2 and 3.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

# Reason codes the broker sends.
SUCCESS = 0x00
DISCONNECT_WITH_WILL = 0x04
UNSPECIFIED_ERROR = 0x80
MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_VERSION = 0x84
BAD_CLIENT_ID = 0x85
SESSION_TAKEN_OVER = 0x8E
PACKET_TOO_LARGE = 0x95
QOS_NOT_SUPPORTED = 0x9B
SHARED_NOT_SUPPORTED = 0x9E

# Property identifiers the broker reads, and how every property is encoded.
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
SHARED_AVAILABLE = 0x2A
_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_U16 = {0x13, 0x21, 0x22, 0x23}
_U32 = {0x02, 0x11, 0x18, 0x27}
_STRING = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY = {0x09, 0x16}
_VARINT = {0x0B}
_PAIR = {0x26}


class ProtocolError(Exception):
    """A packet the broker cannot accept; ``reason`` goes into the DISCONNECT."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Will:
    """The message a client leaves for the broker to publish if it vanishes."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Connect:
    """What a CONNECT asks for."""

    client_id: str
    clean_start: bool
    keepalive_s: int
    session_expiry_s: int
    receive_maximum: int
    will: Will | None


@dataclass(frozen=True)
class Publish:
    """A PUBLISH, from a client or on its way to one."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: bytes = b""  # encoded, without the length prefix
    packet_id: int = 0
    dup: bool = False


@dataclass(frozen=True)
class Subscribe:
    """A SUBSCRIBE: its packet id and (topic filter, requested QoS) pairs."""

    packet_id: int
    filters: list[tuple[str, int]] = field(default_factory=list)


async def read_packet(reader: asyncio.StreamReader, limit: int) -> tuple[int, int, bytes]:
    """Return (packet type, flags, body) of the next packet; refuse bodies over ``limit``."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    else:
        raise ProtocolError(MALFORMED, "remaining length longer than 4 bytes")
    if length > limit:
        raise ProtocolError(PACKET_TOO_LARGE, f"packet of {length} bytes over {limit}")
    return first >> 4, first & 0x0F, await reader.readexactly(length)


class _Body:
    """A read position in one packet body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(MALFORMED, "packet ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ProtocolError(MALFORMED, "variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(MALFORMED, "string is not UTF-8") from None

    def properties(self) -> tuple[dict[int, int], bytes]:
        """Return the integer properties by identifier, and the raw block."""
        block = self.take(self.varint())
        inner, found = _Body(block), {}
        while inner.pos < len(block):
            ident = inner.varint()
            if ident in _BYTE:
                found[ident] = inner.u8()
            elif ident in _U16:
                found[ident] = inner.u16()
            elif ident in _U32:
                found[ident] = inner.u32()
            elif ident in _VARINT:
                found[ident] = inner.varint()
            elif ident in _STRING or ident in _BINARY:
                inner.binary()
            elif ident in _PAIR:
                inner.binary()
                inner.binary()
            else:
                raise ProtocolError(MALFORMED, f"unknown property 0x{ident:02x}")
        return found, block

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)


def parse_connect(body: bytes) -> Connect:
    """Read a CONNECT body (MQTT 5 only)."""
    b = _Body(body)
    if b.string() != "MQTT" or b.u8() != 5:
        raise ProtocolError(UNSUPPORTED_VERSION, "only MQTT 5 is spoken here")
    flags = b.u8()
    keepalive = b.u16()
    props, _ = b.properties()
    client_id = b.string()
    will = None
    if flags & 0x04:
        b.properties()
        topic = b.string()
        will = Will(topic, b.binary(), (flags >> 3) & 0x03, bool(flags & 0x20))
    if flags & 0x80:
        b.string()  # user name: anyone may connect to the embedded broker
    if flags & 0x40:
        b.binary()
    return Connect(
        client_id=client_id,
        clean_start=bool(flags & 0x02),
        keepalive_s=keepalive,
        session_expiry_s=props.get(SESSION_EXPIRY, 0),
        receive_maximum=props.get(RECEIVE_MAXIMUM, 65_535) or 65_535,
        will=will,
    )


def parse_publish(flags: int, body: bytes) -> Publish:
    """Read a PUBLISH body whose fixed-header flags are ``flags``."""
    b = _Body(body)
    qos = (flags >> 1) & 0x03
    topic = b.string()
    if not topic or "+" in topic or "#" in topic:
        raise ProtocolError(PROTOCOL_ERROR, f"invalid topic name {topic[:100]!r}")
    packet_id = b.u16() if qos else 0
    props, block = b.properties()
    if TOPIC_ALIAS in props:
        raise ProtocolError(PROTOCOL_ERROR, "topic aliases are not accepted (maximum 0)")
    return Publish(topic, b.rest(), qos, bool(flags & 0x01), block, packet_id, bool(flags & 0x08))


def parse_packet_id(body: bytes) -> int:
    """Read the packet identifier that starts a PUBACK or UNSUBSCRIBE."""
    return _Body(body).u16()


def parse_subscribe(body: bytes) -> Subscribe:
    """Read a SUBSCRIBE body."""
    b = _Body(body)
    packet_id = b.u16()
    b.properties()
    filters = []
    while b.pos < len(body):
        topic_filter = b.string()
        filters.append((topic_filter, b.u8() & 0x03))
    if not filters:
        raise ProtocolError(PROTOCOL_ERROR, "SUBSCRIBE without a topic filter")
    return Subscribe(packet_id, filters)


def parse_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """Read an UNSUBSCRIBE body: its packet id and topic filters."""
    b = _Body(body)
    packet_id = b.u16()
    b.properties()
    filters = []
    while b.pos < len(body):
        filters.append(b.string())
    return packet_id, filters


def disconnect_reason(body: bytes) -> int:
    """Return a DISCONNECT's reason code (absent means normal disconnection)."""
    return body[0] if body else SUCCESS


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def connack(
    *, session_present: bool, reason: int = SUCCESS, assigned_client_id: str | None = None
) -> bytes:
    """Return a CONNACK that also tells the client: QoS 1 at most, no shared subscriptions."""
    props = bytes([MAXIMUM_QOS, 1, SHARED_AVAILABLE, 0])
    if assigned_client_id is not None:
        props += bytes([ASSIGNED_CLIENT_ID]) + _string(assigned_client_id)
    return _packet(
        CONNACK << 4, bytes([int(session_present), reason]) + _varint(len(props)) + props
    )


def publish(message: Publish, *, packet_id: int, dup: bool) -> bytes:
    """Return a PUBLISH of ``message`` at its QoS and retain flag, as queued for a subscriber."""
    first = PUBLISH << 4 | int(dup) << 3 | message.qos << 1 | int(message.retain)
    body = _string(message.topic)
    if message.qos:
        body += struct.pack(">H", packet_id)
    props = message.properties
    return _packet(first, body + _varint(len(props)) + props + message.payload)


def puback(packet_id: int) -> bytes:
    """Return a PUBACK (success)."""
    return _packet(PUBACK << 4, struct.pack(">HB", packet_id, SUCCESS) + b"\x00")


def suback(packet_id: int, reasons: list[int]) -> bytes:
    """Return a SUBACK with one reason code (the granted QoS, or an error) per filter."""
    return _packet(SUBACK << 4, struct.pack(">H", packet_id) + b"\x00" + bytes(reasons))


def unsuback(packet_id: int, count: int) -> bytes:
    """Return an UNSUBACK that reports every filter as removed."""
    return _packet(UNSUBACK << 4, struct.pack(">H", packet_id) + b"\x00" + bytes(count))


def pingresp() -> bytes:
    """Return a PINGRESP."""
    return _packet(PINGRESP << 4, b"")


def disconnect(reason: int) -> bytes:
    """Return a DISCONNECT from the broker with ``reason``."""
    return _packet(DISCONNECT << 4, bytes([reason, 0]))
