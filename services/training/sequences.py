"""Turn a feature table into model-ready sequences, targets and a scaler, per split.

Every step that serving repeats goes through ``services.inference.model``
(column selection, transforms, padding, scaling), so the network trains on
exactly what it will be fed live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from services.inference.model import FeatureSpec, build_sequences, select_features, standardize
from services.training.dataset import FeatureTable, capped_rul

FloatArray = npt.NDArray[np.float64]

DEFAULT_FEATURES: Final = (
    FeatureSpec("rms", "log(x)"),
    FeatureSpec("peak", "log(x)"),
    FeatureSpec("crest_factor", "log(x)"),
    FeatureSpec("kurtosis", "log(x+3)"),
    FeatureSpec("skewness", "x"),
    FeatureSpec("clearance_factor", "log(x)"),
    FeatureSpec("band_100_500_power", "log(x)"),
    FeatureSpec("band_1000_2000_power", "log(x)"),
    FeatureSpec("band_2000_5000_power", "log(x)"),
    FeatureSpec("spectral_centroid_hz", "log(x)"),
    FeatureSpec("env_bpfo", "log(x)"),
    FeatureSpec("env_bpfi", "log(x)"),
    FeatureSpec("env_bsf", "log(x)"),
    FeatureSpec("temperature_mean_c", "x"),
)
"""The model's inputs; why these and not the others is in docs/model.md."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SplitData:
    """Sequences of one split: one per running window, assets concatenated in order.

    ``x`` holds selected, transformed, *unscaled* values ``(S, N, F)``;
    ``target`` the capped RUL, ``true_rul`` the uncapped one (inf: healthy).
    ``spans`` gives each asset's ``[start, stop)`` rows.
    """

    x: FloatArray
    target: FloatArray
    true_rul: FloatArray
    asset_ids: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    last_vectors: FloatArray  # (S, F): the current vector of each sequence

    def __len__(self) -> int:
        return int(self.target.size)

    def asset_rows(self, asset_id: str) -> slice:
        """Return the rows of one asset."""
        start, stop = self.spans[self.asset_ids.index(asset_id)]
        return slice(start, stop)


def prepare(
    table: FeatureTable,
    assets: Sequence[str],
    *,
    features: Sequence[FeatureSpec],
    lookback: int,
    cap_hours: float,
) -> SplitData:
    """Return the sequences and targets of ``assets`` (running windows only)."""
    blocks: list[FloatArray] = []
    targets: list[FloatArray] = []
    truths: list[FloatArray] = []
    spans: list[tuple[int, int]] = []
    ids: list[str] = []
    start = 0
    for asset_id in assets:
        rows = table.rows(asset_id)
        if rows.size == 0:
            continue
        matrix = select_features(table.values[rows], features)
        blocks.append(build_sequences(matrix, lookback))
        truth = table.rul_hours[rows]
        truths.append(truth)
        targets.append(capped_rul(truth, cap_hours))
        spans.append((start, start + rows.size))
        ids.append(asset_id)
        start += rows.size
    width = len(features)
    x = np.concatenate(blocks) if blocks else np.empty((0, lookback, width))
    return SplitData(
        x=x,
        target=np.concatenate(targets) if targets else np.empty(0),
        true_rul=np.concatenate(truths) if truths else np.empty(0),
        asset_ids=tuple(ids),
        spans=tuple(spans),
        last_vectors=x[:, -1, :],
    )


@dataclass(frozen=True, slots=True, eq=False)
class Scaler:
    """Per-feature mean and standard deviation of the training vectors."""

    mean: FloatArray
    std: FloatArray

    @classmethod
    def fit(cls, data: SplitData) -> Scaler:
        """Fit on the current vector of every training sequence (each window counted once).

        Non-finite values are ignored; a constant column gets std 1 so it scales to 0.
        """
        vectors = data.last_vectors
        finite = np.isfinite(vectors)
        if not finite.any(axis=0).all():
            raise ValueError("a model feature has no finite training value")
        clean = np.where(finite, vectors, np.nan)
        mean = np.nanmean(clean, axis=0)
        std = np.nanstd(clean, axis=0)
        return cls(mean=mean, std=np.where(std > 1e-12, std, 1.0))

    def apply(self, sequences: FloatArray) -> npt.NDArray[np.float32]:
        """Return scaled float32 sequences (the serving code's ``standardize``)."""
        return standardize(sequences, self.mean, self.std)


def repeat_current(data: SplitData) -> FloatArray:
    """Return the shortcut's input: each current vector repeated over the whole lookback."""
    lookback = data.x.shape[1]
    return np.repeat(data.last_vectors[:, None, :], lookback, axis=1)
