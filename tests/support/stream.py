"""A simulated fleet published as real devices would: paced, buffered through broker outages.

``services.simulator.run.publish_fleet`` is the product's simulator; its
``DevicePool.flush`` waits with ``MQTTMessageInfo.wait_for_publish``, which
raises for a message published while the broker is away. Tests that take the
broker down use this stream instead: the same windows and payloads
(``simulate_fleet`` + ``edge_messages``), the same wall-clock pacing, but it
keeps every unacknowledged publish in paho's queue (paho sends it again after
the reconnect) and records when the broker acknowledged each window.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cbm.settings import Settings
from cbm.topics import Topics
from services.simulator.edge import EdgeMessage, Faults, edge_messages
from services.simulator.fleet import AssetSpec
from services.simulator.physics import SimWindow, simulate_fleet


@dataclass(frozen=True, slots=True)
class Acked:
    """A window the broker acknowledged, and when (``time.monotonic()``)."""

    asset_id: str
    time: datetime
    acked_at: float


@dataclass
class StreamTally:
    """What the stream published; ``windows`` holds only broker-acknowledged good windows."""

    windows: list[Acked] = field(default_factory=list)
    failed_assets: set[str] = field(default_factory=set)

    @property
    def sent(self) -> list[tuple[str, datetime]]:
        """Return the acknowledged windows as (asset, event time), like ``Tally.sent``."""
        return [(w.asset_id, w.time) for w in self.windows]


class FleetStream:
    """Publish a fleet in a background thread until it has failed or ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        specs: Sequence[AssetSpec],
        *,
        seed: int,
        speedup: float,
        max_windows: int | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.tally = StreamTally()
        self._settings = settings
        self._specs = list(specs)
        self._seed = seed
        self._speedup = speedup
        self._max_windows = max_windows
        self._faults = faults or Faults()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Condition()
        self._pending: dict[int, EdgeMessage] = {}
        self._early: dict[int, float] = {}  # mid -> ack time, acknowledged before we saw the mid
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"stream-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_publish = self._on_publish
        self._client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=5)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="fleet-stream", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        """Return whether windows are still being published."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop publishing new windows (what was published is still acknowledged)."""
        self._stop.set()

    def finish(self, timeout: float = 120.0) -> StreamTally:
        """Wait until every window is published and acknowledged; disconnect; return the tally."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the fleet stream did not finish"
        assert self.error is None, f"the fleet stream failed: {self.error!r}"
        with self._lock:
            done = self._lock.wait_for(lambda: not self._pending, timeout)
        assert done, f"{len(self._pending)} publishes never acknowledged by the broker"
        self._client.disconnect()
        self._client.loop_stop()
        return self.tally

    def _run(self) -> None:
        try:
            self._publish_all()
        except BaseException as exc:
            self.error = exc
            raise

    def _publish_all(self) -> None:
        topics = Topics(self._settings.base_topic)
        windows = simulate_fleet(
            self._specs,
            seed=self._seed,
            start=datetime.now(UTC) - timedelta(days=365),
            max_windows=self._max_windows,
        )
        wall_start = time.time()
        first: list[datetime] = []

        def stamp(window: SimWindow) -> datetime:
            if not first:
                first.append(window.time)
            offset = (window.time - first[0]).total_seconds() / self._speedup
            return datetime.fromtimestamp(wall_start + offset, UTC)

        for message in edge_messages(
            windows,
            topics=topics,
            payload_format="binary",
            faults=self._faults,
            seed=self._seed + 1,
            stamp=stamp,
        ):
            if self._stop.is_set():
                return
            if message.kind == "temperature":
                delay = message.time.timestamp() - time.time()
                if delay > 0 and self._stop.wait(delay):
                    return
            # Not under our lock: paho calls on_publish holding its own, which
            # publish() needs too. An acknowledgement can thus come first.
            info = self._client.publish(message.topic, message.payload, qos=1)
            with self._lock:
                acked_at = self._early.pop(info.mid, None)
                if acked_at is None:
                    self._pending[info.mid] = message
                else:
                    self._count(message, acked_at)

    def _on_publish(
        self, _client: paho.Client, _userdata: object, mid: int, _reason: object, _props: object
    ) -> None:
        acked_at = time.monotonic()
        with self._lock:
            message = self._pending.pop(mid, None)
            if message is None:
                self._early[mid] = acked_at
            else:
                self._count(message, acked_at)
            self._lock.notify_all()

    def _count(self, message: EdgeMessage, acked_at: float) -> None:
        tally = self.tally
        if message.kind == "window" and message.window is not None:
            tally.windows.append(Acked(message.asset_id, message.time, acked_at))
            if message.window.failed:
                tally.failed_assets.add(message.asset_id)
