"""An embedded MQTT 5 broker for machines without Mosquitto (``cbm demo``, tests).

It keeps the promises the workers rely on: QoS 1 with PUBACK only after the
message is routed, persistent sessions (clean start off, session expiry) that
queue for a client while it is away, redelivery with DUP of what a client
received but never acknowledged, the client's Receive Maximum as flow
control, keep-alive, retained messages, and wills. It keeps all of that in
memory only: a restart of the broker loses queued messages, so production and
the restart tests use Mosquitto with its persistence. No TLS, no ACL, no QoS 2, no shared
subscriptions; it listens on 127.0.0.1 unless told otherwise.

Everything runs on one asyncio loop, so sessions need no locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from services.broker import packets as p

log = logging.getLogger(__name__)

MAX_PACKET_BYTES = 4 * 1024 * 1024
MAX_QUEUED = 1_000_000  # messages held per offline session (mosquitto.conf allows 4 M, on disk)
_EXPIRY_SWEEP_S = 30.0
_CONNECT_TIMEOUT_S = 10.0  # a socket must send CONNECT within this long


@dataclass
class Session:
    """What the broker keeps for one client id, connected or not."""

    client_id: str
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    queue: deque[p.Publish] = field(default_factory=deque)  # not yet sent
    inflight: dict[int, p.Publish] = field(default_factory=dict)  # sent, awaiting PUBACK
    receive_maximum: int = 65_535
    expiry_s: int = 0
    expires_at: float | None = None
    writer: asyncio.StreamWriter | None = None
    will: p.Will | None = None
    dropped: int = 0
    _next_id: int = 0

    def packet_id(self) -> int:
        """Return a packet id not in flight (1..65535)."""
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        raise RuntimeError("no free packet id")  # cannot happen: inflight <= receive maximum


def matches(topic_filter: str, topic: str) -> bool:
    """Return whether ``topic`` matches ``topic_filter`` (``+`` one level, ``#`` the rest)."""
    return levels_match(topic_filter, topic.split("/"))


def levels_match(topic_filter: str, levels: list[str]) -> bool:
    """Return whether a topic, split into its ``levels``, matches ``topic_filter``."""
    if levels[0].startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted = topic_filter.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(wanted)


def valid_filter(topic_filter: str) -> bool:
    """Return whether a topic filter is well formed (wildcards stand alone, ``#`` last)."""
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if ("+" in part or "#" in part) and len(part) > 1:
            return False
        if part == "#" and i != len(parts) - 1:
            return False
    return bool(topic_filter)


class EmbeddedBroker:
    """Serve MQTT 5 on ``host:port`` until :meth:`serve_forever` is cancelled."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, p.Publish] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start listening; ``port`` 0 picks a free one (read it back from ``self.port``)."""
        self._server = await asyncio.start_server(self._serve_client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        """Start if needed, then serve and sweep expired sessions until cancelled."""
        if self._server is None:
            await self.start()
        while True:
            await asyncio.sleep(_EXPIRY_SWEEP_S)
            now = time.monotonic()
            for client_id, session in list(self.sessions.items()):
                if session.writer is None and session.expires_at and session.expires_at < now:
                    del self.sessions[client_id]

    # -- one client connection ---------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session: Session | None = None
        graceful = False
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                kind, _flags, body = await p.read_packet(reader, MAX_PACKET_BYTES)
            if kind != p.CONNECT:
                raise p.ProtocolError(p.PROTOCOL_ERROR, "first packet is not CONNECT")
            try:
                connect = p.parse_connect(body)
            except p.ProtocolError as exc:
                writer.write(p.connack(session_present=False, reason=exc.reason))
                raise
            assigned = None
            if not connect.client_id:
                if not connect.clean_start:
                    writer.write(p.connack(session_present=False, reason=p.BAD_CLIENT_ID))
                    return
                assigned = f"auto-{uuid.uuid4().hex}"
                connect = dataclasses.replace(connect, client_id=assigned)
            session, present = self._attach(connect, writer)
            writer.write(p.connack(session_present=present, assigned_client_id=assigned))
            self._resend(session)
            # A client silent for 1.5 keep-alive periods is gone (its will goes out).
            # asyncio.timeout, not wait_for: no task per packet (54 vs 90 us a message).
            silence = 1.5 * connect.keepalive_s if connect.keepalive_s else None
            while True:
                async with asyncio.timeout(silence):
                    kind, flags, body = await p.read_packet(reader, MAX_PACKET_BYTES)
                if kind == p.DISCONNECT:
                    graceful = p.disconnect_reason(body) != p.DISCONNECT_WITH_WILL
                    break
                self._handle(session, writer, kind, flags, body)
                await writer.drain()
        except p.ProtocolError as exc:
            log.warning("closing %s: %s", session.client_id if session else "a client", exc)
            if session is not None:
                writer.write(p.disconnect(exc.reason))
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass  # the client went away or fell silent; its session and will: below
        finally:
            if session is not None and session.writer is writer:
                self._detach(session, graceful=graceful)
            writer.close()

    def _attach(self, connect: p.Connect, writer: asyncio.StreamWriter) -> tuple[Session, bool]:
        old = self.sessions.get(connect.client_id)
        if old is not None and old.writer is not None:
            # A second connection with the same id takes over: the old one is told
            # why, and its will goes out as for any connection that ends uncleanly.
            old.writer.write(p.disconnect(p.SESSION_TAKEN_OVER))
            old.writer.close()
            self._detach(old, graceful=False)  # may end the old session (expiry 0)
            old = self.sessions.get(connect.client_id)
        present = (
            old is not None
            and not connect.clean_start
            and (old.expires_at is None or old.expires_at >= time.monotonic())
        )
        session = old if present and old is not None else Session(connect.client_id)
        self.sessions[connect.client_id] = session
        session.writer = writer
        session.expires_at = None
        session.expiry_s = connect.session_expiry_s
        session.receive_maximum = connect.receive_maximum
        session.will = connect.will
        return session, present

    def _detach(self, session: Session, *, graceful: bool) -> None:
        session.writer = None
        if graceful:
            session.will = None
        self._publish_will(session)
        if session.expiry_s == 0:
            self.sessions.pop(session.client_id, None)
        else:
            session.expires_at = time.monotonic() + session.expiry_s

    def _publish_will(self, session: Session) -> None:
        will, session.will = session.will, None
        if will is not None:
            self._route(p.Publish(will.topic, will.payload, will.qos, will.retain))

    def _handle(
        self, session: Session, writer: asyncio.StreamWriter, kind: int, flags: int, body: bytes
    ) -> None:
        if kind == p.PUBLISH:
            message = p.parse_publish(flags, body)
            if message.qos > 1:
                raise p.ProtocolError(p.QOS_NOT_SUPPORTED, "QoS 2 is not supported")
            self._route(message)
            if message.qos == 1:
                writer.write(p.puback(message.packet_id))  # routed: queued for every subscriber
        elif kind == p.PUBACK:
            session.inflight.pop(p.parse_packet_id(body), None)
            self._pump(session)
        elif kind == p.SUBSCRIBE:
            self._subscribe(session, writer, p.parse_subscribe(body))
        elif kind == p.UNSUBSCRIBE:
            packet_id, filters = p.parse_unsubscribe(body)
            for topic_filter in filters:
                session.subscriptions.pop(topic_filter, None)
            writer.write(p.unsuback(packet_id, len(filters)))
        elif kind == p.PINGREQ:
            writer.write(p.pingresp())
        else:
            raise p.ProtocolError(p.PROTOCOL_ERROR, f"unexpected packet type {kind}")

    def _subscribe(
        self, session: Session, writer: asyncio.StreamWriter, request: p.Subscribe
    ) -> None:
        reasons = []
        granted: list[tuple[str, int]] = []
        for topic_filter, qos in request.filters:
            if topic_filter.startswith("$share/"):
                reasons.append(p.SHARED_NOT_SUPPORTED)
            elif not valid_filter(topic_filter):
                reasons.append(p.UNSPECIFIED_ERROR)
            else:
                granted_qos = min(qos, 1)  # QoS 2 is granted as 1
                session.subscriptions[topic_filter] = granted_qos
                granted.append((topic_filter, granted_qos))
                reasons.append(granted_qos)
        writer.write(p.suback(request.packet_id, reasons))
        for message in list(self.retained.values()):
            for topic_filter, qos in granted:
                if matches(topic_filter, message.topic):
                    self._enqueue(session, message, min(qos, message.qos), retain=True)
                    break
        self._pump(session)

    # -- routing --------------------------------------------------------------------

    def _route(self, message: p.Publish) -> None:
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                self.retained.pop(message.topic, None)
        levels = message.topic.split("/")
        for session in self.sessions.values():
            granted = max(
                (q for f, q in session.subscriptions.items() if levels_match(f, levels)),
                default=None,
            )
            if granted is not None:
                self._enqueue(session, message, min(granted, message.qos), retain=False)
                self._pump(session)

    def _enqueue(self, session: Session, message: p.Publish, qos: int, *, retain: bool) -> None:
        if qos == 0 and session.writer is None:
            return  # QoS 0 is not kept for an absent client
        if len(session.queue) >= MAX_QUEUED:
            session.dropped += 1
            if session.dropped == 1 or session.dropped % 10_000 == 0:
                log.warning(
                    "%s: queue full, %d messages dropped", session.client_id, session.dropped
                )
            return
        session.queue.append(
            dataclasses.replace(message, qos=qos, retain=retain, packet_id=0, dup=False)
        )

    def _pump(self, session: Session) -> None:
        """Send queued messages while the client's Receive Maximum allows."""
        writer = session.writer
        if writer is None:
            return
        while session.queue and len(session.inflight) < session.receive_maximum:
            message = session.queue.popleft()
            packet_id = 0
            if message.qos:
                packet_id = session.packet_id()
                session.inflight[packet_id] = message
            writer.write(p.publish(message, packet_id=packet_id, dup=False))

    def _resend(self, session: Session) -> None:
        """On a resumed session: send again, with DUP, what was never acknowledged."""
        writer = session.writer
        assert writer is not None
        for packet_id, message in session.inflight.items():
            writer.write(p.publish(message, packet_id=packet_id, dup=True))
        self._pump(session)
