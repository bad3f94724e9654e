"""Inference's shell: feature frames in, prediction rows and per-asset messages out.

The model is loaded once with the light serving runtime (no TensorFlow in
this process) and swapped without a restart when ``models/CURRENT`` names a
new version; every row carries the version that made it.

Shadow mode: while ``models/SHADOW`` names another version, that candidate
runs on the same batches beside the live model, with its own sequences. Its
rows go to ``shadow_prediction`` only: nothing is published, so no alert can
come of them. A failing shadow is switched off; it never holds up live rows.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from cbm.errors import ContractError
from cbm.frames import decode_features
from cbm.maintenance import latest_resets
from cbm.messages import DeadLetter, FeatureVectors
from cbm.mqtt import Inbound, Outbound
from cbm.prediction import PredictionMessage, encode_prediction, encode_predictions
from cbm.settings import Settings
from cbm.topics import Topics, by_partition
from cbm.worker import Effects
from services.features.columns import FEATURE_NAMES
from services.inference import core, store
from services.inference.model import CURRENT_FILE, SHADOW_FILE, RulModel, shadow_version

R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class InferenceEffects(Effects):
    """Effects of an inference batch, with the rows to store."""

    predictions: list[PredictionMessage] = field(default_factory=list)
    received_at: list[datetime] = field(default_factory=list)
    shadow: list[PredictionMessage] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        """Add another batch's effects."""
        super().extend(other)
        if isinstance(other, InferenceEffects):
            self.predictions.extend(other.predictions)
            self.received_at.extend(other.received_at)
            self.shadow.extend(other.shadow)


