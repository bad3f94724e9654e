"""The features stage's shell: window frames in, feature frames and rows out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cbm.errors import ContractError
from cbm.frames import decode_windows, encode_features
from cbm.messages import DeadLetter, FeatureVectors, Window
from cbm.mqtt import Inbound, Outbound
from cbm.settings import Settings
from cbm.topics import Topics, by_partition
from cbm.worker import Effects
from services.features import core, store

log = logging.getLogger(__name__)


@dataclass
class FeatureEffects(Effects):
    """Effects of a features batch, with the vectors to store."""

    vectors: list[FeatureVectors] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        """Add another batch's effects."""
        super().extend(other)
        if isinstance(other, FeatureEffects):
            self.vectors.extend(other.vectors)


class FeaturesStage:
    """Turn windows into feature vectors, one per window, vectorised per batch."""

    service = "features"
    record_kind = "feature_vector"
    uses_database = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic)
        self.state = core.FeaturesState()

    def subscriptions(self) -> Sequence[str]:
        """Return the filter of every windows partition."""
        return (self.topics.stage_filter("windows"),)

    def configure_connection(self, conn: psycopg.Connection[Any]) -> None:
        """Set up each new pool connection once (its staging table)."""
        store.create_staging(conn)

    def prepare(self, pool: ConnectionPool | None) -> None:
        """Reload each asset's recent temperatures so the trend columns continue."""
        assert pool is not None
        self.state = core.FeaturesState()
        depth = self.settings.features.temperature_history
        with pool.connection() as conn:
            since = datetime.now(UTC) - timedelta(days=1)
            for asset_id, readings in store.recent_temperatures(
                conn, depth=depth, since=since
            ).items():
                core.remember_temperatures(self.state, asset_id, readings, depth)

    def compute(self, batch: Sequence[Inbound]) -> FeatureEffects:
        """Decode window frames, extract features for all of them, pack by partition."""
        windows: list[Window] = []
        dead: list[DeadLetter] = []
        for message in batch:
            try:
                windows.extend(decode_windows(message.payload))
            except ContractError as exc:
                dead.append(
                    DeadLetter.of(
                        self.service,
                        exc,
                        topic=message.topic,
                        payload=message.payload,
                        received_at=message.received_at,
                    )
                )
        # Sort by event time so each asset's temperature history grows in order.
        windows.sort(key=lambda w: w.time)
        self.state, features = core.step(
            self.state, windows, assets=self.settings.assets, settings=self.settings.features
        )
        rows = range(len(features.windows))
        groups = by_partition(
            rows, lambda i: features.windows[i].asset_id, self.settings.worker.partitions
        )
        now = datetime.now(UTC)
        return FeatureEffects(
            messages=[
                Outbound(self.topics.features(p), encode_features(features.vectors(part)))
                for p, part in groups
            ],
            dead_letters=dead,
            records=len(features),
            lags_s=[(now - w.time).total_seconds() for w in features.windows],
            vectors=[features.vectors()] if len(features) else [],
        )

    def persist(self, conn: psycopg.Connection[Any], effects: FeatureEffects) -> None:
        """Store every vector once, one write per batch (replays hit the primary key)."""
        for vectors in effects.vectors:
            store.write_vectors(conn, vectors)
