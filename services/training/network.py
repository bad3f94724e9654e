"""Build, fit and export the quantile LSTM (the only module that touches TensorFlow).

TensorFlow is imported inside the functions, so importing this module is
cheap; the first call pays the ~6 s import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from services.training import defaults

QUANTILES: Final = (0.1, 0.5, 0.9)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """Shape and training schedule of the network."""

    units: int = defaults.UNITS
    dense_units: int = defaults.DENSE_UNITS
    learning_rate: float = defaults.LEARNING_RATE
    batch_size: int = defaults.BATCH_SIZE
    max_epochs: int = defaults.MAX_EPOCHS
    patience: int = defaults.PATIENCE
    seed: int = defaults.NETWORK_SEED

    def describe(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data."""
        return {
            "units": self.units,
            "dense_units": self.dense_units,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FitResult:
    """A fitted network and its history (one loss value per epoch)."""

    model: Any
    loss: list[float]
    val_loss: list[float]
    best_epoch: int


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and ask for deterministic kernels."""
    quiet_tensorflow()
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_network(lookback: int, n_features: int, config: NetworkConfig, *, unroll: bool) -> Any:
    """Return an uncompiled Keras model ``(B, lookback, F) -> (B, 3)`` quantiles of RUL / cap.

    ``unroll=True`` builds the same weights as a static loop, which LiteRT
    converts to builtin ops only.
    """
    quiet_tensorflow()
    import keras  # noqa: PLC0415

    inputs = keras.Input((lookback, n_features), name="sequence")
    hidden = keras.layers.LSTM(config.units, unroll=unroll, name="lstm")(inputs)
    hidden = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(hidden)
    outputs = keras.layers.Dense(len(QUANTILES), name="quantiles")(hidden)
    return keras.Model(inputs, outputs, name="rul_lstm")


def pinball_loss(quantiles: tuple[float, ...] = QUANTILES) -> Callable[[Any, Any], Any]:
    """Return the mean pinball (quantile) loss over the output columns."""
    import keras  # noqa: PLC0415

    levels = np.asarray(quantiles, dtype=np.float32)[None, :]

    def loss(y_true: Any, y_pred: Any) -> Any:
        error = keras.ops.reshape(y_true, (-1, 1)) - y_pred
        return keras.ops.mean(keras.ops.maximum(levels * error, (levels - 1.0) * error))

    return loss


def fit(
    train: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    validation: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    config: NetworkConfig,
    *,
    verbose: int = 2,
) -> FitResult:
    """Fit the network on scaled sequences and targets (RUL / cap) with early stopping.

    The weights of the epoch with the lowest validation loss are kept.
    ``verbose`` is Keras's: 0 silent, 1 progress bar, 2 one line per epoch.
    """
    seed_everything(config.seed)
    import keras  # noqa: PLC0415

    x_train, y_train = train
    model = build_network(x_train.shape[1], x_train.shape[2], config, unroll=False)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=pinball_loss(),
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=validation,
        epochs=config.max_epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=[stop],
        verbose=verbose,
    )
    val_loss = [float(v) for v in history.history["val_loss"]]
    return FitResult(
        model=model,
        loss=[float(v) for v in history.history["loss"]],
        val_loss=val_loss,
        best_epoch=int(np.argmin(val_loss)) + 1,
    )


def predict(model: Any, sequences: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return the Keras model's ``(B, 3)`` outputs in large batches."""
    result: npt.NDArray[np.float32] = np.asarray(
        model.predict(sequences, batch_size=4096, verbose=0), dtype=np.float32
    )
    return result


def to_litert(model: Any, config: NetworkConfig) -> bytes:
    """Return a LiteRT flatbuffer of ``model`` with a dynamic batch and builtin ops only.

    The recurrent layer is rebuilt with ``unroll=True`` and the weights copied
    over: the converter lowers a symbolic loop to non-builtin ops.
    """
    import tensorflow as tf  # noqa: PLC0415

    _, lookback, n_features = model.input_shape
    unrolled = build_network(lookback, n_features, config, unroll=True)
    unrolled.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory(prefix="cbm-export-") as folder:
        unrolled.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer: bytes = converter.convert()
    return flatbuffer


def save_keras(model: Any, config: NetworkConfig, path: Path) -> None:
    """Write the architecture and weights to a ``.keras`` file, without optimizer state.

    A fresh, uncompiled copy is saved: the Adam moments would triple the file
    and nobody resumes this training.
    """
    _, lookback, n_features = model.input_shape
    clean = build_network(lookback, n_features, config, unroll=False)
    clean.set_weights(model.get_weights())
    clean.save(path)
