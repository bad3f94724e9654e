"""Inference's pure core: per-asset sequences in, one prediction per feature vector out.

Sequence policy: each asset keeps its last ``lookback`` *running* feature
vectors (the model's columns, in time order). A vector that arrives while the
machine is off is not added and gets a prediction that carries the last RUL
forward with ``running=False`` and a zero anomaly score: a stopped machine
neither degrades nor looks anomalous. An asset with fewer than ``lookback``
vectors is padded on the left by repeating its first vector (the model was
trained the same way, see ``build_sequences``).

Anomaly score: the root-mean-square z-score of the model's columns against
the asset's own healthy baseline, the mean and spread of its first
``baseline_vectors`` running vectors; 0 until the baseline is complete.
All running rows of a batch go through one model call, split into calls of at
most ``MAX_CALL_SEQUENCES`` sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cbm.messages import FeatureVectors
from cbm.prediction import PredictionMessage
from services.inference.model import Prediction, pad_history

FloatArray = npt.NDArray[np.float64]

# Sequences per model call. LiteRT keeps its tensor arena at the largest batch
# it was given (about 8 KB per sequence, never returned), and the explanation
# multiplies a batch by the number of features: the backlog after an outage
# (20,000 windows) took the worker past 1 GB. Past ~1,000 sequences a bigger
# call is no faster per sequence.
MAX_CALL_SEQUENCES = 2048
# Hours of RUL a feature must give back to be named. A prediction within this
# of the cap cannot gain that much, so it is not explained at all: healthy
# machines, most of a fleet, skip the occlusion's ~20 model rows each.
MIN_GAIN_HOURS = 0.05


class Model(Protocol):
    """What the core needs of a RUL model (``services.inference.model.RulModel``)."""

    @property
    def version(self) -> str:
        """Return the model version stamped on every prediction."""
        ...

    @property
    def lookback(self) -> int:
        """Return the sequence length N."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Return the model's input columns, in order."""
        ...

    @property
    def cap_hours(self) -> float:
        """Return the RUL cap (the model's "healthy")."""
        ...

    def select(self, values: npt.ArrayLike) -> FloatArray:
        """Return the model's input columns of full feature rows."""
        ...

    def predict(self, sequences: npt.ArrayLike) -> Prediction:
        """Return RUL and interval in hours for (B, lookback, F) raw sequences."""
        ...


@dataclass(slots=True)
class AssetSequence:
    """One asset's recent running vectors, healthy baseline and last output.

    The recent vectors live in one ``(lookback, F)`` array, oldest row first,
    of which the last ``filled`` rows are in use: at 10,000 assets a deque of
    row arrays cost about twice the memory.
    """

    lookback: int
    window: FloatArray | None = None  # allocated with the first vector
    filled: int = 0
    baseline: list[FloatArray] = field(default_factory=list)
    last_time: datetime | None = None
    last_rul: tuple[float, float, float] | None = None
    # The repair or replacement this bearing's life began at (None: the first life).
    life_began: datetime | None = None
    center: FloatArray | None = None  # baseline mean and floored spread, once complete
    scale: FloatArray | None = None

    @property
    def recent(self) -> FloatArray:
        """Return the vectors in use, oldest first (a view: copy before keeping it)."""
        if self.window is None:
            return np.empty((0, 0))
        return self.window[self.lookback - self.filled :]

    def append(self, x: FloatArray) -> None:
        """Add the newest vector, dropping the oldest once ``lookback`` are held."""
        if self.window is None:
            self.window = np.zeros((self.lookback, len(x)))
        self.window[:-1] = self.window[1:]
        self.window[-1] = x
        self.filled = min(self.filled + 1, self.lookback)


@dataclass
class InferenceState:
    """Sequences per asset; an asset missing here is rebuilt from the database."""

    assets: dict[str, AssetSequence] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rules:
    """Anomaly-score and explanation settings."""

    baseline_vectors: int = 20
    std_floor: float = 0.05
    explain_top: int = 3  # features named per prediction; 0 turns explanations off


def new_sequence(
    lookback: int,
    rules: Rules,
    *,
    history: Sequence[FloatArray] = (),
    baseline: Sequence[FloatArray] = (),
    last_time: datetime | None = None,
    last_rul: tuple[float, float, float] | None = None,
    life_began: datetime | None = None,
) -> AssetSequence:
    """Return an asset's sequence seeded with stored history (oldest first)."""
    seq = AssetSequence(
        lookback=lookback, last_time=last_time, last_rul=last_rul, life_began=life_began
    )
    for x in history[-lookback:]:
        seq.append(x)
    for x in baseline:
        _learn_baseline(seq, x, rules)
    return seq


