"""Serve the RUL model: load a versioned artifact and predict RUL with an interval.

The serving half of the model, shared with training so both sides agree on
every number that reaches the network:

- :func:`select_features` picks the model's columns from full feature rows
  and applies their transforms (``log(x)`` for amplitudes...);
- :func:`build_sequences` turns an asset's history of selected vectors into
  lookback windows (the pad policy below);
- :class:`RulModel` scales the sequences with the training scaler, runs the
  LiteRT export and turns its quantiles into RUL hours with a calibrated
  interval.

This module never imports TensorFlow: a worker that loads it pays for numpy
and the LiteRT interpreter only (see docs/model.md).

Pad policy ``repeat-first``: the sequence ending at an asset's ``t``-th
running vector holds vectors ``t-N+1 .. t``; while fewer than ``N`` exist, the
missing older positions repeat the asset's first vector (left padding). A new
asset thus starts with a flat history, which reads as "no trend yet", the
same thing training showed the network at the start of every asset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cbm.errors import ModelError
from services.features.columns import FEATURE_INDEX, FEATURE_NAMES, FEATURE_SET_VERSION

FloatArray = npt.NDArray[np.float64]

META_FORMAT: Final = "cbm-rul-model"
META_FORMAT_VERSION: Final = 1
META_FILE: Final = "meta.json"
TFLITE_FILE: Final = "model.tflite"
KERAS_FILE: Final = "model.keras"
CURRENT_FILE: Final = "CURRENT"
# Names a candidate that runs beside the live model without alerting (shadow mode).
SHADOW_FILE: Final = "SHADOW"
PAD_POLICY: Final = "repeat-first"

_UNHASHED: Final = frozenset({"version", "created_at"})
# Floor under logged amplitudes: far below any sensor's noise, keeps log finite at 0.
_LOG_FLOOR: Final = 1e-12

TRANSFORMS: Final[Mapping[str, Callable[[FloatArray], FloatArray]]] = {
    "x": lambda x: x,
    "log(x)": lambda x: np.log(np.maximum(x, _LOG_FLOOR)),
    # Excess kurtosis + 3 is Pearson's kurtosis, which is >= 1 for any signal.
    "log(x+3)": lambda x: np.log(np.maximum(x + 3.0, _LOG_FLOOR)),
}
"""Column transforms a model may name in its meta.json, by their formula."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One model input: a feature column and the transform applied to it."""

    name: str
    transform: str

    def __post_init__(self) -> None:
        if self.name not in FEATURE_INDEX:
            raise ModelError(f"model feature {self.name!r} is not in the feature set")
        if self.transform not in TRANSFORMS:
            raise ModelError(
                f"model feature {self.name!r} has unknown transform {self.transform!r}"
            )


def select_features(values: npt.ArrayLike, specs: Sequence[FeatureSpec]) -> FloatArray:
    """Return ``(B, len(specs))`` model columns picked and transformed from full feature rows.

    ``values`` is ``(B, len(FEATURE_NAMES))`` in the order of ``FEATURE_NAMES``
    (a ``FeatureBatch.values`` or rows of the ``feature_vector`` table).
    Non-finite inputs stay non-finite; :meth:`RulModel.predict` handles them.
    """
    rows = np.asarray(values, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"values must be (B, {len(FEATURE_NAMES)}), got shape {rows.shape}")
    out = np.empty((rows.shape[0], len(specs)))
    with np.errstate(invalid="ignore", divide="ignore"):
        for column, spec in enumerate(specs):
            out[:, column] = TRANSFORMS[spec.transform](rows[:, FEATURE_INDEX[spec.name]])
    return out


def build_sequences(matrix: npt.ArrayLike, lookback: int) -> FloatArray:
    """Return ``(T, lookback, F)``: for each row of ``matrix (T, F)``, it and its predecessors.

    Row ``t`` of the result holds rows ``t-lookback+1 .. t`` oldest first; where
    those do not exist yet the first row is repeated (pad policy
    ``repeat-first``, see the module docstring).
    """
    rows = np.asarray(matrix, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"matrix must be (T, F), got shape {rows.shape}")
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    n_rows = rows.shape[0]
    # Index t-lookback+1+k, clamped at 0: the clamp is the left padding.
    index = np.arange(n_rows)[:, None] + np.arange(1 - lookback, 1)[None, :]
    sequences: FloatArray = rows[np.maximum(index, 0)]
    return sequences


