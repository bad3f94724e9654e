"""The simulator's shell: publish a simulated fleet over MQTT in compressed time.

One operating hour per window by default; ``speedup`` operating seconds pass
per wall-clock second, so at the default 3,600 each asset sends one window a
second and a 200-hour life runs in about three minutes. Event times are the
wall-clock times of publication (what a device's clock would stamp), so the
pipeline sees a live fleet.

With ``record_failures`` each asset that runs to failure also becomes a
``failure`` row of ``maintenance_event`` (``services.simulator.recorder``),
stamped with the event time of its last window, as the plant's maintenance
log would have it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cbm.settings import Settings
from cbm.topics import Topics
from services.simulator.edge import EdgeMessage, Faults, PayloadFormat, edge_messages
from services.simulator.fleet import AssetSpec
from services.simulator.physics import SimWindow, simulate_fleet
from services.simulator.recorder import Connect, FailureRecorder, failure_event, settings_connect

log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What was published, for the progress line and the caller's accounting."""

    windows: int = 0
    temperatures: int = 0
    bad: int = 0
    duplicates: int = 0
    failed_assets: set[str] = field(default_factory=set)
    sent: list[tuple[str, datetime]] = field(default_factory=list)  # good windows (asset, time)
    failures_recorded: int = 0  # maintenance_event rows written (with record_failures)
    failures_unrecorded: int = 0  # failures the database did not take by the end


