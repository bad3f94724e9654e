"""Read the provisioned dashboards and list every SQL query they hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import ROOT

GRAFANA_DIR = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "cbm.yaml"


@dataclass(frozen=True)
class Query:
    """One SQL query of a dashboard: a panel target, an annotation or a variable."""

    dashboard: str  # uid
    kind: str  # panel, annotation, variable
    title: str
    panel_type: str  # timeseries, table, stat, annotation, variable
    format: str  # time_series or table
    sql: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.kind}:{self.title}"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Return every dashboard JSON of the directory by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, the ones inside (collapsed) rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """Return every SQL query of one dashboard."""
    uid = dashboard["uid"]
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append(
                Query(
                    uid,
                    "panel",
                    f"{panel['title']} [{target['refId']}]",
                    panel["type"],
                    target.get("format", "time_series"),
                    target["rawSql"],
                )
            )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        target = annotation.get("target") or {}
        if "rawSql" in target:
            found.append(
                Query(
                    uid, "annotation", annotation["name"], "annotation", "table", target["rawSql"]
                )
            )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            sql = query if isinstance(query, str) else query.get("rawSql", "")
            found.append(Query(uid, "variable", variable["name"], "variable", "table", sql))
    return found


def all_queries() -> list[Query]:
    """Return every SQL query of every provisioned dashboard."""
    return [q for d in load_dashboards().values() for q in queries(d)]


def datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Yield every ``datasource`` reference anywhere in a dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def strings(node: Any) -> Iterator[str]:
    """Yield every string value anywhere in a dashboard."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
