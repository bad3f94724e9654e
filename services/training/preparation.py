"""A training run's data: its config, the feature table it reads, the split and the sequences.

``prepare_data`` splits by asset and fits the scaler on the training assets
only; ``describe_data`` is what the artifact's meta.json says about the data.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from cbm.errors import ModelError
from cbm.settings import FeaturesSettings
from services.inference.model import FeatureSpec
from services.training import defaults, network
from services.training.dataset import (
    FeatureTable,
    FleetConfig,
    Split,
    fleet_file_table,
    simulate_table,
    split_assets,
)
from services.training.history import Connect, HistoryConfig, database_table
from services.training.sequences import DEFAULT_FEATURES, Scaler, SplitData, prepare

_SPLITS: Final = ("train", "validation", "test")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything that determines a trained model."""

    fleet: FleetConfig = field(default_factory=FleetConfig)
    fleet_file: Path | None = None
    history: HistoryConfig | None = None  # set: the database's lives, not a simulation
    features: tuple[FeatureSpec, ...] = DEFAULT_FEATURES
    lookback: int = defaults.LOOKBACK
    cap_hours: float = defaults.CAP_HOURS
    coverage: float = defaults.COVERAGE
    split_seed: int = defaults.SPLIT_SEED
    network: network.NetworkConfig = field(default_factory=network.NetworkConfig)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Prepared:
    """The data of one training run, split and ready for the network."""

    table: FeatureTable
    split: Split
    train: SplitData
    validation: SplitData
    test: SplitData
    scaler: Scaler


def load_table(
    config: TrainConfig,
    features: FeaturesSettings,
    *,
    out: TextIO | None = None,
    connect: Connect | None = None,
) -> FeatureTable:
    """Return the feature table the config describes: the database, a fleet file or a simulation.

    ``connect`` opens the database; only a config with ``history`` uses it.
    """
    started = time.perf_counter()
    if config.history is not None:
        if connect is None:
            raise ModelError("training from the database needs a connection")
        table = database_table(
            config.history,
            connect,
            cap_hours=config.cap_hours,
            fleet=config.fleet,
            features=features,
        )
    elif config.fleet_file is not None:
        table = fleet_file_table(config.fleet_file, settings=features)
    else:
        table = simulate_table(config.fleet, settings=features)
    if out is not None:
        lives = table.meta.get("lives")
        censored = (
            f"; {lives['censored']} censored lives ({lives['censored_rows']} windows) "
            f"{'partly kept' if config.history and config.history.include_censored else 'left out'}"
            if lives
            else ""
        )
        out.write(
            f"data: {len(table)} windows of {len(table.assets())} units "
            f"({int(table.running.sum())} running) in {time.perf_counter() - started:.1f} s"
            f"{censored}\n"
        )
    return table


def prepare_data(table: FeatureTable, config: TrainConfig, split: Split | None = None) -> Prepared:
    """Split ``table`` by asset, build every split's sequences and fit the scaler on train only."""
    chosen = split if split is not None else split_assets(table, seed=config.split_seed)
    parts = [
        prepare(
            table,
            ids,
            features=config.features,
            lookback=config.lookback,
            cap_hours=config.cap_hours,
        )
        for ids in (chosen.train, chosen.validation, chosen.test)
    ]
    empty = [name for name, part in zip(_SPLITS, parts, strict=True) if not len(part)]
    if empty:
        raise ModelError(
            f"no running windows in the {' and '.join(empty)} split "
            f"({len(table.machines())} machines): record more failures, add simulated assets "
            "or simulate a larger fleet"
        )
    return Prepared(
        table=table,
        split=chosen,
        train=parts[0],
        validation=parts[1],
        test=parts[2],
        scaler=Scaler.fit(parts[0]),
    )


def shuffle_target(data: SplitData, seed: int) -> SplitData:
    """Return ``data`` with its targets permuted across windows: what a worse model learns from."""
    order = np.random.default_rng(seed).permutation(len(data))
    return dataclasses.replace(data, target=data.target[order], true_rul=data.true_rul[order])


def describe_data(prepared: Prepared) -> dict[str, Any]:
    """Return the data section of meta.json: source, split and sizes."""
    table, split = prepared.table, prepared.split
    return {
        **table.meta,
        "split": {
            "train": list(split.train),
            "validation": list(split.validation),
            "test": list(split.test),
        },
        "windows": {
            "total": len(table),
            "running": int(table.running.sum()),
            "train": len(prepared.train),
            "validation": len(prepared.validation),
            "test": len(prepared.test),
        },
    }
