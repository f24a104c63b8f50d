"""The Grafana dashboard JSON, built from dashboard.yaml with grafana-foundation-sdk.

The SDK gives typed builders for panels, queries and variables, so the JSON is valid for
Grafana by construction; the YAML holds only what differs between panels.
"""

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard, gauge, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
WIDTHS = {"stat": 6, "gauge": 6, "timeseries": 12}
HEIGHTS = {"stat": 4, "gauge": 6, "timeseries": 8}
PANELS = {"stat": stat.Panel, "gauge": gauge.Panel, "timeseries": timeseries.Panel}


@cache
def dashboard_spec() -> dict[str, Any]:
    text = resources.files("redkeep.monitoring").joinpath("dashboard.yaml").read_text()
    return yaml.safe_load(text)


def queries(spec: dict[str, Any] | None = None, deployment: str = "standalone") -> list[str]:
    """The PromQL expressions of the dashboard whose data a `deployment` (standalone, sentinel,
    cluster) gives: every row without `needs`, and those that name it (the tests run them
    against Prometheus)."""
    spec = spec or dashboard_spec()
    found = []
    for row in spec["rows"]:
        if "needs" in row and deployment not in row["needs"].split():
            continue
        for panel in row["panels"]:
            found += [_query(item)[0] for item in panel["queries"]]
    return found


def _query(item: str | dict) -> tuple[str, str]:
    return (item, "") if isinstance(item, str) else (item["expr"], item.get("legend", ""))


def build_dashboard(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    spec = spec or dashboard_spec()
    board = (
        dashboard.Dashboard(spec["title"])
        .uid(spec["uid"])
        .tags(["redis", "redkeep"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(
            dashboard.DatasourceVariable("datasource").type("prometheus").label("Prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("Instance")
            .datasource(DATASOURCE)
            .query("label_values(redis_up, instance)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".+")
        )
    )
    y = 0
    for row in spec["rows"]:
        board = board.with_row(dashboard.Row(row["title"]).grid_pos(GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        x, row_height = 0, 0
        for panel in row["panels"]:
            width, height = WIDTHS[panel["type"]], HEIGHTS[panel["type"]]
            if x + width > 24:
                x, y = 0, y + row_height
                row_height = 0
            board = board.with_panel(_panel(panel).grid_pos(GridPos(h=height, w=width, x=x, y=y)))
            x += width
            row_height = max(row_height, height)
        y += row_height
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))


def _panel(spec: dict[str, Any]):
    panel = PANELS[spec["type"]]().title(spec["title"]).datasource(DATASOURCE)
    if spec.get("unit"):
        panel = panel.unit(spec["unit"])
    if spec.get("from"):
        panel = panel.description(f"From dashboard {spec['from']}.")
    for index, item in enumerate(spec["queries"]):
        expr, legend = _query(item)
        query = prometheus.Dataquery().expr(expr).ref_id(chr(ord("A") + index))
        if legend:
            query = query.legend_format(legend)
        panel = panel.with_target(query)
    return panel


def render_dashboard() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"
