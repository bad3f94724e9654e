"""``cbm alerts``: list active alerts, show an asset's alert history, acknowledge.

An acknowledgement goes through the database, not around the alerter: the
command records the request on the asset's ``alert_state`` row and the running
alerter applies it to the state it holds (within about a second) and writes
back its answer, which the command waits for. The alerter stays the only
writer of the state itself, so it can never overwrite an ack it did not see.
A request made while no alerter runs is applied when one starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cbm.settings import Settings
from cbm.topics import validate_asset_id
from services.alerter.levels import Channel
from services.alerter.state import AssetAlertState
from services.argtypes import login_name

_RECENT = 20
_POLL_S = 0.2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``alerts`` command group to the ``cbm`` command."""
    alerts = subparsers.add_parser("alerts", help="list, inspect and acknowledge alerts")
    verbs = alerts.add_subparsers(title="alerts")

    listing = verbs.add_parser("list", help="active alert episodes")
    listing.add_argument("--all", action="store_true", help="every asset and channel, also OK")
    listing.set_defaults(handler=list_alerts)

    show = verbs.add_parser("show", help="an asset's alert state and recent alerts")
    show.add_argument("asset")
    show.set_defaults(handler=show_asset)

    ack = verbs.add_parser("ack", help="acknowledge an asset's alerts (silences reminders)")
    ack.add_argument("asset")
    ack.add_argument("--by", default=None, help="who acknowledges (default: your user name)")
    ack.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the alerter")
    ack.set_defaults(handler=ack_asset)


def list_alerts(settings: Settings, args: argparse.Namespace) -> int:
    """Print active episodes (or every channel with ``--all``)."""
    from cbm.db import connect  # noqa: PLC0415 - keep `cbm --help` light
    from services.alerter import queries  # noqa: PLC0415

    with connect(settings, autocommit=True) as conn:
        states = queries.list_states(conn)
    rows = []
    for state, _, _ in states:
        for channel in Channel:
            c = state.channel(channel)
            if c.active or args.all:
                acked = f"{c.acked_by} at {_when(c.acked_at)}" if c.acked_by else "no"
                since = _when(c.episode_started_at) if c.active else "-"
                rows.append((state.asset_id, channel.value, c.level.name, since, acked))
    if not rows:
        _print("no active alerts")
        return 0
    _table(("ASSET", "CHANNEL", "LEVEL", "SINCE", "ACKED"), rows)
    return 0


def show_asset(settings: Settings, args: argparse.Namespace) -> int:
    """Print one asset's state per channel, its last prediction and its recent alerts."""
    from cbm.db import connect  # noqa: PLC0415 - keep `cbm --help` light
    from services.alerter import queries  # noqa: PLC0415

    asset_id = validate_asset_id(args.asset)
    with connect(settings, autocommit=True) as conn:
        found = [s for s in queries.list_states(conn) if s[0].asset_id == asset_id]
        recent = queries.recent_alerts(conn, asset_id, _RECENT)
    if not found:
        _print(f"no alert state for {asset_id}", error=True)
        return 1
    state, ack_by, ack_result = found[0]
    asset = settings.assets.resolve(asset_id)
    _print(f"{asset.name or asset_id} ({asset_id}), site {asset.site}")
    _print_last_prediction(state)
    _table(
        ("CHANNEL", "LEVEL", "EPISODE", "SINCE", "ACKED", "LAST SENT"),
        [
            (
                channel.value,
                c.level.name,
                str(c.episode),
                _when(c.episode_started_at) if c.active else "-",
                c.acked_by or "-",
                _when(c.last_sent_at),
            )
            for channel in Channel
            for c in [state.channel(channel)]
        ],
    )
    if ack_by:
        _print(f"last ack request: by {ack_by}: {ack_result or 'pending'}")
    _print("")
    if not recent:
        _print("no alerts yet")
        return 0
    _table(
        ("TIME", "CHANNEL", "KIND", "LEVEL", "EP", "RECEIVER", "TRIES", "STATUS"),
        [
            (_when(r[0]), *(str(x) for x in r[1:5]), str(r[5]), str(r[6]), _status(*r[7:11]))
            for r in recent
        ],
    )
    return 0


def ack_asset(settings: Settings, args: argparse.Namespace) -> int:
    """Ask the alerter to acknowledge an asset's active alerts and wait for its answer."""
    from cbm.db import connect  # noqa: PLC0415 - keep `cbm --help` light
    from services.alerter import queries  # noqa: PLC0415

    asset_id = validate_asset_id(args.asset)
    by = args.by or login_name()
    with connect(settings, autocommit=True) as conn:
        state, requested = queries.request_ack(conn, asset_id, by)
        if state is None:
            _print(f"no alert state for {asset_id}", error=True)
            return 1
        if requested is None:
            _print(f"{asset_id}: nothing active to acknowledge", error=True)
            return 1
        deadline = time.monotonic() + max(0.0, args.wait)
        while True:
            answer = queries.ack_answer(conn, asset_id, requested)
            if answer is not None:
                _print(f"{asset_id}: {answer}")
                return 0
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
    _print(
        f"{asset_id}: ack by {by} recorded; no alerter applied it within {args.wait:g}s"
        " (it will when one runs)",
        error=True,
    )
    return 0


def _print_last_prediction(state: AssetAlertState) -> None:
    last = state.last_prediction
    if last is None:
        _print("no prediction yet")
        return
    _print(
        f"last prediction {_when(last.time)}: RUL {last.rul_hours:.1f} h"
        f" ({last.rul_low:.1f}–{last.rul_high:.1f} h), anomaly {last.anomaly_score:.1f},"
        f" {'running' if last.running else 'stopped'}, model {last.model_version}"
    )


def _status(delivered: Any, failed: Any, error: Any, acked_by: Any) -> str:
    if delivered is not None:
        status = f"delivered {_when(delivered)}"
    elif failed is not None:
        status = f"FAILED: {error}"
    else:
        status = "pending" + (f" ({error})" if error else "")
    return status + (f", acked by {acked_by}" if acked_by else "")


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    body = [list(r) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=False)]
    for line in [list(header), *body]:
        _print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip())


def _print(text: str, *, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(text + "\n")
