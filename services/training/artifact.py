"""Write a versioned model artifact ``models/<version>/`` and point ``models/CURRENT`` at it.

An artifact is three files: ``model.keras`` (to retrain or inspect),
``model.tflite`` (what serving runs) and ``meta.json`` (everything serving
needs besides the weights, plus how the model was made and how well it did).
The version is a content hash (``services.inference.model.content_version``
over the LiteRT bytes and meta.json but ``version`` and ``created_at``):
the same weights and description always get the same name, different ones
never do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from services.features.columns import FEATURE_SET_VERSION
from services.inference.model import (
    CURRENT_FILE,
    KERAS_FILE,
    META_FILE,
    META_FORMAT,
    META_FORMAT_VERSION,
    PAD_POLICY,
    TFLITE_FILE,
    FeatureSpec,
    content_version,
)
from services.training.calibration import BandOffsets


def build_meta(
    *,
    features: Sequence[FeatureSpec],
    lookback: int,
    cap_hours: float,
    scaler_mean: Sequence[float],
    scaler_std: Sequence[float],
    quantiles: Sequence[float],
    offsets: BandOffsets,
    coverage: float,
    data: Mapping[str, Any],
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
    created_at: datetime,
) -> dict[str, Any]:
    """Return the meta.json document (without ``version``, which hashes the rest)."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be an aware UTC datetime")
    return {
        "format": META_FORMAT,
        "format_version": META_FORMAT_VERSION,
        "feature_set_version": FEATURE_SET_VERSION,
        "features": [{"name": spec.name, "transform": spec.transform} for spec in features],
        "lookback": lookback,
        "pad_policy": PAD_POLICY,
        "rul_cap_hours": cap_hours,
        "output": "quantiles of min(RUL, cap) / cap",
        "quantiles": list(quantiles),
        "scaler": {"mean": list(scaler_mean), "std": list(scaler_std)},
        "calibration": {
            "method": "conformalized quantile regression per band of predicted RUL",
            "coverage_target": coverage,
            "band_edges_hours": list(offsets.edges_hours),
            "offset_low_hours": [pair.low_hours for pair in offsets.offsets],
            "offset_high_hours": [pair.high_hours for pair in offsets.offsets],
            "band_windows": list(offsets.windows),
        },
        "data": dict(data),
        "training": dict(training),
        "metrics": dict(metrics),
        "files": {"litert": TFLITE_FILE, "keras": KERAS_FILE},
        "created_at": created_at.isoformat(),
    }


def write_artifact(
    models_dir: Path,
    *,
    tflite: bytes,
    meta: Mapping[str, Any],
    save_keras: Callable[[Path], None],
    make_current: bool,
) -> tuple[str, Path, bool]:
    """Write ``models_dir/<version>/`` atomically; return the version, folder and whether new.

    The files are written into a scratch folder next to the target and renamed
    into place, so a reader never sees half an artifact. An existing folder of
    the same version holds the same model (the version is a content hash) and
    is kept as it is, so retraining a committed model leaves its files alone.
    With ``make_current`` ``models_dir/CURRENT`` then names the version.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    version = content_version(tflite, meta)
    target = models_dir / version
    created = not target.exists()
    if created:
        document = {"version": version, **meta}
        scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=models_dir))
        try:
            scratch.chmod(0o755)  # mkdtemp makes it private; an artifact is for everyone to read
            (scratch / TFLITE_FILE).write_bytes(tflite)
            (scratch / META_FILE).write_text(
                json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8"
            )
            save_keras(scratch / KERAS_FILE)
            scratch.rename(target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    if make_current:
        set_current(models_dir, version)
    return version, target, created


def set_current(models_dir: Path, version: str) -> None:
    """Point ``models_dir/CURRENT`` at ``version`` (atomic replace)."""
    set_pointer(models_dir, CURRENT_FILE, version)


def set_pointer(models_dir: Path, name: str, version: str) -> None:
    """Make the file ``models_dir/name`` (CURRENT, SHADOW) name ``version`` (atomic replace)."""
    path = Path(models_dir) / name
    partial = path.with_name(name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
