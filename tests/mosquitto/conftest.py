"""A private Mosquitto on the stack's own config, password file and ACL.

The config is mosquitto/mosquitto.conf with only its container paths and its
port swapped, so `allow_anonymous false` and the rest are the stack's. The ACL
starts as the committed mosquitto/acl; accounts are added with the code under
test. Run as root, Mosquitto drops to user ``mosquitto`` before it opens its
files, as it does in the container: the fixture hands it its directory so a
0600 password file is readable only because it owns it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cbm.topics import Topics
from services.broker.local import free_port, wait_port
from services.broker.local import mosquitto_binary as installed_mosquitto
from services.mqttadmin.accounts import add_device, add_user
from services.mqttadmin.acl import STACK_USERS, Role

ROOT = Path(__file__).resolve().parents[2]
STACK_CONF = ROOT / "mosquitto" / "mosquitto.conf"
STACK_ACL = ROOT / "mosquitto" / "acl"
TOPICS = Topics("cbm")  # the committed ACL is written for the default base
PROTOCOLS = {"v5": MQTTProtocolVersion.MQTTv5, "v311": MQTTProtocolVersion.MQTTv311}


def mosquitto_binary() -> str:
    found = installed_mosquitto()
    if found is None:
        pytest.skip("mosquitto is not installed")
    return found


@dataclass
class TlsFiles:
    directory: Path
    port: int

    @property
    def ca(self) -> Path:
        return self.directory / "server.crt"  # self-signed: its own CA


def derive_conf(workdir: Path, port: int, tls: TlsFiles | None = None) -> str:
    """Return the stack's config with this broker's port and paths."""
    swaps = {
        "persistence_location": f"persistence_location {workdir}/",
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {workdir}/passwd",
        "acl_file": f"acl_file {workdir}/acl",
        "log_dest": f"log_dest file {workdir}/mosquitto.log",
    }
    seen: list[str] = []
    lines = []
    for original in STACK_CONF.read_text().splitlines():
        line = original
        key = line.split(" ", 1)[0]
        if key in swaps:
            seen.append(key)
            line = swaps[key]
        elif tls is not None and line.startswith("#listener 8883"):
            seen.append("tls listener")
            line = f"listener {tls.port} 127.0.0.1"
        elif tls is not None and line.startswith(("#certfile ", "#keyfile ")):
            seen.append("tls file")
            line = line[1:].replace("/mosquitto/certs", str(tls.directory))
        lines.append(line)
    expected = sorted([*swaps, *(["tls listener", "tls file", "tls file"] if tls else [])])
    assert sorted(seen) == expected, f"mosquitto.conf changed shape: {seen}"
    if os.geteuid() == 0 and _broker_account() is None:
        lines.append("user root")  # no account to drop to on this machine
    return "\n".join(lines) + "\n"


def _broker_account() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


@dataclass
class SecureBroker:
    """A Mosquitto process of our own, and the passwords of the accounts we made."""

    workdir: Path
    port: int
    tls: TlsFiles | None = None
    host: str = "127.0.0.1"
    passwords: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    clients: list[Client] = field(default_factory=list, repr=False)

    @property
    def password_file(self) -> Path:
        return self.workdir / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.workdir / "acl"

    def add_device(self, asset_id: str) -> str:
        account = add_device(
            asset_id, topics=TOPICS, password_file=self.password_file, acl_file=self.acl_file
        )
        self.passwords[asset_id] = account.password
        return account.password

    def add_user(self, name: str, role: Role) -> str:
        account = add_user(
            name,
            role,
            topics=TOPICS,
            password_file=self.password_file,
            acl_file=self.acl_file,
        )
        self.passwords[name] = account.password
        return account.password

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(derive_conf(self.workdir, self.port, self.tls))
        account = _broker_account()
        if os.geteuid() == 0 and account is not None:
            for path in (self.workdir, *self.workdir.rglob("*")):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in (self.port, *([self.tls.port] if self.tls else [])):
            self._wait_listening(port)

    def _wait_listening(self, port: int) -> None:
        assert self.process is not None
        try:
            wait_port(self.host, port, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            err = b""
            if self.process.poll() is not None and self.process.stderr is not None:
                err = self.process.stderr.read()
            detail = f"{exc} {err.decode()}\n{self.log()}"
            raise RuntimeError(f"mosquitto not listening on {port}: {detail}") from exc

    def reload(self) -> None:
        """Ask the broker to re-read its password file and ACL (SIGHUP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def client(
        self,
        username: str | None,
        password: str | None = None,
        *,
        protocol: str = "v5",
        tls: bool = False,
    ) -> Client:
        """Connect as ``username`` (its recorded password unless given); wait for the CONNACK."""
        if username is not None and password is None:
            password = self.passwords[username]
        port = self.tls.port if tls and self.tls else self.port
        ca = self.tls.ca if tls and self.tls else None
        client = Client(self.host, port, username, password, protocol=protocol, ca_file=ca)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class Client:
    """A paho client logged in as one user: what it receives, and every ack it gets."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        protocol: str = "v5",
        ca_file: Path | None = None,
    ) -> None:
        self.protocol = protocol
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connack: ReasonCode | None = None
        self._lock = threading.Lock()
        self._connacked = threading.Event()
        self._disconnected = threading.Event()
        self._acks: dict[int, ReasonCode | list[ReasonCode]] = {}
        self._acked = threading.Condition(self._lock)
        self._paho = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"t-{username or 'anon'}-{uuid.uuid4().hex[:6]}",
            protocol=PROTOCOLS[protocol],
        )
        if username is not None:
            self._paho.username_pw_set(username, password)
        if ca_file is not None:
            self._paho.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._paho.reconnect_delay_set(60, 120)  # a refused client must not hammer the broker
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_publish = self._on_publish
        self._paho.on_subscribe = self._on_subscribe
        self._paho.connect(host, port, keepalive=30)
        self._paho.loop_start()
        assert self._connacked.wait(10), "no CONNACK within 10 s"

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    @property
    def disconnected(self) -> bool:
        return self._disconnected.is_set()

    def _on_connect(
        self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.connack = reason
        self._connacked.set()

    def _on_disconnect(
        self, _c: paho.Client, _u: object, _f: object, _r: object, _p: object
    ) -> None:
        self._disconnected.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_publish(
        self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        with self._acked:
            self._acks[mid] = reason
            self._acked.notify_all()

    def _on_subscribe(
        self, _c: paho.Client, _u: object, mid: int, reasons: list[ReasonCode], _p: object
    ) -> None:
        with self._acked:
            self._acks[mid] = reasons
            self._acked.notify_all()

    def _wait_ack(self, mid: int) -> ReasonCode | list[ReasonCode]:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, 10), f"no ack for mid {mid}"
            return self._acks.pop(mid)

    def subscribe(self, *filters: str) -> list[ReasonCode]:
        """Subscribe with QoS 1 and return the SUBACK's reason codes."""
        _rc, mid = self._paho.subscribe([(f, 1) for f in filters])
        assert mid is not None, "subscribe not sent"
        reasons = self._wait_ack(mid)
        assert isinstance(reasons, list)
        return reasons

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish with QoS 1, wait for the PUBACK and return its reason code.

        Mosquitto routes a message to its subscribers before it acknowledges it,
        so once this returns the broker is done with the message.
        """
        info = self._paho.publish(topic, payload, qos=1, retain=retain)
        reason = self._wait_ack(info.mid)
        assert not isinstance(reason, list)
        return reason

    def barrier(self) -> None:
        """Round-trip a SUBSCRIBE: whatever the broker sent us before is now received."""
        self.subscribe(f"barrier/{uuid.uuid4().hex}")

    def received(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [p for t, p, _r in self.messages if topic is None or t == topic]

    def close(self) -> None:
        self._paho.disconnect()
        self._paho.loop_stop()


def _make_workdir() -> Path:
    # Not pytest's tmp_path: as root that sits under a 0700 directory the
    # broker's unprivileged user cannot traverse.
    return Path(tempfile.mkdtemp(prefix="cbm-mosquitto-"))


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., SecureBroker]]:
    """Build stopped brokers (stack ACL copied in); stop and delete them afterwards."""
    made: list[SecureBroker] = []

    def make(*, tls: bool = False) -> SecureBroker:
        mosquitto_binary()
        workdir = _make_workdir()
        shutil.copyfile(STACK_ACL, workdir / "acl")
        tls_files = _self_signed(workdir / "certs", free_port()) if tls else None
        broker = SecureBroker(workdir, free_port(), tls_files)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)


@pytest.fixture
def stack_broker(broker_factory: Callable[..., SecureBroker]) -> SecureBroker:
    """A running broker with every stack account and two devices, pump-a and pump-b."""
    broker = broker_factory()
    for name, role in STACK_USERS.items():
        broker.add_user(name, role)
    broker.add_device("pump-a")
    broker.add_device("pump-b")
    broker.start()
    return broker


def _self_signed(directory: Path, port: int) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    directory.mkdir()
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(directory / "server.key"),
            "-out",
            str(directory / "server.crt"),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(directory, port)
