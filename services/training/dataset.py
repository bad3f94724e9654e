"""Turn simulated run-to-failure fleets into feature tables with ground-truth RUL.

Every feature row is computed by :func:`services.features.core.step`, the very
function the live features stage runs, with the asset register the live
pipeline would be configured with (:func:`fleet_assets`). Training and serving
therefore see the same numbers for the same windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cbm.messages import to_micros
from cbm.settings import AssetsSettings, FeaturesSettings
from services.features.core import FeaturesState, step
from services.features.extract import FEATURE_NAMES
from services.simulator.dataset import read_fleet
from services.simulator.edge import asset_register, ingested
from services.simulator.physics import AssetSpec, SimWindow, make_fleet, simulate_fleet
from services.training import defaults

# The simulated record starts here; only the time of day matters (daily swing).
DEFAULT_START: Final = datetime(2025, 1, 6, tzinfo=UTC)
_BATCH: Final = 512


def fleet_assets(specs: Sequence[AssetSpec]) -> AssetsSettings:
    """Return the asset register that describes ``specs`` to the live pipeline."""
    return AssetsSettings.model_validate({"items": asset_register(specs)})


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FeatureTable:
    """Hold feature rows of a fleet with their ground truth, one row per window.

    Rows are in event-time order across the fleet; ``values`` has one column per
    :data:`FEATURE_NAMES` entry. ``rul_hours`` is ``inf`` for healthy controls
    (right-censored). ``running`` is the features stage's own verdict (RMS over
    ``off_rms_g``), not the simulator's. Compared by identity: it holds arrays.

    ``asset_id`` names the unit sequences are built from: a simulated asset,
    or one life of a machine from the database (``services.training.history``).
    ``machine_id``, when given, names the machine each row belongs to; the
    split keeps all lives of a machine together. Without it each unit is its
    own machine.

    ``severity``, when given, is the simulator's true defect severity in
    [0, 1] of each window: ground truth no feature sees directly, kept to
    measure how well any model could do (``services.training.floor``).
    """

    asset_id: npt.NDArray[np.str_]
    time_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    running: npt.NDArray[np.bool_]
    rul_hours: npt.NDArray[np.float64]
    fault_mode: npt.NDArray[np.str_]
    meta: dict[str, Any]
    machine_id: npt.NDArray[np.str_] | None = None
    severity: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.time_us.size)

    def assets(self) -> list[str]:
        """Return the asset ids in order of first appearance."""
        ids, first = np.unique(self.asset_id, return_index=True)
        return [str(ids[i]) for i in np.argsort(first)]

    def machines(self) -> dict[str, list[str]]:
        """Return each machine's units (in order of first appearance), machines likewise."""
        units = self.assets()
        if self.machine_id is None:
            return {unit: [unit] for unit in units}
        _, first = np.unique(self.asset_id, return_index=True)
        machine_of = dict(
            zip(self.asset_id[first].tolist(), self.machine_id[first].tolist(), strict=True)
        )
        groups: dict[str, list[str]] = {}
        for unit in units:
            groups.setdefault(str(machine_of[unit]), []).append(unit)
        return groups

    def fails(self, asset_id: str) -> bool:
        """Return whether the asset runs to failure (a finite RUL) in this table."""
        rows = self.asset_id == asset_id
        return bool(np.isfinite(self.rul_hours[rows]).all())

    def rows(self, asset_id: str, *, running_only: bool = True) -> npt.NDArray[np.intp]:
        """Return the row indices of one asset in time order (by default only running rows)."""
        mask = self.asset_id == asset_id
        if running_only:
            mask &= self.running
        index = np.flatnonzero(mask)
        return index[np.argsort(self.time_us[index], kind="stable")]


