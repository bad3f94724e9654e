"""A publish the broker refuses must never count as delivered (no silent loss)."""

from __future__ import annotations

import pytest

from cbm.errors import PublishRefusedError
from cbm.mqtt import MqttLink, Outbound
from cbm.settings import from_mapping
from tests.mosquitto.conftest import TOPICS, SecureBroker


def test_refused_publish_raises_and_allowed_one_succeeds(stack_broker: SecureBroker) -> None:
    settings = from_mapping(
        {
            "base_topic": TOPICS.base,
            "mqtt": {"host": stack_broker.host, "port": stack_broker.port, "username": "features"},
            "secrets": {"mqtt_password": stack_broker.passwords["features"]},
        }
    )
    link = MqttLink(settings, client_id="cbm-features-refusal-test")
    link.start()
    try:
        assert link.wait_connected(10)
        assert link.publish([Outbound(TOPICS.features(0), b"frame")]) is True
        with pytest.raises(PublishRefusedError, match="1 of 2"):
            link.publish(
                [
                    Outbound(TOPICS.features(1), b"ok"),
                    Outbound(TOPICS.raw("pump-a", "vibration"), b"forged"),
                ]
            )
    finally:
        link.stop()
