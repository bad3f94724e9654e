"""A paho-mqtt client set up as the pipeline needs it, with durable publishes.

MQTT 5, QoS 1, a fixed client id and a persistent session (clean start off, a
long session expiry) so the broker queues our messages while we are away;
manual acknowledgement so an input is acknowledged only once its effects are
durable. Callbacks only hand messages to a queue: an exception inside a paho
callback would silently kill the network thread.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cbm.errors import PublishRefusedError
from cbm.settings import Settings

log = logging.getLogger(__name__)

QOS = 1


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message, as the worker loop sees it."""

    topic: str
    payload: bytes
    mid: int
    dup: bool
    received_at: datetime
    generation: int  # connection count when received; acks are only valid within it


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to publish with QoS 1."""

    topic: str
    payload: bytes
    retain: bool = False


class MqttLink:
    """A connected paho client: inbound queue, durable publish, manual ack."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str,
        subscriptions: Sequence[str] = (),
        will: Outbound | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self.client_id = client_id
        self._subscriptions = tuple(subscriptions)
        self._settings = settings
        self._on_connected = on_connected
        self._lock = threading.Condition()
        self._generation = 0
        self._connected = False
        self._acked_at: dict[int, int] = {}  # mid -> publish-ack counter value
        self._refused: dict[int, str] = {}  # mid -> reason the broker gave for refusing it
        self._ack_counter = 0
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        mqtt = settings.mqtt
        if mqtt.username:
            password = settings.secrets.mqtt_password
            client.username_pw_set(mqtt.username, password.get_secret_value() if password else None)
        if mqtt.tls:
            client.tls_set(
                ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
        client.max_inflight_messages_set(200)
        client.reconnect_delay_set(
            min_delay=max(1, round(settings.worker.retry_initial_s)),
            max_delay=max(1, round(settings.worker.retry_max_s)),
        )
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client

    @property
    def connected(self) -> bool:
        """Return whether the link is connected right now."""
        return self._connected

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting with back-off."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.mqtt.session_expiry_s
        # The broker keeps at most this many unacknowledged messages in flight
        # to us (Mosquitto honours it) and queues the rest: a micro-batch holds
        # its acks, so it must exceed the batch size, and it bounds our memory.
        props.ReceiveMaximum = min(65_535, max(100, 2 * self._settings.worker.batch_max))
        self._client.connect_async(
            self._settings.mqtt.host,
            self._settings.mqtt.port,
            keepalive=self._settings.mqtt.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds pass; return whether connected."""
        with self._lock:
            return self._lock.wait_for(lambda: self._connected, timeout)

    def publish(self, messages: Sequence[Outbound], *, stop: threading.Event | None = None) -> bool:
        """Publish with QoS 1 and block until the broker acknowledged every one.

        Messages paho could not send yet (no connection) stay in its queue and
        go out after the reconnect; we wait for their PUBACKs all the same.
        Return False only when ``stop`` is set before they were acknowledged.
        Raise PublishRefusedError when the broker answered a PUBACK with a failure
        code (MQTT 5, e.g. 0x87 not authorised): the message did not arrive.
        """
        if not messages:
            return True
        with self._lock:
            start = self._ack_counter
        mids = [
            self._client.publish(m.topic, m.payload, qos=QOS, retain=m.retain).mid for m in messages
        ]
        waited = time.monotonic()
        with self._lock:
            while True:
                pending = [mid for mid in mids if self._acked_at.get(mid, -1) < start]
                if not pending:
                    refused = [self._refused.pop(mid) for mid in mids if mid in self._refused]
                    for mid in mids:
                        self._acked_at.pop(mid, None)
                    if refused:
                        raise PublishRefusedError(
                            f"broker refused {len(refused)} of {len(mids)} messages: {refused[0]}"
                        )
                    return True
                if stop is not None and stop.is_set() and not self._connected:
                    return False
                self._lock.wait(0.5)
                if time.monotonic() - waited > 10:
                    log.warning(
                        "still waiting for %d publish acks (connected=%s)",
                        len(pending),
                        self._connected,
                    )
                    waited = time.monotonic()

    def publish_nowait(self, message: Outbound) -> None:
        """Hand one message to paho without waiting for its acknowledgement."""
        self._client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)

    def ack(self, messages: Sequence[Inbound]) -> int:
        """Acknowledge inputs of the current connection; return how many were acked.

        An input received on an earlier connection is not acked: the broker
        redelivers it on the new one and the idempotent writes absorb it.
        """
        acked = 0
        for message in messages:
            if message.generation == self._generation and self._connected:
                self._client.ack(message.mid, QOS)
                acked += 1
        return acked

    def stop(self, *, farewell: Outbound | None = None) -> None:
        """Publish a last message if connected, then disconnect cleanly."""
        if farewell is not None and self._connected:
            info = self._client.publish(
                farewell.topic, farewell.payload, qos=QOS, retain=farewell.retain
            )
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                log.warning("could not publish the offline status")
        self._client.disconnect()
        self._client.loop_stop()

    # paho callbacks: small, never raising.

    def _handle_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._lock.notify_all()
        log.info(
            "connected to %s:%s (session present: %s)",
            self._settings.mqtt.host,
            self._settings.mqtt.port,
            flags.session_present,
        )
        for topic in self._subscriptions:
            client.subscribe(topic, qos=QOS)
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:
                log.exception("on_connected hook failed")

    def _handle_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._lock:
            self._connected = False
            self._lock.notify_all()
        log.warning("disconnected from the broker: %s", reason)

    def _handle_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")  # topic is not UTF-8
        self.inbox.put(
            Inbound(
                topic=topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                dup=bool(msg.dup),
                received_at=datetime.now(UTC),
                generation=self._generation,
            )
        )

    def _handle_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any
    ) -> None:
        with self._lock:
            self._ack_counter += 1
            self._acked_at[mid] = self._ack_counter
            # 0x10 "no matching subscribers" is a success; 0x80 and above are not.
            if getattr(reason, "is_failure", False):
                self._refused[mid] = str(reason)
            self._lock.notify_all()
