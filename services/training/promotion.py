"""A model-promotion decision and its record: the ``model_promotion`` row and the report file.

``cbm retrain`` and ``cbm shadow promote`` decide; both describe the decision
as an :class:`Outcome` and record it here. The report is strict JSON (no NaN:
jsonb refuses it too), written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cbm import tables
from services.training.metrics import Scores

log = logging.getLogger(__name__)

Connect = Callable[[], psycopg.Connection[Any]]


class Metric(StrEnum):
    """The score a candidate must lower to be promoted."""

    RMSE = "rmse"
    PHM08 = "phm08"  # per window: the sum over a fixed set of windows ranks the same
    MAE = "mae"

    def of(self, scores: Scores) -> float:
        """Return this metric's value in ``scores``."""
        if self is Metric.PHM08:
            return scores.phm08_mean
        return scores.rmse if self is Metric.RMSE else scores.mae


class Decision(StrEnum):
    """What happened to a candidate."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    SHADOWED = "shadowed"  # better offline; runs in shadow until `cbm shadow promote`


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The decision on one candidate, where its report went and whether the database has it."""

    decision: Decision
    candidate: str
    current: str | None
    metric: Metric
    candidate_value: float
    current_value: float | None
    report: dict[str, Any]
    report_path: Path | None
    recorded: bool


def insert_promotion(
    conn: psycopg.Connection[Any], outcome: Outcome, *, time: datetime, by: str
) -> None:
    """Insert one ``model_promotion`` row for ``outcome``."""
    conn.execute(
        sql.SQL(
            """INSERT INTO {table} (time, candidate_version, current_version, metric,
                   candidate_value, current_value, decision, decided_by, report)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""
        ).format(table=sql.Identifier(tables.MODEL_PROMOTION)),
        (
            time,
            outcome.candidate,
            outcome.current,
            outcome.metric.value,
            _finite_or_none(outcome.candidate_value),
            _finite_or_none(outcome.current_value),
            outcome.decision.value,
            by,
            Jsonb(json_ready(outcome.report)),
        ),
    )


def record_decision(connect: Connect | None, outcome: Outcome, time: datetime, by: str) -> bool:
    """Insert the decision; on any database error warn and go on (the report file has it)."""
    if connect is None:
        return False
    try:
        with connect() as conn:  # commits on leaving the block
            insert_promotion(conn, outcome, time=time, by=by)
    except psycopg.Error as exc:
        log.warning(
            "decision on %s not recorded in the database (%s); it stands, see %s",
            outcome.candidate,
            " ".join(str(exc).split())[:200],
            outcome.report_path or "the output above",
        )
        return False
    return True


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def json_ready(value: Any) -> Any:
    """Return ``value`` with non-finite floats as None: strict JSON, and jsonb refuses NaN."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (temp file in the same folder, then replace)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
        os.chmod(name, 0o644)  # mkstemp makes it private; the report is for everyone to read
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
