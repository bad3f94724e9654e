"""The real Mosquitto on the stack's config: who may connect, publish and receive."""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Callable

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from cbm.settings import from_mapping
from cbm.topics import RawKind
from services.mqttadmin.cli import register
from services.mqttadmin.passwd import verify_password
from tests.mosquitto.conftest import TOPICS, SecureBroker
from tests.support.mqtt import eventually

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87


def accepted(reason: ReasonCode) -> bool:
    # Not `== 0`: a PUBACK of 0x10 "no matching subscribers" is a success too.
    return not reason.is_failure


def raw(asset: str, kind: RawKind = "vibration") -> str:
    return TOPICS.raw(asset, kind)


@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_anonymous_connection_is_refused(stack_broker: SecureBroker, protocol: str) -> None:
    client = stack_broker.client(None, protocol=protocol)

    assert not client.accepted
    assert client.connack is not None and client.connack.value == NOT_AUTHORIZED


def test_device_connects_with_its_password_only(stack_broker: SecureBroker) -> None:
    assert stack_broker.client("pump-a").accepted

    wrong = stack_broker.client("pump-a", "not-the-password-of-pump-a")
    other_devices = stack_broker.client("pump-a", stack_broker.passwords["pump-b"])
    unknown = stack_broker.client("pump-zz", stack_broker.passwords["pump-a"])

    for refused in (wrong, other_devices, unknown):
        assert not refused.accepted
        assert refused.connack is not None and refused.connack.value == NOT_AUTHORIZED


@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_device_publishes_only_to_its_own_raw_topics(
    stack_broker: SecureBroker, protocol: str
) -> None:
    # Watchers that would receive each forged message if the broker let it through.
    ingest = stack_broker.client("ingest")
    ingest.subscribe("cbm/#")
    features = stack_broker.client("features")
    features.subscribe("cbm/#")
    alerter = stack_broker.client("alerter")
    alerter.subscribe("cbm/#")
    device = stack_broker.client("pump-a", protocol=protocol)

    forged = [
        raw("pump-b", "vibration"),
        raw("pump-b", "temperature"),
        TOPICS.windows(0),
        TOPICS.predictions("pump-a"),
        TOPICS.rul(0),
        TOPICS.status("ingest"),
    ]
    refusals = [device.publish(topic, b"forged") for topic in forged]
    own = device.publish(raw("pump-a", "temperature"), b"own temperature")
    sentinel = device.publish(raw("pump-a", "vibration"), b"sentinel")

    eventually(lambda: b"sentinel" in ingest.received(), message="sentinel at ingest")
    assert ingest.received() == [b"own temperature", b"sentinel"]
    features.barrier()
    alerter.barrier()
    assert features.messages == []
    assert alerter.messages == []
    assert accepted(own) and accepted(sentinel)
    if protocol == "v5":
        assert [r.value for r in refusals] == [NOT_AUTHORIZED] * len(forged)
    else:  # MQTT 3.1.1 has no reason code: the broker acknowledges and drops
        assert all(accepted(r) for r in refusals)


def test_device_may_not_publish_below_or_beside_its_topics(stack_broker: SecureBroker) -> None:
    device = stack_broker.client("pump-a")

    for topic in ("cbm/raw/pump-a", "cbm/raw/pump-a/other", "cbm/raw/pump-a/vibration/x"):
        assert device.publish(topic, b"forged").value == NOT_AUTHORIZED, topic


def test_device_receives_nothing(stack_broker: SecureBroker) -> None:
    device = stack_broker.client("pump-a")
    device.subscribe("cbm/#", raw("pump-a"))
    other = stack_broker.client("pump-b")

    assert accepted(other.publish(raw("pump-b"), b"window"))
    assert accepted(device.publish(raw("pump-a"), b"own window"))
    device.barrier()

    assert device.messages == []