class DevicePool:
    """MQTT clients of the fleet: one per device, or a small shared pool."""

    def __init__(
        self,
        settings: Settings,
        asset_ids: Sequence[str],
        *,
        per_device: bool,
        pool_size: int = 4,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self._clients: dict[str, paho.Client] = {}
        run = uuid.uuid4().hex[:6]
        groups = list(asset_ids) if per_device else [f"pool{i}" for i in range(pool_size)]
        made = {}
        for name in groups:
            c = paho.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=f"sim-{name}-{run}",
                protocol=MQTTProtocolVersion.MQTTv5,
            )
            c.max_inflight_messages_set(500)
            user = name if per_device else settings.mqtt.username
            if credentials and user in credentials:
                c.username_pw_set(user, credentials[user])
            elif user and settings.secrets.mqtt_password is not None:
                c.username_pw_set(user, settings.secrets.mqtt_password.get_secret_value())
            c.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
            c.loop_start()
            made[name] = c
        for i, asset_id in enumerate(asset_ids):
            self._clients[asset_id] = made[asset_id if per_device else groups[i % len(groups)]]
        self._all = list(made.values())
        self._pending: list[paho.MQTTMessageInfo] = []

    def publish(self, message: EdgeMessage) -> None:
        """Publish with QoS 1 (acknowledgement awaited in ``flush``)."""
        self._pending.append(
            self._clients[message.asset_id].publish(message.topic, message.payload, qos=1)
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for the broker to acknowledge everything published so far."""
        for info in self._pending:
            info.wait_for_publish(timeout)
        self._pending.clear()

    def close(self) -> None:
        """Flush and disconnect every client."""
        self.flush()
        for c in self._all:
            c.disconnect()
            c.loop_stop()


def publish_fleet(
    settings: Settings,
    specs: Sequence[AssetSpec],
    *,
    seed: int,
    speedup: float = 3600.0,
    hours_per_window: float = 1.0,
    max_windows: int | None = None,
    payload_format: PayloadFormat = "binary",
    faults: Faults | None = None,
    per_device: bool = False,
    credentials: dict[str, str] | None = None,
    progress: TextIO | None = sys.stderr,
    stop: threading.Event | None = None,
    on_window: Callable[[SimWindow, datetime], None] | None = None,
    record_failures: bool = False,
    connect: Connect | None = None,
) -> Tally:
    """Publish the fleet in compressed real time; return what was sent.

    ``record_failures`` writes a ``maintenance_event`` failure row for each
    asset that runs to failure, as it happens, to the database ``connect``
    opens (default: ``settings.database``). The database being away only
    costs the rows, which are retried; publishing goes on regardless.
    """
    topics = Topics(settings.base_topic)
    sim_start = datetime.now(UTC) - timedelta(days=365)
    windows = simulate_fleet(
        specs,
        seed=seed,
        start=sim_start,
        hours_per_window=hours_per_window,
        max_windows=max_windows,
    )
    wall_start = time.time()
    first_sim: list[datetime] = []

    def stamp(window: SimWindow) -> datetime:
        if not first_sim:
            first_sim.append(window.time)
        offset = (window.time - first_sim[0]).total_seconds() / speedup
        return datetime.fromtimestamp(wall_start + offset, UTC)

    tally = Tally()
    pool = DevicePool(
        settings, [s.asset_id for s in specs], per_device=per_device, credentials=credentials
    )
    recorder = None
    if record_failures:
        recorder = FailureRecorder(connect=connect or settings_connect(settings))
    last_report = time.monotonic()
    try:
        for message in edge_messages(
            windows,
            topics=topics,
            payload_format=payload_format,
            faults=faults or Faults(),
            seed=seed + 1,
            stamp=stamp,
        ):
            if stop is not None and stop.is_set():
                break
            if message.kind == "temperature":
                # Pace on the event time: wait until the device would have sent it.
                delay = message.time.timestamp() - time.time()
                if delay > 0:
                    pool.flush()
                    time.sleep(delay)
            pool.publish(message)
            failed_before = len(tally.failed_assets)
            _count(tally, message, on_window)
            if recorder is not None and len(tally.failed_assets) > failed_before:
                assert message.window is not None  # only a failed window adds an asset
                recorder.record(
                    failure_event(message.asset_id, message.time, message.window.fault_mode)
                )
            if progress is not None and time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                rate = tally.windows / max(1e-9, time.time() - wall_start)
                print(
                    f"simulator: {len(specs)} assets, {tally.windows} windows sent "
                    f"({rate:.0f}/s), {len(tally.failed_assets)} failed",
                    file=progress,
                )
    finally:
        pool.close()
        if recorder is not None:
            result = recorder.close()
            tally.failures_recorded = result.written
            tally.failures_unrecorded = len(result.unwritten)
    if progress is not None:
        recorded = (
            f" ({tally.failures_recorded} recorded, {tally.failures_unrecorded} not)"
            if recorder is not None
            else ""
        )
        print(
            f"simulator: done, {tally.windows} windows, {tally.bad} bad payloads, "
            f"{len(tally.failed_assets)} assets ran to failure{recorded}",
            file=progress,
        )
    return tally


def _count(
    tally: Tally,
    message: EdgeMessage,
    on_window: Callable[[SimWindow, datetime], None] | None,
) -> None:
    if message.kind == "temperature":
        tally.temperatures += 1
    elif message.kind == "window" and message.window is not None:
        tally.windows += 1
        tally.sent.append((message.asset_id, message.time))
        if message.window.failed:
            tally.failed_assets.add(message.asset_id)
        if on_window is not None:
            on_window(message.window, message.time)
    elif message.kind == "duplicate":
        tally.duplicates += 1
    else:
        tally.bad += 1


def write_file(
    path: Path,
    specs: Sequence[AssetSpec],
    *,
    seed: int,
    hours_per_window: float = 1.0,
    max_windows: int | None = None,
) -> int:
    """Write the run-to-failure fleet with its ground truth to ``path`` (no broker)."""
    from services.simulator.dataset import write_fleet  # noqa: PLC0415

    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = simulate_fleet(
        specs, seed=seed, start=start, hours_per_window=hours_per_window, max_windows=max_windows
    )
    return write_fleet(
        path, windows, specs=specs, meta={"seed": seed, "hours_per_window": hours_per_window}
    )
