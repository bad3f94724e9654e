"""Drive an inference stage batch by batch, without a broker, against the real database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cbm.frames import encode_features
from cbm.messages import FeatureVectors
from cbm.mqtt import Inbound
from cbm.prediction import PredictionMessage
from cbm.topics import Topics
from services.inference.stage import InferenceEffects, InferenceStage


def feature_message(stage: InferenceStage, vectors: FeatureVectors) -> Inbound:
    """Return the features frame the stage would receive for ``vectors``."""
    return Inbound(
        topic=Topics(stage.settings.base_topic).features(0),
        payload=encode_features(vectors),
        mid=1,
        dup=False,
        received_at=datetime.now(UTC),
        generation=1,
    )


def step(stage: InferenceStage, pool: Any, vectors: FeatureVectors) -> InferenceEffects:
    """Compute one batch and commit its rows, as the worker does; return its effects."""
    effects = stage.compute([feature_message(stage, vectors)])
    with pool.connection() as conn, conn.transaction():
        stage.persist(conn, effects)
    return effects


def run_batch(stage: InferenceStage, pool: Any, vectors: FeatureVectors) -> list[PredictionMessage]:
    """Compute and commit one batch; return its (live) predictions."""
    return step(stage, pool, vectors).predictions
