"""Batches written through the stages' own writers, for the rollup tests and the benchmark.

The rollups must stay right under exactly what ingest, features and inference
do to the raw tables (a data-modifying CTE, COPY into a staging table then
INSERT ... SELECT, INSERT ... SELECT unnest, each ON CONFLICT DO NOTHING), so
these call those writers rather than imitating their SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from cbm.messages import FeatureVectors, TemperatureStatus, Window
from cbm.prediction import PredictionMessage
from services.features.extract import FEATURE_NAMES
from services.features.store import write_vectors
from services.inference.store import write_predictions
from services.ingest.store import write_batch

STEP = timedelta(seconds=97)


@dataclass(frozen=True)
class StageBatch:
    """One batch of every stage: a window, a feature vector and a prediction per asset."""

    windows: list[Window]
    vectors: FeatureVectors
    predictions: list[PredictionMessage]
    received_at: list[datetime]


def stage_batch(start: datetime, *, assets: int, k: int) -> StageBatch:
    """Return batch number ``k``: one row per asset at ``start + k * STEP`` (plus a second each)."""
    names = [f"roll-{i}" for i in range(assets)]
    rng = np.random.default_rng(k)
    times = [start + k * STEP + timedelta(seconds=i) for i in range(assets)]
    received = [t + timedelta(seconds=0.5 + i % 7) for i, t in enumerate(times)]
    missing = [(k + i) % 5 == 0 for i in range(assets)]
    windows = [
        Window(
            asset_id=a,
            time=t,
            seq=k,
            sample_rate_hz=5000.0,
            samples=np.zeros(10, dtype=np.float32),
            received_at=r,
            temperature_c=float("nan") if gone else 41.0 + i % 9,
            temperature_status=TemperatureStatus.MISSING if gone else TemperatureStatus.SPAN,
        )
        for i, (a, t, r, gone) in enumerate(zip(names, times, received, missing, strict=True))
    ]
    values = rng.normal(1.0, 0.3, size=(assets, len(FEATURE_NAMES)))
    if k % 3 == 0:
        values[0, FEATURE_NAMES.index("rms")] = np.nan  # a feature that could not be computed
    vectors = FeatureVectors(
        feature_set="fs-test",
        columns=FEATURE_NAMES,
        asset_ids=tuple(names),
        times=tuple(times),
        seqs=tuple([k] * assets),
        received_at=tuple(received),
        running=tuple((k + i) % 4 != 0 for i in range(assets)),
        values=values,
    )
    predictions = [
        PredictionMessage(
            asset_id=a,
            time=t,
            rul_hours=float(500 - k - i % 50),
            rul_low=float(400 - k),
            rul_high=float(600 - k),
            health_index=0.5,
            anomaly_score=float(rng.random()),
            running=True,
            model_version="m-test",
            top_features=(("rms", 1.5),),
        )
        for i, (a, t) in enumerate(zip(names, times, strict=True))
    ]
    return StageBatch(windows, vectors, predictions, received)


def write_stage_batch(conn: psycopg.Connection[Any], batch: StageBatch) -> None:
    """Write a batch as the three stages would (the caller owns the transaction)."""
    write_batch(conn, batch.windows, [], {})
    write_vectors(conn, batch.vectors)
    write_predictions(conn, batch.predictions, batch.received_at)
