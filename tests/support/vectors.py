"""Build feature-vector batches for tests: one asset over time, or rows of a training table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from cbm.messages import FeatureVectors, from_micros
from services.features.extract import FEATURE_NAMES, FEATURE_SET_VERSION
from services.training.dataset import FeatureTable


def asset_vectors(
    asset_id: str,
    values: np.ndarray,
    times: Sequence[datetime],
    *,
    first_seq: int = 0,
    running: bool | Sequence[bool] = True,
    feature_set: str = FEATURE_SET_VERSION,
) -> FeatureVectors:
    """Return one asset's rows of ``values`` at ``times``, received as they were taken."""
    n = len(times)
    return FeatureVectors(
        feature_set=feature_set,
        columns=FEATURE_NAMES,
        asset_ids=(asset_id,) * n,
        times=tuple(times),
        seqs=tuple(range(first_seq, first_seq + n)),
        received_at=tuple(times),
        running=(running,) * n if isinstance(running, bool) else tuple(running),
        values=values,
    )


def table_vectors(table: FeatureTable, rows: Sequence[int] | np.ndarray) -> FeatureVectors:
    """Return the given rows of a training table as the features stage would have sent them."""
    times = tuple(from_micros(int(table.time_us[i])) for i in rows)
    return FeatureVectors(
        feature_set=FEATURE_SET_VERSION,
        columns=FEATURE_NAMES,
        asset_ids=tuple(str(table.asset_id[i]) for i in rows),
        times=times,
        seqs=tuple(int(i) for i in rows),
        received_at=times,
        running=tuple(bool(table.running[i]) for i in rows),
        values=table.values[rows],
    )
