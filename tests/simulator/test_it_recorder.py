"""The live simulator writes the failures it causes to maintenance_event (real broker and DB)."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.broker.local import free_port
from services.prognostics.events import EventKind, MaintenanceEvent
from services.simulator import cli
from services.simulator.fleet import make_fleet
from services.simulator.recorder import FailureRecorder, failure_event
from services.simulator.run import publish_fleet
from tests.support.mqtt import eventually

SPEEDUP = 3600 * 200  # 200 operating hours per second: lives of ~60 h end in a blink


def failure_rows(db) -> list[tuple]:
    return db.execute(
        "SELECT asset_id, time, kind, note, recorded_by FROM maintenance_event ORDER BY asset_id"
    ).fetchall()


def last_sent(sent: list[tuple[str, datetime]]) -> dict[str, datetime]:
    last: dict[str, datetime] = {}
    for asset, time in sent:
        last[asset] = max(time, last.get(asset, time))
    return last


def test_each_failure_is_recorded_while_the_fleet_still_runs(make_settings, db) -> None:
    specs = make_fleet(4, seed=11, life_mean_hours=60.0, healthy_share=0.25)
    modes = {s.asset_id: s.fault_mode for s in specs}
    assert "none" in modes.values()
    settings = make_settings()
    seen_failed: list[str] = []
    stored_mid_run: list[list[tuple]] = []

    def on_window(window, _time) -> None:
        # The first window after the first failure: its row must arrive while we still publish.
        if seen_failed and not stored_mid_run:
            stored_mid_run.append(
                eventually(lambda: failure_rows(db), timeout=15, message="first failure row")
            )
        if window.failed:
            seen_failed.append(window.asset_id)

    tally = publish_fleet(
        settings,
        specs,
        seed=11,
        speedup=SPEEDUP,
        progress=None,
        on_window=on_window,
        record_failures=True,
    )

    assert tally.failed_assets == {a for a, m in modes.items() if m != "none"}
    assert len(tally.failed_assets) >= 2
    (first,) = stored_mid_run[0]
    assert first[0] == seen_failed[0]
    ends = last_sent(tally.sent)
    rows = failure_rows(db)
    assert rows == [
        (asset, ends[asset], "failure", f"simulated {modes[asset]} failure", "simulator")
        for asset in sorted(tally.failed_assets)
    ]
    assert (tally.failures_recorded, tally.failures_unrecorded) == (len(rows), 0)


def test_a_missing_database_costs_the_rows_not_the_run(make_settings, caplog) -> None:
    specs = make_fleet(2, seed=3, life_mean_hours=40.0, healthy_share=0.0)
    settings = make_settings(database={"url": f"postgresql://postgres@127.0.0.1:{free_port()}/x"})
    with caplog.at_level(logging.WARNING, logger="services.simulator.recorder"):
        tally = publish_fleet(
            settings, specs, seed=3, speedup=SPEEDUP, progress=None, record_failures=True
        )
    assert tally.failed_assets == {s.asset_id for s in specs}
    assert tally.windows == len(tally.sent) > 40
    assert (tally.failures_recorded, tally.failures_unrecorded) == (0, 2)
    assert "not recorded yet" in caplog.text
    assert "not recorded in the database" in caplog.text


def test_a_refused_failure_is_written_with_the_next_one_and_repeats_are_no_ops(db_url, db) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    attempts: list[str] = []

    def connect() -> psycopg.Connection:
        # The first connection fails for real (nothing listens); later ones reach the database.
        url = dead if not attempts else db_url
        attempts.append(url)
        return psycopg.connect(url, autocommit=True, connect_timeout=5)

    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    first = failure_event("pump-1", t0, "outer")
    recorder = FailureRecorder(connect=connect)
    recorder.record(first)
    eventually(lambda: attempts, message="first write attempt")
    assert failure_rows(db) == []
    recorder.record(failure_event("pump-2", t0 + timedelta(hours=1), "inner"))
    eventually(lambda: len(failure_rows(db)) == 2, message="both failures written")
    recorder.record(first)  # a retried run records the same failure again
    result = recorder.close()
    assert (result.written, result.unwritten) == (2, ())
    assert [r[:3] for r in failure_rows(db)] == [
        ("pump-1", t0, "failure"),
        ("pump-2", t0 + timedelta(hours=1), "failure"),
    ]


def test_failure_event_names_the_fault_mode() -> None:
    event = failure_event("fan-3", datetime(2026, 1, 1, tzinfo=UTC), "ball")
    assert event == MaintenanceEvent(
        asset_id="fan-3",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        kind=EventKind.FAILURE,
        note="simulated ball failure",
        recorded_by="simulator",
    )
    with pytest.raises(ValueError, match="UTC offset"):
        failure_event("fan-3", datetime(2026, 1, 1), "ball")  # noqa: DTZ001


def test_simulate_command_records_failures_when_asked(make_settings, db) -> None:
    parser = argparse.ArgumentParser(prog="cbm")
    cli.register(parser.add_subparsers())
    argv = ["simulate", "--assets", "2", "--seed", "4", "--healthy-share", "0"]
    argv += ["--life-mean-hours", "40", "--speedup", str(SPEEDUP)]
    args = parser.parse_args(argv)
    assert args.record_failures is False
    assert args.handler(make_settings(), args) == 0
    assert failure_rows(db) == []
    args = parser.parse_args([*argv, "--record-failures"])
    assert args.handler(make_settings(), args) == 0
    rows = failure_rows(db)
    assert [r[0] for r in rows] == ["asset-001", "asset-002"]
    assert {r[4] for r in rows} == {"simulator"}
