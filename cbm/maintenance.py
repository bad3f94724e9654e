"""Where an asset's current life began: its latest repair or replacement.

A repair or a replacement (``maintenance_event``, recorded with ``cbm events
add``) starts a new life: inference forgets the old bearing's sequence and
healthy baseline, and the alerter closes the old bearing's alert episode.
Both stages learn of such events by polling this one query, so the event
needs no message of its own and a stage that was down when it was recorded
applies it when it comes back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from cbm import tables

# The kinds that put a new (or renewed) bearing in: the same words as the
# CHECK of sql/0007. A failure ends a life but changes nothing by itself;
# an inspection changes nothing at all.
RESET_KINDS: Final = ("repair", "replacement")


def latest_resets(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    """Return each asset's latest repair or replacement time (assets without one are absent)."""
    rows = conn.execute(
        f"""SELECT asset_id, max(time) FROM {tables.MAINTENANCE_EVENT}
            WHERE kind = ANY(%s) GROUP BY asset_id""",
        (list(RESET_KINDS),),
    )
    return {str(asset_id): at for asset_id, at in rows}