def featurize(
    windows: Iterable[SimWindow],
    specs: Sequence[AssetSpec],
    *,
    settings: FeaturesSettings | None = None,
    meta: dict[str, Any] | None = None,
) -> FeatureTable:
    """Run simulated windows, in the order given, through the live features core."""
    assets = fleet_assets(specs)
    features = settings if settings is not None else FeaturesSettings()
    state = FeaturesState()
    ids: list[str] = []
    times: list[int] = []
    blocks: list[npt.NDArray[np.float64]] = []
    running: list[npt.NDArray[np.bool_]] = []
    rul: list[float] = []
    severity: list[float] = []
    modes: list[str] = []
    for chunk in _chunks(windows, _BATCH):
        state, batch = step(state, [ingested(w) for w in chunk], assets=assets, settings=features)
        blocks.append(batch.values)
        running.append(batch.running)
        for w in chunk:
            ids.append(w.asset_id)
            times.append(to_micros(w.time))
            rul.append(w.rul_hours)
            severity.append(w.severity)
            modes.append(w.fault_mode)
    width = len(FEATURE_NAMES)
    return FeatureTable(
        asset_id=np.array(ids, dtype="<U64"),
        time_us=np.array(times, dtype=np.int64),
        values=np.concatenate(blocks) if blocks else np.empty((0, width)),
        running=np.concatenate(running) if running else np.empty(0, dtype=bool),
        rul_hours=np.array(rul, dtype=np.float64),
        fault_mode=np.array(modes, dtype="<U8"),
        meta=dict(meta or {}),
        severity=np.array(severity, dtype=np.float64),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """Describe a simulated fleet: everything that reproduces it."""

    n_assets: int = defaults.FLEET_ASSETS
    seed: int = defaults.FLEET_SEED
    life_mean_hours: float = defaults.LIFE_MEAN_HOURS
    healthy_share: float = defaults.HEALTHY_SHARE
    hours_per_window: float = defaults.HOURS_PER_WINDOW
    prefix: str = "sim"

    def describe(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data."""
        return {
            "source": "simulated",
            "n_assets": self.n_assets,
            "seed": self.seed,
            "life_mean_hours": self.life_mean_hours,
            "healthy_share": self.healthy_share,
            "hours_per_window": self.hours_per_window,
            "start": DEFAULT_START.isoformat(),
        }


def simulate_table(
    config: FleetConfig, *, settings: FeaturesSettings | None = None
) -> FeatureTable:
    """Simulate a fleet from ``config`` and compute its feature table."""
    specs = make_fleet(
        config.n_assets,
        seed=config.seed,
        life_mean_hours=config.life_mean_hours,
        healthy_share=config.healthy_share,
        prefix=config.prefix,
    )
    windows = simulate_fleet(
        specs, seed=config.seed, start=DEFAULT_START, hours_per_window=config.hours_per_window
    )
    return featurize(windows, specs, settings=settings, meta=config.describe())


def fleet_file_table(path: Path, *, settings: FeaturesSettings | None = None) -> FeatureTable:
    """Read a fleet file written by ``write_fleet`` and compute its feature table."""
    data = read_fleet(path)
    order = np.lexsort((data.seq, data.time))  # event-time order, as the live stage sees it
    meta = {"source": "file", "path": str(path), **data.meta}
    return featurize((data.window(int(i)) for i in order), data.specs, settings=settings, meta=meta)


@dataclass(frozen=True, slots=True)
class Split:
    """Asset ids of the three disjoint splits."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def split_assets(
    table: FeatureTable, *, seed: int, validation_share: float = 0.2, test_share: float = 0.2
) -> Split:
    """Split the machines three ways so no machine is in two splits; return their units.

    Failing machines (one failing unit is enough) and healthy ones are
    shuffled and shared out separately, so each split holds both kinds
    whenever there are enough of them. A table without ``machine_id`` splits
    its assets, each on its own.
    """
    if not (0 < validation_share < 1 and 0 < test_share < 1 and validation_share + test_share < 1):
        raise ValueError("validation_share and test_share must be in (0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    groups = table.machines()
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for kind in (True, False):
        ids = sorted(m for m, units in groups.items() if any(map(table.fails, units)) is kind)
        ids = [ids[i] for i in rng.permutation(len(ids))]
        n_val = math.floor(validation_share * len(ids) + 0.5)
        n_test = math.floor(test_share * len(ids) + 0.5)
        for part, chosen in zip(
            parts, (ids[n_val + n_test :], ids[:n_val], ids[n_val : n_val + n_test]), strict=True
        ):
            part.extend(unit for machine in chosen for unit in groups[machine])
    return Split(*(tuple(sorted(part)) for part in parts))


def concat_tables(tables: Sequence[FeatureTable], *, meta: dict[str, Any]) -> FeatureTable:
    """Return the rows of ``tables`` in one table; no unit or machine id may be in two of them."""
    machines = [t.machine_id if t.machine_id is not None else t.asset_id for t in tables]
    for kind, columns in (("unit", [t.asset_id for t in tables]), ("machine", machines)):
        seen: set[str] = set()
        for column in columns:
            ids = set(np.unique(column).tolist())
            if shared := ids & seen:
                raise ValueError(f"the tables share {kind} ids, e.g. {sorted(shared)[:3]}")
            seen |= ids
    severities = [t.severity for t in tables]
    return FeatureTable(
        asset_id=np.concatenate([t.asset_id.astype(object) for t in tables]).astype(str),
        time_us=np.concatenate([t.time_us for t in tables]),
        values=np.concatenate([t.values for t in tables]),
        running=np.concatenate([t.running for t in tables]),
        rul_hours=np.concatenate([t.rul_hours for t in tables]),
        fault_mode=np.concatenate([t.fault_mode.astype(object) for t in tables]).astype(str),
        meta=meta,
        machine_id=np.concatenate([m.astype(object) for m in machines]).astype(str),
        # Known for every row or for none: recorded history has no ground truth.
        severity=(
            None
            if any(s is None for s in severities)
            else np.concatenate([s for s in severities if s is not None])
        ),
    )


def capped_rul(rul_hours: npt.NDArray[np.float64], cap_hours: float) -> npt.NDArray[np.float64]:
    """Return the piecewise-linear target: true RUL, held at ``cap_hours`` above it."""
    return np.minimum(rul_hours, cap_hours)


def _chunks(items: Iterable[SimWindow], size: int) -> Iterator[list[SimWindow]]:
    """Yield lists of up to ``size`` consecutive items."""
    chunk: list[SimWindow] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
