"""The embedded Python broker keeps the promises the workers rely on (real sockets, paho)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.broker.local import free_port, wait_port
from tests.ingest.test_it_ingest import check_kill_9_before_ack
from tests.support.mqtt import Publisher, Recorder, eventually
from tests.support.services import Broker


@pytest.fixture
def embedded() -> Iterator[Broker]:
    broker = Broker("127.0.0.1", free_port(), embedded=True)
    broker.start()
    yield broker
    broker.stop()


def mqtt5(client_id: str, **options: Any) -> paho.Client:
    """Return a paho MQTT 5 client (not connected)."""
    return paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        **options,
    )


def with_will(
    broker: Broker,
    client_id: str,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
    keepalive: int = 60,
) -> paho.Client:
    """Return a connected, looping client whose will is ``payload`` on ``topic`` (QoS 1)."""
    client = mqtt5(client_id)
    client.will_set(topic, payload, qos=1, retain=retain)
    client.connect(broker.host, broker.port, keepalive=keepalive)
    client.loop_start()
    eventually(client.is_connected, message=f"{client_id} connected")
    return client


def session_props(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry_s
    return props


class Client:
    """A paho MQTT 5 client that records what it receives and acks by hand."""

    def __init__(
        self, broker: Broker, client_id: str, *, receive_maximum: int = 100, ack: bool = True
    ) -> None:
        self.got: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.ack = ack
        self.c = mqtt5(client_id, manual_ack=True)
        self.c.on_message = self._on_message
        props = session_props(3600)
        props.ReceiveMaximum = receive_maximum
        connected = threading.Event()
        self.c.on_connect = lambda *_: connected.set()
        self.c.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.c.loop_start()
        assert connected.wait(5)

    def _on_message(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append(m)
        if self.ack:
            self.c.ack(m.mid, m.qos)

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *_: done.set()
        self.c.subscribe(topic_filter, qos=1)
        assert done.wait(5)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.got]

    def vanish(self) -> None:
        """Drop the connection without DISCONNECT, as a killed process does."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_unacked_messages_come_back_with_dup_after_the_client_vanishes(embedded) -> None:
    """What amqtt loses: a received but unacknowledged QoS 1 message is redelivered."""
    cid = f"sub-{uuid.uuid4().hex[:6]}"
    sub = Client(embedded, cid, receive_maximum=5, ack=False)
    sub.subscribe("plant/+/x")
    pub = Publisher(embedded.host, embedded.port)
    sent = [f"m{i}".encode() for i in range(12)]
    pub.send([(f"plant/{i}/x", m) for i, m in enumerate(sent)])
    eventually(lambda: len(sub.payloads()) == 5, message="five in flight")
    assert len(sub.payloads()) == 5, "Receive Maximum 5 holds the rest at the broker"
    sub.vanish()
    again = Client(embedded, cid)
    try:
        eventually(lambda: sorted(again.payloads()) == sorted(sent), message="all twelve")
        assert [m.dup for m in again.got[:5]] == [True] * 5
        assert sum(m.dup for m in again.got) == 5
    finally:
        again.close()
        pub.close()


def test_a_session_queues_while_its_client_is_away_and_a_clean_start_drops_it(embedded) -> None:
    cid = f"sub-{uuid.uuid4().hex[:6]}"
    sub = Client(embedded, cid)
    sub.subscribe("plant/#")
    sub.close()
    pub = Publisher(embedded.host, embedded.port)
    try:
        pub.send([("plant/a", b"1"), ("plant/b/c", b"2"), ("other", b"no")])
        back = Client(embedded, cid)
        eventually(lambda: back.payloads() == [b"1", b"2"], message="queued while away")
        back.close()
        pub.send([("plant/a", b"queued")])  # waits in the session for cid
        fresh = mqtt5(cid)
        flags: list[Any] = []
        got: list[bytes] = []
        fresh.on_connect = lambda _c, _u, f, _r, _p: flags.append(f)
        fresh.on_message = lambda _c, _u, m: got.append(m.payload)
        # It keeps its own session after it leaves: only the clean start can explain
        # why the queue it replaced is gone when the id comes back below.
        fresh.connect(
            embedded.host, embedded.port, clean_start=True, properties=session_props(3600)
        )
        fresh.loop_start()
        eventually(lambda: flags, message="connack")
        assert not flags[0].session_present
        fresh.disconnect()
        fresh.loop_stop()
        again = Client(embedded, cid)
        try:
            again.subscribe("plant/#")
            pub.send([("plant/a", b"sentinel")])
            eventually(lambda: again.payloads() == [b"sentinel"], message="only the sentinel")
            assert got == [], "the clean start must not deliver the old session's queue"
        finally:
            again.close()
    finally:
        pub.close()


