"""``cbm events`` and ``cbm backtest --from-db`` against the real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cbm.errors import CbmError
from services.prognostics.sources import recorded

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def rows(db) -> list[tuple]:
    return db.execute(
        "SELECT asset_id, time, kind, note, recorded_by FROM maintenance_event ORDER BY time, kind"
    ).fetchall()


def test_add_is_idempotent_and_keeps_kinds_apart(make_settings, db, cbm, capsys) -> None:
    settings = make_settings()
    at = "2026-03-01T10:00:00+01:00"
    assert (
        cbm(
            settings,
            "events",
            "add",
            "pump-1",
            "--kind",
            "failure",
            "--time",
            at,
            "--note",
            "outer race spall",
            "--by",
            "ana",
        )
        == 0
    )
    assert "recorded failure of pump-1 at 2026-03-01 09:00:00" in capsys.readouterr().out
    # The same event again (a retried command): nothing changes, the first note stays.
    assert (
        cbm(
            settings,
            "events",
            "add",
            "pump-1",
            "--kind",
            "failure",
            "--time",
            at,
            "--note",
            "typed again",
            "--by",
            "bo",
        )
        == 0
    )
    assert "already recorded" in capsys.readouterr().out
    # The replacement at the same minute is another event.
    assert (
        cbm(
            settings,
            "events",
            "add",
            "pump-1",
            "--kind",
            "replacement",
            "--time",
            at,
            "--by",
            "ana",
        )
        == 0
    )
    when = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert rows(db) == [
        ("pump-1", when, "failure", "outer race spall", "ana"),
        ("pump-1", when, "replacement", "", "ana"),
    ]
    recorded_at = db.execute("SELECT min(recorded_at) FROM maintenance_event").fetchone()[0]
    assert abs(recorded_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_add_defaults_to_now_and_refuses_bad_input(make_settings, db, cbm, capsys) -> None:
    settings = make_settings()
    assert cbm(settings, "events", "add", "fan-2", "--kind", "inspection") == 0
    (row,) = rows(db)
    assert row[2] == "inspection" and abs(row[1] - datetime.now(UTC)) < timedelta(minutes=1)
    assert row[4]  # the user name
    capsys.readouterr()
    assert (
        cbm(settings, "events", "add", "fan-2", "--kind", "repair", "--time", "2026-03-01T10:00:00")
        == 2
    )
    assert "no UTC offset" in capsys.readouterr().err
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert cbm(settings, "events", "add", "fan-2", "--kind", "repair", "--time", future) == 2
    assert "in the future" in capsys.readouterr().err
    with pytest.raises(CbmError, match="not allowed"):
        cbm(settings, "events", "add", "bad/asset", "--kind", "repair")
    with pytest.raises(SystemExit):
        cbm(settings, "events", "add", "fan-2", "--kind", "explosion")
    assert len(rows(db)) == 1


def test_the_table_refuses_unknown_kinds(db) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO maintenance_event (asset_id, time, kind) VALUES ('a', now(), 'explosion')"
        )


def test_list_filters_by_asset_and_kind(make_settings, cbm, capsys) -> None:
    settings = make_settings()
    for asset, kind, hour in (
        ("pump-1", "failure", 3),
        ("pump-1", "repair", 4),
        ("fan-2", "inspection", 1),
    ):
        at = (T0 + timedelta(hours=hour)).isoformat()
        assert cbm(settings, "events", "add", asset, "--kind", kind, "--time", at) == 0
    capsys.readouterr()
    assert cbm(settings, "events", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "ASSET", "KIND"]
    assert [line.split()[2:4] for line in lines[1:]] == [
        ["fan-2", "inspection"],
        ["pump-1", "failure"],
        ["pump-1", "repair"],
    ]
    assert cbm(settings, "events", "list", "pump-1", "--kind", "failure") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "failure" in lines[1]
    assert cbm(settings, "events", "list", "motor-9") == 0
    assert capsys.readouterr().out.strip() == "no maintenance events"


def insert_predictions(db, asset: str, ruls: list[float]) -> None:
    """One prediction a second from T0, as the live simulator at --speedup 3600 makes them."""
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction (asset_id, time, received_at, rul_hours, rul_low, rul_high,"
            " health_index, anomaly_score, running, model_version)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 0, true, 'm-test')",
            [
                (asset, t, t, rul, max(rul - 5, 0), rul + 5, min(rul / 60, 1))
                for i, rul in enumerate(ruls)
                for t in [T0 + timedelta(seconds=i)]
            ],
        )


def test_backtest_from_the_database(make_settings, db, cbm, capsys, tmp_path) -> None:
    settings = make_settings()
    # pump-1 fails 100 s (= 100 h at speedup 3600) after its first prediction, and the
    # model sees it coming: RUL = 100 - t. RUL < 50 at t=51 and 52: raised at 52 h.
    insert_predictions(db, "pump-1", [100.0 - i for i in range(100)])
    # fan-2 never fails; one dip at 20-21 s raises a false alarm (170 h observed after).
    fan = [60.0] * 200
    fan[20] = fan[21] = 30.0
    insert_predictions(db, "fan-2", fan)
    # motor-3 failed, but no prediction of it was ever stored: not scored.
    for asset, seconds in (("pump-1", 100), ("motor-3", 50)):
        at = (T0 + timedelta(seconds=seconds)).isoformat()
        assert cbm(settings, "events", "add", asset, "--kind", "failure", "--time", at) == 0
    capsys.readouterr()

    out = tmp_path / "report"
    assert (
        cbm(
            settings,
            "backtest",
            "--from-db",
            "--no-use-interval-bound",  # the figures are worked out on the point estimate
            "--speedup",
            "3600",
            "--thresholds",
            "20,50,80",
            "--out",
            str(out),
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "recorded predictions against failure events" in printed
    report = json.loads((out / "backtest.json").read_text())
    assert report["source"]["hours_per_second"] == 1.0
    totals = report["totals"]
    assert (totals["failures"], totals["detected"], totals["false_alarms"]) == (1, 1, 1)
    assert totals["lead_hours"] == [48.0]
    assets = {a["asset_id"]: a for a in report["assets"]}
    assert assets["motor-3"]["unobserved_failures"] == 1
    assert assets["pump-1"]["failures"][0]["lead_hours"]["CRITICAL"] == 18.0
    sweep = report["sweep"]
    assert [p["threshold_hours"] for p in sweep["points"]] == [20.0, 50.0, 80.0]
    # 20 h: pump-1 caught at 18 h; fan-2's dip to 30 stays above. Precision 1, recall 1.
    assert sweep["best_f1_threshold_hours"] == 20.0
    assert (out / "precision_recall.png").stat().st_size > 10_000

    # Without the speedup, event time is real time: 100 s is 0.03 h, and one hour of
    # horizon holds the whole run, so fan-2's alarm is pending instead of false.
    assert (
        cbm(
            settings,
            "backtest",
            "--from-db",
            "--no-use-interval-bound",  # the figures are worked out on the point estimate
            "--horizon-hours",
            "1",
            "--thresholds",
            "50",
            "--out",
            str(out),
        )
        == 0
    )
    totals = json.loads((out / "backtest.json").read_text())["totals"]
    assert (totals["detected"], totals["false_alarms"], totals["pending"]) == (1, 0, 1)


def test_backtest_from_an_empty_database_says_so(make_settings, cbm, capsys, tmp_path) -> None:
    assert cbm(make_settings(), "backtest", "--from-db", "--out", str(tmp_path)) == 1
    assert "no predictions" in capsys.readouterr().err


def test_a_recorded_backtest_can_keep_only_rows_written_since_a_time(db) -> None:
    """One demo run among several in the same database: older writes are left out."""
    insert_predictions(db, "old-run", [40.0, 30.0, 20.0])
    db.execute(
        "INSERT INTO maintenance_event (asset_id, time, kind) VALUES ('old-run', %s, 'failure')",
        (T0 + timedelta(seconds=3),),
    )
    db.execute("UPDATE prediction SET created_at = created_at - interval '1 hour'")
    db.execute("UPDATE maintenance_event SET recorded_at = recorded_at - interval '1 hour'")
    since = db.execute("SELECT now() - interval '1 minute'").fetchone()[0]
    insert_predictions(db, "new-run", [40.0, 30.0, 20.0, 10.0])
    db.execute(
        "INSERT INTO maintenance_event (asset_id, time, kind) VALUES ('new-run', %s, 'failure')",
        (T0 + timedelta(seconds=4),),
    )
    everything = recorded(db, hours_per_second=1.0)
    this_run = recorded(db, hours_per_second=1.0, written_since=since)
    assert everything is not None and this_run is not None
    assert {s.asset_id for s in everything.series} == {"old-run", "new-run"}
    assert [s.asset_id for s in this_run.series] == ["new-run"]
    assert this_run.facts["predictions"] == 4 and this_run.facts["failures"] == 1