def pad_history(history: npt.ArrayLike, lookback: int) -> FloatArray:
    """Return the one ``(lookback, F)`` sequence that ends with the last row of ``history``.

    The serving form of :func:`build_sequences` for an asset's latest vectors
    (at least one row; only the last ``lookback`` are used).
    """
    rows = np.asarray(history, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 1:
        raise ValueError(f"history must be (T >= 1, F), got shape {rows.shape}")
    last: FloatArray = build_sequences(rows[-lookback:], lookback)[-1]
    return last


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    """RUL hours and the calibrated interval per asset, ``low <= rul <= high``, all in [0, cap]."""

    rul: FloatArray
    low: FloatArray
    high: FloatArray


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ModelMeta:
    """What meta.json says about a model; the numbers serving needs, parsed and checked."""

    version: str
    features: tuple[FeatureSpec, ...]
    lookback: int
    cap_hours: float
    scaler_mean: FloatArray
    scaler_std: FloatArray
    quantiles: tuple[float, float, float]
    band_edges_hours: FloatArray  # (K,) edges of predicted-RUL bands
    offset_low_hours: FloatArray  # (K + 1,) per band
    offset_high_hours: FloatArray  # (K + 1,) per band
    document: dict[str, Any]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ModelMeta:
        """Parse a meta.json document; ModelError names what is wrong."""
        try:
            if (
                document["format"] != META_FORMAT
                or document["format_version"] != META_FORMAT_VERSION
            ):
                raise ModelError(
                    f"not a {META_FORMAT} v{META_FORMAT_VERSION} model: "
                    f"{document['format']!r} v{document['format_version']!r}"
                )
            if document["feature_set_version"] != FEATURE_SET_VERSION:
                raise ModelError(
                    f"model wants feature set {document['feature_set_version']!r}, "
                    f"the features stage computes {FEATURE_SET_VERSION!r}"
                )
            if document["pad_policy"] != PAD_POLICY:
                raise ModelError(f"unknown pad policy {document['pad_policy']!r}")
            features = tuple(
                FeatureSpec(str(item["name"]), str(item["transform"]))
                for item in document["features"]
            )
            scaler = document["scaler"]
            mean = np.asarray(scaler["mean"], dtype=np.float64)
            std = np.asarray(scaler["std"], dtype=np.float64)
            low_q, mid_q, high_q = (float(q) for q in document["quantiles"])
            calibration = document["calibration"]
            meta = cls(
                version=str(document["version"]),
                features=features,
                lookback=int(document["lookback"]),
                cap_hours=float(document["rul_cap_hours"]),
                scaler_mean=mean,
                scaler_std=std,
                quantiles=(low_q, mid_q, high_q),
                band_edges_hours=np.asarray(calibration["band_edges_hours"], dtype=np.float64),
                offset_low_hours=np.asarray(calibration["offset_low_hours"], dtype=np.float64),
                offset_high_hours=np.asarray(calibration["offset_high_hours"], dtype=np.float64),
                document=dict(document),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed model meta: {exc!r}") from None
        if mean.shape != (len(features),) or std.shape != (len(features),):
            raise ModelError("scaler mean/std do not match the feature list")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ModelError("scaler mean/std must be finite with std > 0")
        if meta.lookback < 1 or not meta.cap_hours > 0:
            raise ModelError("lookback must be >= 1 and rul_cap_hours > 0")
        if not (0 < low_q < mid_q < high_q < 1):
            raise ModelError(f"quantiles must be increasing in (0, 1), got {document['quantiles']}")
        edges, low, high = meta.band_edges_hours, meta.offset_low_hours, meta.offset_high_hours
        if edges.ndim != 1 or low.shape != (edges.size + 1,) or high.shape != low.shape:
            raise ModelError("calibration needs one low and one high offset per band")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ModelError("calibration offsets must be finite")
        if edges.size and not (np.diff(edges) > 0).all():
            raise ModelError("calibration band edges must increase")
        return meta


def standardize(
    sequences: npt.ArrayLike, mean: FloatArray, std: FloatArray
) -> npt.NDArray[np.float32]:
    """Return ``(x - mean) / std`` as float32, non-finite entries set to 0 (the training mean).

    A missing feature (NaN from a broken window) then reads as an average
    value instead of poisoning the whole prediction.
    """
    x = np.asarray(sequences, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scaled = (x - mean) / std
    return np.where(np.isfinite(scaled), scaled, 0.0).astype(np.float32)


def quantiles_to_prediction(quantiles: npt.ArrayLike, meta: ModelMeta) -> Prediction:
    """Turn raw network outputs ``(B, 3)`` (RUL / cap) into hours with the calibrated interval.

    The three quantiles are sorted first (a network may cross them); the
    median, clipped to ``[0, cap]``, is the RUL and picks the calibration band;
    that band's conformal offsets move the outer two; everything is clipped to
    ``[0, cap]`` and ``low <= rul <= high`` holds by construction.
    """
    raw = np.sort(np.asarray(quantiles, dtype=np.float64), axis=1) * meta.cap_hours
    cap = meta.cap_hours
    rul = np.clip(raw[:, 1], 0.0, cap)
    band = calibration_band(rul, meta.band_edges_hours)
    low = np.clip(raw[:, 0] - meta.offset_low_hours[band], 0.0, cap)
    high = np.clip(raw[:, 2] + meta.offset_high_hours[band], 0.0, cap)
    return Prediction(rul=rul, low=np.minimum(low, rul), high=np.maximum(high, rul))


def calibration_band(rul: FloatArray, edges_hours: FloatArray) -> npt.NDArray[np.intp]:
    """Return the calibration band of each predicted RUL: ``edges[i-1] <= rul < edges[i]``."""
    band: npt.NDArray[np.intp] = np.searchsorted(edges_hours, rul, side="right")
    return band


def content_version(tflite: bytes, document: Mapping[str, Any]) -> str:
    """Return ``"m-"`` and 10 hex digits of SHA-256 over the LiteRT bytes and the meta document.

    ``version`` and ``created_at`` are left out of the hash: the same weights
    and description always get the same name, whenever they were made.
    """
    body = {key: value for key, value in document.items() if key not in _UNHASHED}
    digest = hashlib.sha256(tflite)
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return "m-" + digest.hexdigest()[:10]


def current_version(models_dir: Path) -> str:
    """Return the version named in ``models_dir/CURRENT``."""
    path = Path(models_dir) / CURRENT_FILE
    try:
        version = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    if not version:
        raise ModelError(f"{path} is empty")
    return version


def shadow_version(models_dir: Path) -> str | None:
    """Return the version named in ``models_dir/SHADOW``, or None when there is none."""
    path = Path(models_dir) / SHADOW_FILE
    try:
        version = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    return version or None


class RulModel:
    """A loaded RUL model: LiteRT interpreter, scaler, calibration, input contract.

    Not thread-safe (one interpreter); give each worker thread its own.
    """

    def __init__(self, *, meta: ModelMeta, tflite: bytes, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - keep import cheap

        self._meta = meta
        self._interpreter = Interpreter(model_content=tflite, num_threads=num_threads)
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError("the LiteRT model must have one input and one output")
        self._input = int(inputs[0]["index"])
        self._output = int(outputs[0]["index"])
        want = (meta.lookback, len(meta.features))
        if tuple(int(n) for n in inputs[0]["shape_signature"][1:]) != want:
            raise ModelError(
                f"LiteRT input {inputs[0]['shape_signature'].tolist()} does not match "
                f"lookback {meta.lookback} x {len(meta.features)} features"
            )
        self._batch = -1

    @classmethod
    def load(
        cls, models_dir: Path, version: str | None = None, *, num_threads: int = 1
    ) -> RulModel:
        """Load ``models_dir/<version>/`` (None: the version named in ``models_dir/CURRENT``).

        The version is a content hash: a directory whose files do not hash to
        its version is refused.
        """
        name = current_version(models_dir) if version is None else version
        folder = Path(models_dir) / name
        try:
            document = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            tflite = (folder / TFLITE_FILE).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {name} in {models_dir}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{folder / META_FILE} is not JSON: {exc}") from None
        meta = ModelMeta.from_document(document)
        if meta.version != name or content_version(tflite, document) != name:
            raise ModelError(f"model files in {folder} do not hash to version {name}")
        return cls(meta=meta, tflite=tflite, num_threads=num_threads)

    @property
    def meta(self) -> ModelMeta:
        """Return the parsed meta.json."""
        return self._meta

    @property
    def version(self) -> str:
        """Return the model version (a content hash, ``m-`` + 10 hex digits)."""
        return self._meta.version

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Return the model's input columns in order."""
        return tuple(spec.name for spec in self._meta.features)

    @property
    def lookback(self) -> int:
        """Return N, the number of feature vectors in one sequence."""
        return self._meta.lookback

    @property
    def cap_hours(self) -> float:
        """Return the RUL cap: predictions never exceed it."""
        return self._meta.cap_hours

    def select(self, values: npt.ArrayLike) -> FloatArray:
        """Return ``(B, F_model)`` model columns from ``(B, len(FEATURE_NAMES))`` feature rows."""
        return select_features(values, self._meta.features)

    def raw_quantiles(self, sequences: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Return the network's ``(B, 3)`` outputs (RUL / cap) for selected, unscaled sequences."""
        raw = np.asarray(sequences, dtype=np.float64)
        want = (self._meta.lookback, len(self._meta.features))
        if raw.ndim != 3 or raw.shape[1:] != want:
            raise ValueError(f"sequences must be (B, {want[0]}, {want[1]}), got shape {raw.shape}")
        if raw.shape[0] == 0:
            return np.empty((0, 3), dtype=np.float32)
        x = standardize(raw, self._meta.scaler_mean, self._meta.scaler_std)
        if x.shape[0] != self._batch:
            # Resizing re-plans and re-allocates the graph: only when the batch size changes.
            self._interpreter.resize_tensor_input(self._input, list(x.shape), strict=True)
            self._interpreter.allocate_tensors()
            self._batch = x.shape[0]
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x))
        self._interpreter.invoke()
        result: npt.NDArray[np.float32] = self._interpreter.get_tensor(self._output).copy()
        return result

    def predict(self, sequences: npt.ArrayLike) -> Prediction:
        """Return RUL hours with the interval for ``(B, lookback, F_model)`` selected sequences.

        ``sequences`` hold :meth:`select` output (transformed, not scaled);
        the model applies its own scaler.
        """
        return quantiles_to_prediction(self.raw_quantiles(sequences), self._meta)