def step(
    state: InferenceState,
    vectors: FeatureVectors,
    model: Model,
    rules: Rules,
    resets: Mapping[str, datetime] | None = None,
) -> tuple[InferenceState, list[PredictionMessage]]:
    """Predict every row of ``vectors``; every asset in it must already be in ``state``.

    ``resets`` holds each asset's latest repair or replacement: the first row
    after it that meets a sequence of an earlier life starts a new, empty
    sequence, so a batch that spans the event splits there.
    """
    order = sorted(range(len(vectors)), key=lambda i: vectors.times[i])
    # float32 first: the database stores real, so a rebuilt sequence and a live
    # one hold identical numbers and give identical predictions.
    selected = model.select(vectors.values.astype(np.float32).astype(np.float64))
    sequences: list[FloatArray] = []
    running_rows: list[int] = []
    anomaly = np.zeros(len(vectors))
    row_seq: dict[int, AssetSequence] = {}
    for i in order:
        asset_id = vectors.asset_ids[i]
        seq = state.assets[asset_id]
        renewed = resets.get(asset_id) if resets else None
        if (
            renewed is not None
            and vectors.times[i] > renewed
            and (seq.life_began is None or seq.life_began < renewed)
        ):
            seq = state.assets[asset_id] = new_sequence(model.lookback, rules, life_began=renewed)
        row_seq[i] = seq
        if not vectors.running[i]:
            continue
        x = selected[i]
        anomaly[i] = _anomaly(seq, x)
        if seq.last_time is not None and vectors.times[i] <= seq.last_time:
            # Late or replayed: the sequence stays in time order, so this row
            # reports the asset's current RUL instead of entering the sequence.
            continue
        seq.append(x)
        _learn_baseline(seq, x, rules)
        sequences.append(pad_history(seq.recent, model.lookback))
        running_rows.append(i)
    rul = np.zeros(len(vectors))
    low = np.zeros(len(vectors))
    high = np.zeros(len(vectors))
    top: dict[int, tuple[tuple[str, float], ...]] = {}
    if sequences:
        stacked = np.stack(sequences)
        p = _predict(model, stacked)
        rul[running_rows], low[running_rows], high[running_rows] = p.rul, p.low, p.high
        if rules.explain_top > 0:
            explainable = p.rul < model.cap_hours - MIN_GAIN_HOURS
            centers = [
                row_seq[i].center if explainable[k] else None for k, i in enumerate(running_rows)
            ]
            top = _explain(
                model, stacked, p.rul, centers=centers, rows=running_rows, top_k=rules.explain_top
            )
    predicted = set(running_rows)
    out: list[PredictionMessage] = []
    for i in order:
        seq = row_seq[i]
        if i in predicted:
            seq.last_rul = (float(rul[i]), float(low[i]), float(high[i]))
        point = seq.last_rul or (model.cap_hours, model.cap_hours, model.cap_hours)
        if seq.last_time is None or vectors.times[i] > seq.last_time:
            seq.last_time = vectors.times[i]
        out.append(
            PredictionMessage(
                asset_id=vectors.asset_ids[i],
                time=vectors.times[i],
                rul_hours=point[0],
                rul_low=point[1],
                rul_high=point[2],
                health_index=float(np.clip(point[0] / model.cap_hours, 0.0, 1.0)),
                anomaly_score=float(anomaly[i]),
                running=vectors.running[i],
                model_version=model.version,
                top_features=top.get(i, ()),
            )
        )
    return state, out


def _explain(
    model: Model,
    sequences: FloatArray,
    rul: FloatArray,
    *,
    centers: Sequence[FloatArray | None],
    rows: Sequence[int],
    top_k: int,
) -> dict[int, tuple[tuple[str, float], ...]]:
    """Name the features that pull each RUL down, by occlusion against the healthy baseline.

    For every row and model column, the column's whole sequence is replaced by
    the asset's baseline value and the RUL predicted again (all variants in one
    batched call); the hours of RUL a column gives back when made healthy is
    its contribution. Rows whose asset has no baseline yet (or whose caller
    passes None) get no explanation.
    """
    explained = [k for k, c in enumerate(centers) if c is not None]
    if not explained:
        return {}
    n_features = sequences.shape[2]
    # A slice of the rows at a time: their variants are a model call each.
    per_call = max(1, MAX_CALL_SEQUENCES // n_features)
    healthy = np.empty((len(explained), n_features))
    for start in range(0, len(explained), per_call):
        part = explained[start : start + per_call]
        variants = np.repeat(sequences[part], n_features, axis=0)
        for j, k in enumerate(part):
            center = centers[k]
            assert center is not None
            for f in range(n_features):
                variants[j * n_features + f, :, f] = center[f]
        healthy[start : start + len(part)] = model.predict(variants).rul.reshape(
            len(part), n_features
        )
    gain = healthy - rul[explained][:, None]
    names = model.feature_names
    out: dict[int, tuple[tuple[str, float], ...]] = {}
    for j, k in enumerate(explained):
        order = np.argsort(-gain[j])[:top_k]
        out[rows[k]] = tuple(
            (names[f], round(float(gain[j, f]), 2)) for f in order if gain[j, f] > MIN_GAIN_HOURS
        )
    return out


def _predict(model: Model, sequences: FloatArray) -> Prediction:
    """Return ``model.predict`` of ``sequences``, in calls of at most ``MAX_CALL_SEQUENCES``."""
    if len(sequences) <= MAX_CALL_SEQUENCES:
        return model.predict(sequences)
    parts = [
        model.predict(sequences[i : i + MAX_CALL_SEQUENCES])
        for i in range(0, len(sequences), MAX_CALL_SEQUENCES)
    ]
    return Prediction(
        rul=np.concatenate([p.rul for p in parts]),
        low=np.concatenate([p.low for p in parts]),
        high=np.concatenate([p.high for p in parts]),
    )


def _learn_baseline(seq: AssetSequence, x: FloatArray, rules: Rules) -> None:
    if seq.center is not None:
        return
    seq.baseline.append(x)
    if len(seq.baseline) >= rules.baseline_vectors:
        base = np.stack(seq.baseline)
        seq.center = np.nan_to_num(base.mean(axis=0))
        seq.scale = np.maximum(np.nan_to_num(base.std(axis=0)), rules.std_floor)
        seq.baseline = []


def _anomaly(seq: AssetSequence, x: FloatArray) -> float:
    if seq.center is None or seq.scale is None:
        return 0.0
    z = np.nan_to_num((x - seq.center) / seq.scale, nan=0.0, posinf=0.0, neginf=0.0)
    return float(np.sqrt(np.mean(z * z)))