def test_ingest_reads_raw_and_writes_windows_but_cannot_write_raw(
    stack_broker: SecureBroker,
) -> None:
    ingest = stack_broker.client("ingest")
    # A wide filter is granted: Mosquitto then delivers only what `read` allows.
    ingest.subscribe("cbm/#")
    features = stack_broker.client("features")
    features.subscribe(TOPICS.stage_filter("windows"))
    raw_watcher = stack_broker.client("ingest")
    raw_watcher.subscribe("cbm/raw/#")
    device = stack_broker.client("pump-a")

    assert accepted(device.publish(raw("pump-a"), b"window"))
    eventually(lambda: ingest.received(raw("pump-a")), message="raw window at ingest")

    assert accepted(ingest.publish(TOPICS.windows(3), b"frame"))
    assert accepted(ingest.publish(TOPICS.deadletter("ingest"), b"bad"))
    assert accepted(ingest.publish(TOPICS.status("ingest"), b"online", retain=True))
    eventually(lambda: features.received(TOPICS.windows(3)), message="windows at features")

    forged = [raw("pump-a"), TOPICS.features(3), TOPICS.status("features"), "cbm/deadletter/x"]
    assert [ingest.publish(t, b"forged").value for t in forged] == [NOT_AUTHORIZED] * 4
    assert accepted(device.publish(raw("pump-a"), b"sentinel"))

    eventually(lambda: b"sentinel" in raw_watcher.received(), message="sentinel")
    assert raw_watcher.received() == [b"window", b"sentinel"]
    # It wrote windows and status but may not read them back.
    ingest.barrier()
    assert ingest.received() == [b"window", b"sentinel"]


def test_readonly_account_receives_and_publishes_nothing(stack_broker: SecureBroker) -> None:
    ingest = stack_broker.client("ingest")
    assert accepted(ingest.publish(TOPICS.status("ingest"), b"online", retain=True))
    grafana = stack_broker.client("grafana")
    assert grafana.accepted
    grafana.subscribe("#", "cbm/#", "$SYS/#")
    alerter = stack_broker.client("alerter")  # reads status: sees what grafana may not
    alerter.subscribe("cbm/status/+")

    device = stack_broker.client("pump-a")
    assert accepted(device.publish(raw("pump-a"), b"window"))
    assert accepted(ingest.publish(TOPICS.windows(0), b"frame"))
    inference = stack_broker.client("inference")
    assert accepted(inference.publish(TOPICS.predictions("pump-a"), b"rul"))
    assert grafana.publish(TOPICS.status("ingest"), b"offline").value == NOT_AUTHORIZED
    assert accepted(ingest.publish(TOPICS.status("ingest"), b"sentinel"))

    eventually(lambda: b"sentinel" in alerter.received(), message="sentinel at alerter")
    assert alerter.received() == [b"online", b"sentinel"]
    grafana.barrier()
    assert grafana.messages == []


def test_subscribe_is_always_granted_and_read_is_checked_at_delivery(
    stack_broker: SecureBroker,
) -> None:
    """Mosquitto 2.0's ACL file never refuses a SUBSCRIBE; only `read` lets messages through."""
    features = stack_broker.client("features")  # reads windows only
    granted = features.subscribe(
        "#", TOPICS.raw_filter("vibration"), TOPICS.stage_filter("windows")
    )
    ingest = stack_broker.client("ingest")  # writes windows, reads raw only
    ingest.subscribe(TOPICS.stage_filter("windows"))

    assert [r.value for r in granted] == [1, 1, 1]  # granted QoS 1, even for raw
    assert accepted(stack_broker.client("pump-a").publish(raw("pump-a"), b"window"))
    assert accepted(ingest.publish(TOPICS.windows(1), b"frame"))

    eventually(lambda: features.received(TOPICS.windows(1)), message="windows at features")
    features.barrier()
    ingest.barrier()
    assert features.received() == [b"frame", b"frame"]  # once per matching filter (MQTT 5)
    assert ingest.messages == []  # `write` alone does not deliver


