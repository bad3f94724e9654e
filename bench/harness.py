"""Shared pieces of the benchmarks: services, a scratch database, timing."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cbm.migrate import migrate
from tests.support.services import Broker, broker_workdir, find_postgres, start_broker


@dataclass
class Services:
    """A private broker and a scratch database for one benchmark run."""

    broker: Broker
    db_url: str


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Start the tests' broker and create a migrated scratch database.

    The broker is what ``tests.support.services.start_broker`` gives: a private
    Mosquitto with the project's config, the embedded Python broker when
    mosquitto is missing, or the one ``CBM_TEST_MQTT_URL`` names.
    """
    workdir = broker_workdir()  # writable by the broker's own user: persistence works
    name = f"cbm_bench_{uuid.uuid4().hex[:8]}"
    broker: Broker | None = None
    pg = None
    try:
        broker = start_broker(workdir)
        pg = find_postgres()
        with psycopg.connect(pg.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(pg.url_for(name), autocommit=True) as conn:
            migrate(conn)
        yield Services(broker, pg.url_for(name))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            with psycopg.connect(pg.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def client(broker: Broker, client_id: str, *, manual_ack: bool = False) -> paho.Client:
    """Return a connected MQTT 5 client with a persistent session."""
    c = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    c.max_inflight_messages_set(1000)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    return c


def preload(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    """Publish every message with QoS 1 and wait until the broker has them all."""
    pub = client(broker, f"bench-pub-{uuid.uuid4().hex[:6]}")
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def register_session(broker: Broker, client_id: str, topic_filter: str) -> None:
    """Create a persistent session subscribed to ``topic_filter`` and leave it offline."""
    c = client(broker, client_id)
    done = threading.Event()
    c.on_subscribe = lambda *_: done.set()
    c.loop_start()
    c.subscribe(topic_filter, qos=1)
    done.wait(5)
    c.disconnect()
    c.loop_stop()


def bare_hop(broker: Broker, messages: list[tuple[str, bytes]], topic_filter: str) -> float:
    """Return messages/s one paho subscriber drains and manually acks from a full queue.

    The consumer works like a worker's shell: the paho thread hands messages
    to a queue, the main thread takes and acknowledges them.
    """
    import queue  # noqa: PLC0415

    client_id = f"bench-hop-{uuid.uuid4().hex[:6]}"
    register_session(broker, client_id, topic_filter)
    preload(broker, messages)
    inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
    c = client(broker, client_id, manual_ack=True)
    c.on_message = lambda _c, _u, m: inbox.put(m)
    started = time.perf_counter()
    c.loop_start()
    for _ in range(len(messages)):
        m = inbox.get(timeout=60)
        c.ack(m.mid, 1)
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return len(messages) / elapsed
