"""Ingest's shell: wire the pure core to the worker (MQTT in and out, the database)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cbm.frames import encode_windows
from cbm.messages import RawTemperature, Window
from cbm.mqtt import Inbound, Outbound
from cbm.settings import Settings
from cbm.topics import Topics, by_partition
from cbm.worker import Effects
from services.ingest import core, store

log = logging.getLogger(__name__)


@dataclass
class IngestEffects(Effects):
    """Effects of an ingest batch, with what the database needs."""

    windows: list[Window] = field(default_factory=list)
    temperatures: list[RawTemperature] = field(default_factory=list)
    tallies: dict[str, core.AssetTally] = field(default_factory=dict)

    def extend(self, other: Effects) -> None:
        """Add another batch's effects (tallies of the same asset are summed)."""
        super().extend(other)
        if isinstance(other, IngestEffects):
            self.windows.extend(other.windows)
            self.temperatures.extend(other.temperatures)
            for asset_id, tally in other.tallies.items():
                mine = self.tallies.setdefault(asset_id, core.AssetTally())
                mine.gaps += tally.gaps
                mine.dead_letters += tally.dead_letters
                if tally.last_seq is not None:
                    mine.last_seq = tally.last_seq
                if tally.last_received_at is not None:
                    mine.last_received_at = tally.last_received_at


class IngestStage:
    """Validate raw device data and emit paired windows by partition."""

    service = "ingest"
    record_kind = "window"
    uses_database = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic)
        self.rules = core.IngestRules(
            ingest=settings.ingest, assets=settings.assets, topics=self.topics
        )
        self.state = core.IngestState()

    def subscriptions(self) -> Sequence[str]:
        """Return the raw vibration and temperature filters."""
        return (self.topics.raw_filter("vibration"), self.topics.raw_filter("temperature"))

    def prepare(self, pool: ConnectionPool | None) -> None:
        """Register listed assets and reload sequence numbers and recent temperatures."""
        assert pool is not None
        self.state = core.IngestState()
        with pool.connection() as conn:
            store.register_assets(conn, self.settings.assets.items)
            store.load_state(
                conn,
                self.state,
                now=datetime.now(UTC),
                max_age_s=self.settings.ingest.temperature_max_age_s,
            )

    def compute(self, batch: Sequence[Inbound]) -> IngestEffects:
        """Run the core over a batch and pack accepted windows into partition frames."""
        inputs = [
            core.RawInput(m.topic, m.payload, m.received_at, redelivered=m.dup) for m in batch
        ]
        self.state, out = core.step(self.state, inputs, self.rules, now=datetime.now(UTC))
        groups = by_partition(out.windows, attrgetter("asset_id"), self.settings.worker.partitions)
        return IngestEffects(
            messages=[Outbound(self.topics.windows(p), encode_windows(ws)) for p, ws in groups],
            dead_letters=out.dead_letters,
            records=len(out.windows),
            lags_s=[(w.received_at - w.time).total_seconds() for w in out.windows],
            windows=out.windows,
            temperatures=out.temperatures,
            tallies=out.tallies,
        )

    def persist(self, conn: psycopg.Connection[Any], effects: IngestEffects) -> None:
        """Write windows, readings and tallies idempotently."""
        store.write_batch(conn, effects.windows, effects.temperatures, effects.tallies)
