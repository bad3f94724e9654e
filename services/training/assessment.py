"""Judge a network's outputs on a split: the target's scale, calibration and scores.

The network learns RUL as a share of the cap (``scaled_target``); its
validation outputs set the conformal offsets per band of predicted RUL
(``calibrate``); served predictions are scored against the truth per window
and per failing asset (``score_prediction``). ``cbm train``, ``evaluate`` and
``retrain`` all judge models through here.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.inference.model import Prediction
from services.training.calibration import BandOffsets, band_offsets
from services.training.metrics import AssetTrack, Scores, score
from services.training.sequences import SplitData

CALIBRATION_BANDS: Final = 6


def scaled_target(data: SplitData, cap_hours: float) -> npt.NDArray[np.float32]:
    """Return the network's target: capped RUL as a share of the cap."""
    return (data.target / cap_hours).astype(np.float32)


def band_edges(cap_hours: float) -> tuple[float, ...]:
    """Return the calibration bands' edges: six equal bands of predicted RUL below the cap."""
    return tuple(cap_hours * k / CALIBRATION_BANDS for k in range(1, CALIBRATION_BANDS))


def calibrate(
    raw_validation: npt.NDArray[np.floating[Any]],
    data: SplitData,
    cap_hours: float,
    coverage: float,
) -> BandOffsets:
    """Return conformal offsets per band from the network's validation outputs (RUL / cap)."""
    hours = np.sort(raw_validation.astype(np.float64), axis=1) * cap_hours
    return band_offsets(
        low=hours[:, 0],
        median=np.clip(hours[:, 1], 0.0, cap_hours),
        high=hours[:, 2],
        target=data.target,
        coverage=coverage,
        cap_hours=cap_hours,
        edges_hours=band_edges(cap_hours),
    )


def tracks(data: SplitData, rul: npt.NDArray[np.float64]) -> list[AssetTrack]:
    """Return the per-asset prediction tracks of the failing assets in ``data``."""
    result = []
    for asset_id in data.asset_ids:
        rows = data.asset_rows(asset_id)
        truth = data.true_rul[rows]
        if not np.isfinite(truth).all():
            continue
        result.append(
            AssetTrack(
                asset_id=asset_id,
                true_rul=truth,
                rul=rul[rows],
                life_hours=float(truth[0]),
            )
        )
    return result


def score_prediction(prediction: Prediction, data: SplitData, cap_hours: float) -> Scores:
    """Score one model's predictions on ``data``."""
    return score(
        target=data.target,
        rul=prediction.rul,
        low=prediction.low,
        high=prediction.high,
        tracks=tracks(data, prediction.rul),
        cap_hours=cap_hours,
    )
