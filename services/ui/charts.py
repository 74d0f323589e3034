"""Chart specifications, as plain data for plotly.js (and for the metric charts, series that the
page's script redraws when the x axis or the smoothing changes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from modelyard.entities.tracking import Metric

MAX_POINTS = 2000  # per series; the tracking service samples longer histories (max_points)
MAX_CHARTS = 24  # metric keys drawn on a page (all are listed in its table)
SYSTEM_PREFIX = "system/"  # log_system_metrics' keys: CPU, memory, disk, network

LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
    "height": 280,
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "xaxis": {"gridcolor": "#e5e7eb"},
    "yaxis": {"gridcolor": "#e5e7eb"},
    "legend": {"orientation": "h"},
}


def plotly_text(value: Any) -> Any:
    """`value` with `<` and `&` in every string as HTML entities: Plotly reads titles, names and
    labels as its pseudo-HTML (links, styles, entities), and they hold users' text (run names,
    keys, URL parameters, request ids). Plotly shows the entities as the characters."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;")
    if isinstance(value, dict):
        return {k: plotly_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plotly_text(v) for v in value]
    return value


def charted_keys(keys: Iterable[str]) -> tuple[list[str], int]:
    """The metric keys a page charts, the model's own before the machine's (system/*), as
    MLflow's UI puts them; and how many are left out. Sorted by name alone, eight system
    metrics took the chart slots of the model's metrics named after "system" (val_loss)."""
    ordered = sorted(keys, key=lambda k: (k.startswith(SYSTEM_PREFIX), k))
    return ordered[:MAX_CHARTS], max(0, len(ordered) - MAX_CHARTS)


def metric_series(name: str, history: Sequence[Metric]) -> dict[str, Any]:
    """One metric's history with both x axes: step and wall time."""
    points = sorted(history, key=lambda m: (m.step, m.timestamp))
    return {
        "name": name,
        "step": [m.step for m in points],
        "time": [m.timestamp for m in points],
        "y": [m.value if m.value == m.value else None for m in points],  # NaN -> gap
    }


def metric_chart(title: str, series: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "metrics", "title": title, "series": series, "layout": LAYOUT}


def figure(data: list[dict[str, Any]], title: str = "", **layout: Any) -> dict[str, Any]:
    return {
        "kind": "plotly",
        "data": data,
        "layout": {**LAYOUT, "title": {"text": title, "font": {"size": 14}}, **layout},
    }


def parallel_coordinates(
    dimensions: list[tuple[str, list[float]]], color: list[float] | None, color_name: str
) -> dict[str, Any]:
    dims = [
        {"label": label, "values": values}
        for label, values in dimensions
        if (values and min(values) != max(values)) or len(values) == 1
    ]
    line: dict[str, Any] = {}
    if color:
        line = {
            "color": color,
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": {"text": color_name}},
        }
    return figure([{"type": "parcoords", "dimensions": dims, "line": line}], height=380)


def band(x: list[Any], lower: list[Any], upper: list[Any], name: str, fill: str) -> list[dict]:
    """A shaded band between two series (the upper edge unnamed in the legend)."""
    line = {"type": "scatter", "mode": "lines", "x": x, "line": {"width": 0}}
    return [
        {**line, "y": upper, "name": "upper", "showlegend": False},
        {**line, "y": lower, "name": name, "fill": "tonexty", "fillcolor": fill},
    ]