@pytest.mark.parametrize(
    ("writer", "topic", "reader", "filter_"),
    [
        ("pump-a", raw("pump-a", "temperature"), "ingest", TOPICS.raw_filter("temperature")),
        ("simulator", raw("any-asset"), "ingest", TOPICS.raw_filter("vibration")),
        ("ingest", TOPICS.windows(7), "features", TOPICS.stage_filter("windows")),
        ("features", TOPICS.features(7), "inference", TOPICS.stage_filter("features")),
        ("inference", TOPICS.rul(7), "alerter", TOPICS.stage_filter("rul")),
        ("features", TOPICS.status("features"), "alerter", "cbm/status/+"),
    ],
)
def test_each_hop_of_the_pipeline_is_allowed(
    stack_broker: SecureBroker, writer: str, topic: str, reader: str, filter_: str
) -> None:
    receiver = stack_broker.client(reader)
    receiver.subscribe(filter_)

    assert accepted(stack_broker.client(writer).publish(topic, b"payload"))

    eventually(lambda: receiver.received(topic), message=f"{writer} -> {reader}")


@pytest.mark.parametrize("service", ["ingest", "features", "inference", "alerter"])
def test_each_worker_may_write_its_outputs_dead_letters_and_status(
    stack_broker: SecureBroker, service: str
) -> None:
    output = {
        "ingest": TOPICS.windows(0),
        "features": TOPICS.features(0),
        "inference": TOPICS.predictions("pump-a"),
        "alerter": TOPICS.alerts("pump-a"),
    }[service]
    worker = stack_broker.client(service)

    allowed = [output, TOPICS.deadletter(service), TOPICS.status(service)]
    if service == "inference":
        allowed.append(TOPICS.rul(0))  # the alerter's batched copy
    assert all(accepted(worker.publish(t, b"x")) for t in allowed)
    others = [s for s in ("ingest", "features", "inference", "alerter") if s != service]
    forbidden = [TOPICS.status(s) for s in others] + [TOPICS.deadletter(s) for s in others]
    assert [worker.publish(t, b"x").value for t in forbidden] == [NOT_AUTHORIZED] * 6


def test_add_device_again_rekeys_it_and_the_broker_follows(stack_broker: SecureBroker) -> None:
    old_password = stack_broker.passwords["pump-a"]
    connected_with_old = stack_broker.client("pump-a")
    assert connected_with_old.accepted

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "mqtt",
            "add-device",
            "pump-a",
            "--password-file",
            str(stack_broker.password_file),
            "--acl-file",
            str(stack_broker.acl_file),
        ]
    )
    out = io.StringIO()
    assert args.handler(from_mapping({}), args, out) == 0
    found = re.search(r"password\s+(\S+)", out.getvalue())
    assert found is not None
    new_password = found[1]

    entries = [
        line
        for line in stack_broker.password_file.read_text().splitlines()
        if line.startswith("pump-a:")
    ]
    assert len(entries) == 1
    assert verify_password(new_password, entries[0].split(":", 1)[1])
    assert stack_broker.acl_file.read_text().count("user pump-a\n") == 1
    assert stack_broker.password_file.stat().st_mode & 0o777 == 0o600

    stack_broker.reload()
    eventually(lambda: connected_with_old.disconnected, message="old session dropped")
    eventually(lambda: stack_broker.client("pump-a", new_password).accepted, message="new key")
    assert not stack_broker.client("pump-a", old_password).accepted
    assert stack_broker.client("pump-b").accepted  # others untouched


def test_a_device_added_while_running_is_live_after_a_reload(stack_broker: SecureBroker) -> None:
    watcher = stack_broker.client("ingest")
    watcher.subscribe(TOPICS.raw_filter("vibration"))
    password = stack_broker.add_device("fan-9")
    assert not stack_broker.client("fan-9", password).accepted

    stack_broker.reload()
    eventually(lambda: stack_broker.client("fan-9", password).accepted, message="reload")
    device = stack_broker.client("fan-9", password)

    assert accepted(device.publish(raw("fan-9"), b"first window"))
    eventually(lambda: watcher.received(raw("fan-9")), message="fan-9 data at ingest")


def test_tls_listener_of_the_commented_block_works(
    broker_factory: Callable[..., SecureBroker],
) -> None:
    broker = broker_factory(tls=True)
    broker.add_device("pump-a")
    broker.start()

    assert broker.client("pump-a", tls=True).accepted
    assert not broker.client(None, tls=True).accepted
    assert not broker.client("pump-a", "wrong-password-over-tls", tls=True).accepted
