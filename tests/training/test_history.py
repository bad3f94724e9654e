"""Labelling the database's lives, without a database: the pure part of the history export."""

from __future__ import annotations

import numpy as np

from services.prognostics.events import EventKind
from services.training.dataset import FeatureTable, concat_tables, split_assets
from services.training.history import label_lives

S = 1_000_000  # microseconds per second
FAIL, REPAIR = EventKind.FAILURE, EventKind.REPAIR


def test_rows_up_to_a_failure_count_down_to_it_and_later_rows_start_a_new_life() -> None:
    ids = np.array(["a"] * 6 + ["b"] * 3)
    times = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2], dtype=np.int64) * S
    events = {"a": [(2 * S, FAIL), (4 * S, REPAIR)], "b": [(10 * S, FAIL)], "c": [(1, FAIL)]}
    labels = label_lives(ids, times, events, hours_per_second=1.0)
    assert labels.unit_id.tolist() == ["a#1"] * 3 + ["a#2"] * 2 + ["a#3"] + ["b#1"] * 3
    np.testing.assert_array_equal(labels.rul_hours[:3], [2.0, 1.0, 0.0])
    np.testing.assert_array_equal(labels.rul_hours[6:], [10.0, 9.0, 8.0])
    assert labels.keep.tolist() == [True] * 3 + [False] * 3 + [True] * 3
    assert (labels.failed_lives, labels.censored_lives, labels.censored_rows) == (2, 2, 3)


def test_hours_per_second_scales_the_rul_and_censored_rows_need_a_full_cap() -> None:
    ids = np.array(["a"] * 5)
    times = np.arange(5, dtype=np.int64) * 60 * S  # a row a minute
    plant = label_lives(ids, times, {"a": [(4 * 60 * S, FAIL)]}, hours_per_second=1 / 3600)
    np.testing.assert_allclose(plant.rul_hours, [4 / 60, 3 / 60, 2 / 60, 1 / 60, 0.0])
    # Censored (no failure yet), seen until minute 4: with a cap of 2 h at 1 h per minute
    # only the rows at least 2 minutes before the last one are known to be at the cap.
    censored = label_lives(
        ids, times, {}, hours_per_second=1 / 60, include_censored=True, cap_hours=2.0
    )
    assert censored.keep.tolist() == [True, True, True, False, False]
    assert np.isinf(censored.rul_hours).all()


def test_lives_of_one_machine_stay_in_one_split() -> None:
    def table(units: list[str], machines: list[str] | None, rul: float) -> FeatureTable:
        n = len(units)
        return FeatureTable(
            asset_id=np.array(units),
            time_us=np.arange(n, dtype=np.int64),
            values=np.zeros((n, 3)),
            running=np.ones(n, dtype=bool),
            rul_hours=np.full(n, rul),
            fault_mode=np.array(["unknown"] * n),
            meta={},
            machine_id=None if machines is None else np.array(machines),
        )

    lives = [f"m{i}#{k}" for i in range(10) for k in (1, 2)]
    recorded = table(lives, [life.split("#")[0] for life in lives], 5.0)
    simulated = table([f"sim-{i}" for i in range(5)], None, np.inf)
    both = concat_tables([recorded, simulated], meta={"source": "x"})
    split = split_assets(both, seed=3)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert set().union(*parts) == set(both.assets())
    for part in parts:
        machines = {unit.split("#")[0] for unit in part}
        others = set().union(*(p for p in parts if p is not part))
        assert not machines & {unit.split("#")[0] for unit in others}
        assert any("#" in u for u in part) and any(u.startswith("sim") for u in part)
    assert both.machines()["m3"] == ["m3#1", "m3#2"]