def test_retained_messages_and_the_last_will(embedded) -> None:
    pub = Publisher(embedded.host, embedded.port)
    pub.send([("status/ingest", b"online")], retain=True)
    dying = with_will(embedded, "dying", "status/features", b"offline", retain=True)
    dying.loop_stop()
    sock = dying.socket()
    assert sock is not None
    sock.close()
    watcher = Recorder(embedded.host, embedded.port, "status/+")
    try:
        eventually(
            lambda: sorted(m.payload for m in watcher.on("status/")) == [b"offline", b"online"],
            message="the retained status and the will",
        )
        assert all(m.retain for m in watcher.on("status/"))
    finally:
        watcher.close()
        pub.close()


def test_kill_9_ingest_before_ack_loses_nothing_on_the_embedded_broker(
    embedded, make_settings, db_url, tmp_path: Path
) -> None:
    """The worker shell's at-least-once promise holds end to end on this broker too."""
    settings = make_settings(
        mqtt={"host": embedded.host, "port": embedded.port}, worker={"batch_max": 50}
    )
    check_kill_9_before_ack(settings, db_url, tmp_path)


def test_garbage_on_one_connection_does_not_disturb_the_others(embedded) -> None:
    sub = Client(embedded, f"sub-{uuid.uuid4().hex[:6]}")
    sub.subscribe("ok/#")
    # A length field past four bytes is refused at once: the connection is closed.
    with socket.create_connection((embedded.host, embedded.port)) as raw:
        raw.sendall(b"\x10\xff\xff\xff\xff\x7f")
        raw.settimeout(2)
        try:
            closed = raw.recv(16) == b""
        except ConnectionResetError:
            closed = True
        assert closed
    # Text, and a packet cut short: the broker waits for the rest (until its connect
    # timeout) on those connections while it goes on serving the others.
    held = [socket.create_connection((embedded.host, embedded.port)) for _ in range(2)]
    held[0].sendall(b"GET / HTTP/1.1\r\n\r\n")
    held[1].sendall(b"\x30\x05\x00\x01")
    pub = Publisher(embedded.host, embedded.port)
    try:
        pub.send([("ok/1", b"still here")])
        eventually(lambda: sub.payloads() == [b"still here"], message="broker still serving")
    finally:
        sub.close()
        pub.close()
        for raw in held:
            raw.close()


def test_a_client_silent_past_its_keep_alive_is_dropped_and_its_will_sent(embedded) -> None:
    watcher = Recorder(embedded.host, embedded.port, "status/#")
    silent = with_will(embedded, "silent", "status/silent", b"gone", keepalive=1)
    try:
        silent.loop_stop()  # the socket stays open, but no more PINGREQ
        eventually(
            lambda: [m.payload for m in watcher.on("status/")] == [b"gone"],
            timeout=10,
            message="will",
        )
    finally:
        watcher.close()
        sock = silent.socket()
        if sock is not None:
            sock.close()


def test_an_empty_client_id_gets_one_assigned(embedded) -> None:
    anon = mqtt5("")
    answers: list[Any] = []
    anon.on_connect = lambda _c, _u, _f, reason, props: answers.append((reason, props))
    anon.connect(embedded.host, embedded.port, clean_start=True)
    anon.loop_start()
    try:
        eventually(lambda: answers, message="connack")
        reason, props = answers[0]
        assert not reason.is_failure
        assert props.AssignedClientIdentifier.startswith("auto-")
    finally:
        anon.disconnect()
        anon.loop_stop()


def test_a_second_connection_with_the_same_id_takes_over_and_the_first_will_goes_out(
    embedded,
) -> None:
    watcher = Recorder(embedded.host, embedded.port, "status/#")
    first = with_will(embedded, "twin", "status/twin", b"taken over")
    reasons: list[Any] = []
    first.on_disconnect = lambda _c, _u, _f, reason, _p: reasons.append(reason)
    second = None
    try:
        second = Client(embedded, "twin")
        eventually(
            lambda: b"taken over" in [m.payload for m in watcher.on("status/")],
            message="the first one's will",
        )
        eventually(lambda: reasons, message="the first one is told")
        assert reasons[0].value == 0x8E  # session taken over
    finally:
        if second is not None:
            second.close()
        first.loop_stop()
        watcher.close()


def test_a_broker_process_that_dies_at_start_is_reported_at_once() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    # Waiting out the timeout would raise TimeoutError instead.
    with pytest.raises(RuntimeError, match="status 3"):
        wait_port("127.0.0.1", free_port(), timeout=60.0, process=dead)
