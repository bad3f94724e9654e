"""A recorded repair or replacement closes the open alert episode (real broker, DB, receiver)."""

from __future__ import annotations

from datetime import timedelta

from tests.alerter.test_it_alerter import FAST, AlerterThread, Feed, rows, settled, texts
from tests.support.mqtt import eventually
from tests.support.receiver import PAGERDUTY_PATH


def test_replacement_closes_the_episode_and_the_old_bearing_is_ignored(
    make_settings, broker, db, receiver
) -> None:
    settings = make_settings(
        alerting={**FAST, "pagerduty_url": receiver.pagerduty_url},
        secrets={"slack_webhook_url": receiver.webhook_url, "pagerduty_routing_key": "R0UTING"},
    )
    feed = Feed(broker, settings)
    alerter = AlerterThread(settings, broker)
    try:
        feed.ruls("pump-r", 45, 45, 3, 3)  # minutes 1-4: WARNING, then EMERGENCY
        eventually(lambda: len(texts(receiver)) == 2, message="WARNING and EMERGENCY")
        replaced_at = feed.start + timedelta(minutes=6, seconds=30)
        db.execute(
            "INSERT INTO maintenance_event (asset_id, time, kind, note, recorded_by) "
            "VALUES ('pump-r', %s, 'replacement', 'bearing swapped', 'test')",
            (replaced_at,),
        )
        closed = eventually(
            lambda: len(texts(receiver)) == 3 and texts(receiver)[2], message="closed"
        )
        assert closed.startswith(":white_check_mark: RESOLVED pump-r")
        assert "Closed (was EMERGENCY): a repair or replacement was recorded" in closed
        events = eventually(
            lambda: (
                len(receiver.delivered(PAGERDUTY_PATH)) == 2
                and [r.json() for r in receiver.delivered(PAGERDUTY_PATH)]
            ),
            message="incident triggered and resolved",
        )
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [
            ("trigger", "cbm-pump-r-rul-1"),
            ("resolve", "cbm-pump-r-rul-1"),
        ]

        # Minutes 5-6 are the old bearing's readings, arriving late: ignored.
        # Minutes 7-8 are the new bearing's, healthy: nothing to say.
        feed.ruls("pump-r", 3, 3, 80, 80)
        minute_8 = (feed.start + timedelta(minutes=8)).isoformat()
        eventually(
            lambda: (
                db.execute(
                    "SELECT state -> 'last_prediction' ->> 'time' FROM alert_state"
                    " WHERE asset_id = 'pump-r'"
                ).fetchone()[0]
                == minute_8
            ),
            message="the new bearing's readings taken in",
        )
        settled(db)
        assert len(texts(receiver)) == 3
        # The new bearing's own trouble opens a new episode.
        feed.ruls("pump-r", 45, 45)
        raised = eventually(lambda: len(texts(receiver)) == 4 and texts(receiver)[3], message="new")
        assert raised.startswith(":warning: WARNING pump-r")
        settled(db)
        assert rows(db, "kind, level, episode, via", "receiver = 'mqtt'", mqtt=True) == [
            ("raise", "WARNING", 1, "mqtt"),
            ("escalate", "EMERGENCY", 1, "mqtt"),
            ("renewed", "OK", 1, "mqtt"),
            ("raise", "WARNING", 2, "mqtt"),
        ]
    finally:
        alerter.stop()
        feed.close()