class InferenceStage:
    """Predict RUL for every feature vector, one model call per batch."""

    service = "inference"
    record_kind = "prediction"
    uses_database = True

    def __init__(self, settings: Settings, *, model: RulModel | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic)
        self.rules = core.Rules(
            baseline_vectors=settings.inference.baseline_vectors,
            std_floor=settings.inference.anomaly_std_floor,
            explain_top=settings.inference.explain_top,
        )
        self.state = core.InferenceState()
        self.model = model
        self.shadow: RulModel | None = None
        self.shadow_state = core.InferenceState()
        self._shadow_rules = dataclasses.replace(self.rules, explain_top=0)
        self._pool: ConnectionPool | None = None
        self._pinned = model is not None or settings.inference.model_version is not None
        self._current_mtime = 0.0
        self._shadow_mtime = 0.0
        self._next_check = 0.0
        self._resets: dict[str, datetime] = {}

    def subscriptions(self) -> Sequence[str]:
        """Return the filter of every features partition."""
        return (self.topics.stage_filter("features"),)

    def prepare(self, pool: ConnectionPool | None) -> None:
        """Load the model; sequences are rebuilt lazily, asset by asset."""
        self._pool = pool
        self.state = core.InferenceState()
        self.shadow_state = core.InferenceState()
        if self.model is None:
            self.model = self._load(self.settings.inference.model_version)

    def compute(self, batch: Sequence[Inbound]) -> InferenceEffects:
        """Decode feature frames, rebuild unknown assets, predict all rows in one call."""
        self._poll()
        model = self.model
        assert model is not None
        frames: list[FeatureVectors] = []
        dead: list[DeadLetter] = []
        for message in batch:
            try:
                vectors = decode_features(message.payload)
                if vectors.columns != FEATURE_NAMES:
                    raise ContractError("bad_frame", "feature columns differ from this build's")
                frames.append(vectors)
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
        effects = InferenceEffects(dead_letters=dead)
        if not frames:
            return effects
        vectors = _concat(frames)
        self._forget_renewed(vectors)
        # Every database read before any state changes: a read that fails makes the
        # worker retry the batch, which must find the sequences as they were.
        self._rebuild(vectors, model, self.state)
        self._shadow_guarded(lambda shadow: self._rebuild(vectors, shadow, self.shadow_state))
        self.state, predictions = core.step(self.state, vectors, model, self.rules, self._resets)
        effects.shadow = self._shadow_step(vectors)
        received = dict(
            zip(
                zip(vectors.asset_ids, vectors.times, strict=True), vectors.received_at, strict=True
            )
        )
        effects.predictions = predictions
        effects.received_at = [received[(p.asset_id, p.time)] for p in predictions]
        # One frame per partition for the alerter and, unless turned off, one
        # message per prediction for outside consumers.
        groups = by_partition(predictions, attrgetter("asset_id"), self.settings.worker.partitions)
        effects.messages = [
            Outbound(self.topics.rul(part), encode_predictions(ps)) for part, ps in groups
        ]
        if self.settings.inference.publish_per_asset:
            effects.messages += [
                Outbound(self.topics.predictions(p.asset_id), encode_prediction(p))
                for p in predictions
            ]
        effects.records = len(predictions)
        now = datetime.now(UTC)
        effects.lags_s = [(now - p.time).total_seconds() for p in predictions]
        return effects

    def persist(self, conn: psycopg.Connection[Any], effects: InferenceEffects) -> None:
        """Store the predictions (and the shadow's) once each."""
        store.write_predictions(conn, effects.predictions, effects.received_at)
        store.write_shadow(conn, effects.shadow)

    def _forget_renewed(self, vectors: FeatureVectors) -> None:
        """Drop the sequences that belong to a life a repair or replacement has ended.

        Decided by event time, as the alerter does: a sequence built for an
        earlier life is dropped when the batch brings a vector after the event,
        not before, even if the event was recorded long before (a backlog).
        It is dropped too when it already took vectors of the new life because
        the event was recorded late. The rebuild reads sequence and baseline
        from the new life's rows only (see store.load_history), and core.step
        splits a batch that spans the event.
        """
        if not self._resets:
            return
        newest: dict[str, datetime] = {}
        for asset_id, t in zip(vectors.asset_ids, vectors.times, strict=True):
            if asset_id in self._resets and (asset_id not in newest or t > newest[asset_id]):
                newest[asset_id] = t
        for asset_id, t in newest.items():
            began = self._resets[asset_id]
            if t <= began:
                continue  # still the old life (a backlog from before the event)
            for state in (self.state, self.shadow_state):
                seq = state.assets.get(asset_id)
                if seq is not None and (seq.life_began is None or seq.life_began < began):
                    del state.assets[asset_id]
                    if state is self.state:
                        log.info(
                            "%s was repaired or replaced at %s: its sequence starts again",
                            asset_id,
                            began.isoformat(),
                        )

    def _shadow_step(self, vectors: FeatureVectors) -> list[PredictionMessage]:
        def step(shadow: RulModel) -> list[PredictionMessage]:
            self.shadow_state, predicted = core.step(
                self.shadow_state, vectors, shadow, self._shadow_rules, self._resets
            )
            return predicted

        return self._shadow_guarded(step) or []

    def _shadow_guarded(self, action: Callable[[RulModel], R]) -> R | None:
        """Return ``action`` run on the shadow model, if any; a failing shadow is switched off."""
        shadow = self.shadow
        if shadow is None:
            return None
        try:
            return action(shadow)
        except psycopg.Error:
            raise  # the database, not the shadow: the worker retries the batch
        except Exception:
            log.exception("shadow model %s failed; it is off until SHADOW changes", shadow.version)
            self.shadow = None
            return None

    def _rebuild(
        self, vectors: FeatureVectors, model: RulModel, state: core.InferenceState
    ) -> None:
        before: dict[str, datetime] = {}
        for asset_id, t in zip(vectors.asset_ids, vectors.times, strict=True):
            if asset_id not in state.assets and (asset_id not in before or t < before[asset_id]):
                before[asset_id] = t
        if not before:
            return
        assert self._pool is not None
        with self._pool.connection() as conn:
            stored = store.load_history(
                conn,
                before,
                lookback=model.lookback,
                baseline=self.rules.baseline_vectors,
                shadow_version=model.version if state is self.shadow_state else None,
            )
        for asset_id, history in stored.items():
            recent: list[core.FloatArray] = (
                list(model.select(np.array(history.recent))) if history.recent else []
            )
            base: list[core.FloatArray] = (
                list(model.select(np.array(history.baseline))) if history.baseline else []
            )
            state.assets[asset_id] = core.new_sequence(
                model.lookback,
                self.rules,
                history=recent,
                baseline=base,
                last_time=history.last_time,
                last_rul=history.last_rul,
                life_began=history.life_began,
            )

    def _load(self, version: str | None) -> RulModel:
        model = RulModel.load(self.settings.inference.models_dir, version)
        log.info(
            "serving model %s (lookback %d, %d features)",
            model.version,
            model.lookback,
            len(model.feature_names),
        )
        self._current_mtime = self._current_stat()
        return model

    def _current_stat(self, name: str = CURRENT_FILE) -> float:
        try:
            return os.stat(Path(self.settings.inference.models_dir) / name).st_mtime
        except OSError:
            return 0.0

    def _poll(self) -> None:
        """Every ``reload_check_s``: read the repairs; look at SHADOW, and CURRENT unless pinned."""
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self.settings.inference.reload_check_s
        assert self._pool is not None
        with self._pool.connection() as conn:
            self._resets = latest_resets(conn)
        self._maybe_reload_shadow()
        if not self._pinned:
            self._maybe_reload_current()

    def _maybe_reload_current(self) -> None:
        if self._current_stat() == self._current_mtime:
            return
        try:
            model = self._load(None)
        except Exception:
            log.exception(
                "could not load the newly promoted model; keeping %s",
                self.model.version if self.model else "none",
            )
            return
        if self.model is None or model.version != self.model.version:
            # Sequences hold the old model's columns: rebuild them from the database.
            self.model = model
            self.state = core.InferenceState()
            if self.shadow is not None and self.shadow.version == model.version:
                log.info("shadow model %s is live now; shadow mode ends", model.version)
                self.shadow = None

    def _maybe_reload_shadow(self) -> None:
        stat = self._current_stat(SHADOW_FILE)
        if stat == self._shadow_mtime:
            return
        self._shadow_mtime = stat
        models_dir = self.settings.inference.models_dir
        self.shadow, self.shadow_state = None, core.InferenceState()
        try:
            version = shadow_version(models_dir)
            if version is None or (self.model is not None and version == self.model.version):
                log.info("no shadow model")
                return
            self.shadow = RulModel.load(models_dir, version)
        except Exception:
            log.exception("could not load the shadow model; running without one")
            return
        log.info(
            "shadow model %s runs beside %s (rows: shadow_prediction)",
            version,
            self.model.version if self.model else "none",
        )


def _concat(frames: list[FeatureVectors]) -> FeatureVectors:
    if len(frames) == 1:
        return frames[0]
    return FeatureVectors(
        feature_set=frames[0].feature_set,
        columns=frames[0].columns,
        asset_ids=tuple(a for f in frames for a in f.asset_ids),
        times=tuple(t for f in frames for t in f.times),
        seqs=tuple(s for f in frames for s in f.seqs),
        received_at=tuple(r for f in frames for r in f.received_at),
        running=tuple(x for f in frames for x in f.running),
        values=np.concatenate([f.values for f in frames]),
    )
