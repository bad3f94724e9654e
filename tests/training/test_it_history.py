"""Training data from the real database: feature rows labelled by recorded failures.

The feature rows are the live features core's output on a simulated fleet
(``simulate_table``), stored with the features stage's own writer; the
failures go in through the prognostics' writer. The tiny case is checked by
hand; the training smoke writes an artifact from the database alone.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cbm.messages import from_micros
from cbm.settings import FeaturesSettings
from services.features.store import write_vectors
from services.prognostics.events import EventKind, MaintenanceEvent
from services.prognostics.store import add_event
from services.training.dataset import FeatureTable, FleetConfig, simulate_table
from services.training.history import HistoryConfig, history_table
from services.training.network import NetworkConfig
from services.training.preparation import TrainConfig
from services.training.train import train
from tests.support.vectors import asset_vectors

T0 = datetime(2026, 2, 2, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def simulated() -> FeatureTable:
    return simulate_table(FleetConfig(n_assets=2, seed=3, life_mean_hours=40.0, healthy_share=0))


def store_rows(db, asset: str, values: np.ndarray, times: list[datetime], **kw) -> None:
    vectors = asset_vectors(asset, values, times, **kw)
    with db.transaction():  # the staging table empties on commit
        assert write_vectors(db, vectors) == len(times)


def event(asset: str, time: datetime, kind: EventKind) -> MaintenanceEvent:
    return MaintenanceEvent(asset_id=asset, time=time, kind=kind, recorded_by="pytest")


def store_table(db, table: FeatureTable, *, fail: bool) -> None:
    """Store every row of ``table`` and, with ``fail``, a failure at each failing asset's end."""
    for asset in table.assets():
        rows = table.rows(asset, running_only=False)
        times = [from_micros(int(t)) for t in table.time_us[rows]]
        store_rows(db, asset, table.values[rows], times, running=table.running[rows].tolist())
        if fail and table.fails(asset):
            assert add_event(db, event(asset, times[-1], EventKind.FAILURE))


def test_lives_are_cut_by_events_and_labelled_by_hand(db, simulated) -> None:
    pump = simulated.values[simulated.rows("sim-001", running_only=False)[:20]]
    fan = simulated.values[simulated.rows("sim-002", running_only=False)[:10]]
    store_rows(db, "pump-1", pump, [T0 + k * H for k in range(20)])
    store_rows(db, "fan-2", fan, [T0 + k * H for k in range(10)])
    # Another feature set's row is not this model's input and is not read.
    store_rows(db, "pump-1", pump[:1], [T0 + 30 * H], feature_set="fs0")
    for asset, hours, kind in (
        ("pump-1", 3, EventKind.INSPECTION),  # a look, not a new life
        ("pump-1", 7, EventKind.FAILURE),
        ("pump-1", 9, EventKind.REPLACEMENT),
        ("pump-1", 15, EventKind.FAILURE),
        ("motor-3", 4, EventKind.FAILURE),  # no feature rows at all
    ):
        assert add_event(db, event(asset, T0 + hours * H, kind))

    table = history_table(db, HistoryConfig(), cap_hours=60.0)

    # Life 1: hours 0-7, failed at 7. Life 2: hours 8-9 (after the failure, up to the
    # replacement): censored. Life 3: hours 10-15, failed at 15. Life 4: 16-19, censored.
    # fan-2 never failed: censored, left out.
    assert table.asset_id.tolist() == ["pump-1#1"] * 8 + ["pump-1#3"] * 6
    assert set(table.machine_id.tolist()) == {"pump-1"}
    hours = (table.time_us - table.time_us[0]) / 3.6e9
    np.testing.assert_array_equal(hours, [*range(8), *range(10, 16)])
    np.testing.assert_allclose(table.rul_hours, [7, 6, 5, 4, 3, 2, 1, 0, 5, 4, 3, 2, 1, 0])
    assert table.rul_hours[hours.tolist().index(2.0)] == 5.0  # 5 h before the first failure
    # Stored as real (float32): the values read back are the written ones to that precision.
    np.testing.assert_array_equal(
        table.values.astype(np.float32), np.r_[pump[:8], pump[10:16]].astype(np.float32)
    )
    assert table.running.all() and set(table.fault_mode.tolist()) == {"unknown"}
    meta = table.meta
    assert meta["source"] == "database"
    assert meta["database"].endswith("/" + db.info.dbname)
    assert (meta["rows_read"], meta["machines"], meta["feature_set"]) == (30, 2, "fs1")
    assert (meta["failures_recorded"], meta["failures_without_rows"]) == (3, 1)
    assert meta["first_time"] == T0.isoformat()
    lives = meta["lives"]
    assert (lives["failed"], lives["censored"], lives["censored_rows"]) == (2, 3, 16)
    assert "left out of training" in lives["censored_policy"]

    # Censored rows known to sit a full cap (3 h here) from the end of their life are kept.
    kept = history_table(db, HistoryConfig(include_censored=True), cap_hours=3.0)
    censored = {
        unit: (kept.time_us[kept.asset_id == unit] - kept.time_us[0]) / 3.6e9
        for unit in ("pump-1#2", "pump-1#4", "fan-2#1")
    }
    assert censored["pump-1#2"].size == 0  # 8-9 h, replaced at 9 h: never 3 h ahead
    assert censored["pump-1#4"].tolist() == [16.0]  # seen until 19 h
    assert censored["fan-2#1"].tolist() == [float(h) for h in range(7)]  # seen until 9 h
    assert np.isinf(kept.rul_hours[np.char.startswith(kept.asset_id, "fan-2")]).all()
    assert "kept only where" in kept.meta["lives"]["censored_policy"]


