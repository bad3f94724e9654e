"""The dashboard and provisioning files are what Grafana expects (no database needed)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.grafana.dashboards import (
    DATASOURCE_FILE,
    GRAFANA_DIR,
    all_queries,
    datasource_refs,
    load_dashboards,
    panels,
    queries,
    strings,
)
from tests.grafana.macros import BUILTIN_VARIABLES, used_variables

DASHBOARDS = load_dashboards()
EXPECTED = {"fleet.json": "cbm-fleet", "asset.json": "cbm-asset", "pipeline.json": "cbm-pipeline"}
PANEL_TYPES = {"timeseries", "table", "stat", "row", "text", "bargauge", "gauge"}
# Grafana's own variables a data link or query may use.
GRAFANA_LINK_VARIABLES = {"__data", "__url_time_range", "__value", "__field", "__series", "__all"}


def provisioned_datasources() -> list[dict]:
    return yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]


def test_the_three_dashboards_exist_with_their_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == EXPECTED
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_has_what_grafana_needs(name: str) -> None:
    d = DASHBOARDS[name]
    for key in ("uid", "title", "tags", "time", "templating", "panels", "schemaVersion"):
        assert key in d, key
    assert 36 <= d["schemaVersion"] <= 41
    assert d.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert "cbm" in d["tags"]
    assert set(d["time"]) == {"from", "to"}
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels(d)]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    for panel in panels(d):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid)
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel.get("title"), "every panel has a title"
        for target in panel.get("targets", []):
            assert target["format"] in ("table", "time_series"), panel["title"]
            assert target.get("rawQuery") is True and target["rawSql"].strip()
            if panel["type"] == "timeseries":
                assert target["format"] == "time_series", panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(DASHBOARDS[name]):
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_datasource_reference_is_provisioned() -> None:
    provisioned = {(ds["type"], ds["uid"]) for ds in provisioned_datasources()}
    for name, d in DASHBOARDS.items():
        refs = list(datasource_refs(d))
        assert refs, name
        for ref in refs:
            assert (ref.get("type"), ref.get("uid")) in provisioned, (name, ref)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    d = DASHBOARDS[name]
    defined = {v["name"] for v in d["templating"]["list"]}
    for query in queries(d):
        missing = used_variables(query.sql) - defined
        assert not missing, f"{query.id} uses undefined {missing}"
    # Data links and titles may use variables too.
    for text in strings(d):
        for found in re.findall(r"\$\{(\w+)|\$(\w+)", text):
            variable = found[0] or found[1]
            if variable.startswith("__") and (
                variable in BUILTIN_VARIABLES
                or variable in GRAFANA_LINK_VARIABLES
                or re.fullmatch(r"__(time\w*|unixEpoch\w*)", variable)
            ):
                continue
            assert variable in defined, f"{name}: ${variable} in {text[:80]!r}"


def test_data_links_point_to_existing_dashboards_and_variables() -> None:
    by_uid = {d["uid"]: d for d in DASHBOARDS.values()}
    links = 0
    for d in DASHBOARDS.values():
        for text in strings(d):
            if "/d/" not in text:
                continue
            links += 1
            url = urlsplit(text)
            uid = url.path.split("/")[2]
            assert uid in by_uid, text
            target_vars = {v["name"] for v in by_uid[uid]["templating"]["list"]}
            for key in parse_qs(url.query):
                if key.startswith("var-"):
                    assert key[4:] in target_vars, text
    assert links >= 2, "the fleet table and the pending alerts link to the asset dashboard"


def test_fleet_rows_link_to_the_asset_dashboard() -> None:
    table = next(p for p in panels(DASHBOARDS["fleet.json"]) if p["type"] == "table")
    urls = [
        link["url"]
        for override in table["fieldConfig"]["overrides"]
        if override["matcher"]["options"] == "asset_id"
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert urls and urls[0].startswith("/d/cbm-asset/asset?var-asset=${__data.fields.asset_id}")


def test_asset_dashboard_has_its_variable_and_annotations() -> None:
    d = DASHBOARDS["asset.json"]
    (variable,) = d["templating"]["list"]
    assert variable["name"] == "asset"
    assert variable["query"].strip() == "SELECT asset_id FROM asset ORDER BY asset_id"
    names = {a["name"] for a in d["annotations"]["list"]}
    assert {"Alerts", "Acknowledgements"} <= names
    for annotation in d["annotations"]["list"]:
        sql = annotation["target"]["rawSql"]
        for column in ("time", "text", "tags"):
            assert re.search(rf"\b{column}\b", sql), (annotation["name"], column)


def test_time_series_queries_use_grafana_macros() -> None:
    for query in all_queries():
        if query.panel_type == "timeseries":
            assert re.search(r"\$__timeFilter\((\w+\.)?time\)", query.sql), query.id
            assert re.search(r"\$__timeGroupAlias\((\w+\.)?time, \$__interval\)", query.sql), (
                query.id
            )


def test_long_ranges_read_the_rollups() -> None:
    rollups = ("prediction_hourly", "feature_hourly", "ingest_window_minute")
    raw = ("prediction", "feature_vector", "ingest_window", "temperature")
    for query in all_queries():
        if query.panel_type != "timeseries":
            continue
        reads_raw = any(re.search(rf"\bFROM {t}\b", query.sql) for t in raw)
        if reads_raw:
            assert any(r in query.sql for r in rollups), f"{query.id} has no rollup branch"
            assert "> interval '2 days'" in query.sql, query.id


def test_the_datasource_is_provisioned_as_the_dashboards_expect() -> None:
    (ds,) = provisioned_datasources()
    assert ds["type"] == "grafana-postgresql-datasource"
    assert ds["uid"] == "cbm-postgres"
    data = ds["jsonData"]
    assert data["database"] and data["sslmode"] == "disable"
    assert data["postgresVersion"] == 1600
    # A boolean, not an interpolated string: Grafana's plugin rejects "true".
    assert data["timescaledb"] is True
    assert ds["url"].startswith("${") and ds["user"].startswith("${")
    assert ds["secureJsonData"]["password"].startswith("${"), "no password in the file"


def test_the_dashboard_provider_loads_the_folder_cbm() -> None:
    provider_file = GRAFANA_DIR / "provisioning" / "dashboards" / "cbm.yaml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert provider["folder"] == "CBM" and provider["type"] == "file"
    assert provider["options"]["path"].endswith("/cbm")