def test_time_compressed_history_is_read_at_the_simulator_speedup(db, simulated) -> None:
    values = simulated.values[simulated.rows("sim-001", running_only=False)[:6]]
    second = timedelta(seconds=1)
    store_rows(db, "asset-001", values, [T0 + k * second for k in range(6)])
    assert add_event(db, event("asset-001", T0 + 5 * second, EventKind.FAILURE))
    table = history_table(db, HistoryConfig(hours_per_second=3600 / 3600), cap_hours=60.0)
    np.testing.assert_allclose(table.rul_hours, [5, 4, 3, 2, 1, 0])


TINY = TrainConfig(
    fleet=FleetConfig(n_assets=4, seed=6, life_mean_hours=60.0),
    history=HistoryConfig(),
    cap_hours=30.0,
    lookback=5,
    network=NetworkConfig(max_epochs=2, units=8, dense_units=4),
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_a_model_trained_from_the_database_says_so(
    db, db_url, make_settings, tmp_path, cbm
) -> None:
    import psycopg

    fleet = simulate_table(FleetConfig(n_assets=10, seed=5, life_mean_hours=60.0, prefix="pump"))
    store_table(db, fleet, fail=True)
    failing = [a for a in fleet.assets() if fleet.fails(a)]

    out = io.StringIO()
    result = train(
        TINY,
        models_dir=tmp_path,
        features=FeaturesSettings(),
        verbose=0,
        out=out,
        connect=lambda: psycopg.connect(db_url, autocommit=True),
    )
    meta = json.loads((tmp_path / result.version / "meta.json").read_text())
    data = meta["data"]
    assert data["source"] == "database" and data["database"].endswith(db.info.dbname)
    assert data["lives"]["failed"] == len(failing)
    assert data["lives"]["censored"] == len(fleet.assets()) - len(failing)
    split = data["split"]
    units = split["train"] + split["validation"] + split["test"]
    assert sorted(units) == sorted(f"{a}#1" for a in failing)  # censored healthy ones left out
    assert split["validation"] and split["test"]
    assert math.isfinite(meta["metrics"]["test"]["rmse"])
    assert "censored lives" in out.getvalue()

    # The command, with simulated assets added: both sources in the description.
    argv = [
        *("train", "--from-db", "--with-simulated", "4", "--seed", "6"),
        *("--life-mean-hours", "60", "--cap-hours", "30", "--lookback", "5"),
        *("--epochs", "1", "--units", "8", "--models-dir", str(tmp_path / "cli")),
        *("--progress", "0"),
    ]
    assert cbm(make_settings(), *argv) == 0
    (folder,) = [p for p in (tmp_path / "cli").iterdir() if p.name.startswith("m-")]
    data = json.loads((folder / "meta.json").read_text())["data"]
    assert data["source"] == "database+simulated"
    assert data["simulated"]["n_assets"] == 4 and data["simulated"]["seed"] == 6
    split = data["split"]
    units = split["train"] + split["validation"] + split["test"]
    assert sum(u.startswith("sim-") for u in units) == 4
    assert sum(u.startswith("pump-") for u in units) == len(failing)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_retrain_from_the_database_judges_on_lives_the_live_model_never_saw(
    db, make_settings, tmp_path, cbm
) -> None:
    fleet = simulate_table(FleetConfig(n_assets=10, seed=5, life_mean_hours=60.0, prefix="pump"))
    store_table(db, fleet, fail=True)
    settings = make_settings()
    common = ["--epochs", "1", "--by", "pytest", "--progress", "0", "--models-dir", str(tmp_path)]

    assert cbm(settings, "retrain", "--from-db", *common) == 0
    first = (tmp_path / "CURRENT").read_text().strip()  # no live model yet: promoted
    seen = json.loads((tmp_path / first / "meta.json").read_text())["data"]["split"]

    assert cbm(settings, "retrain", "--from-db", "--with-simulated", "6", *common) == 0
    rows = db.execute(
        "SELECT candidate_version, decision, report FROM model_promotion ORDER BY id"
    ).fetchall()
    assert len(rows) == 2 and rows[0][:2] == (first, "promoted")
    report = rows[1][2]
    assert report["held_out"]["data"]["source"] == "database+simulated"
    held_out = report["held_out"]["assets"]
    candidate = report["candidate"]["version"]
    test = json.loads((tmp_path / candidate / "meta.json").read_text())["data"]["split"]["test"]
    seen_lives = set(seen["train"] + seen["validation"])
    assert set(test) & seen_lives, "the check below needs a test life the live model saw"
    assert held_out == [unit for unit in test if unit not in seen_lives]
