"""Endpoints: what each serves and how traffic splits, live request rate and latency, and the
monitoring dashboard built from the inference log."""

from __future__ import annotations

from typing import Any

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelyard.client import Client
from modelyard.entities.serving import Endpoint
from modelyard.errors import ModelyardError, PermissionDenied
from modelyard.models.uri import parse_models_uri
from modelyard.services.ui import charts, monitoring
from modelyard.services.ui.web import client, counted, render

LOG_ROWS = 5000  # the latest requests the dashboard looks at


def endpoints(request: Request) -> Response:
    return render(request, "endpoints.html", endpoints=client(request).list_endpoints())


def _log(c: Client, ep: Endpoint) -> tuple[pd.DataFrame | None, str]:
    """The latest logged requests, or why there are none to show (and what to do about it)."""
    try:
        log = c.get_inference_log(ep.name, max_results=LOG_ROWS, newest_first=True)
    except PermissionDenied:
        return None, "Reading the inference log needs EDIT on this endpoint."
    assert isinstance(log, pd.DataFrame)
    if log.empty and ep.inference_log.enabled:
        kept = f"{ep.inference_log.sampling_rate * 100:g}%"
        return None, (
            f"No requests logged yet: the inference log keeps {kept} of the requests served, "
            "and this dashboard fills in as they come."
        )
    if log.empty:
        return None, (
            "No logged requests: the inference log is off. Turn it on with "
            f"modelyard endpoints update {ep.name} --log-sampling 1.0"
        )
    return log.iloc[::-1].reset_index(drop=True), ""


def _reference(c: Client, endpoint: Endpoint) -> tuple[dict[str, Any], str, list[str]]:
    """The training dataset profile of the first served version (and its signature's columns)."""
    for served in endpoint.served_models:
        if not served.version:
            continue
        name = parse_models_uri(served.model_uri)[0]
        try:
            lineage = c.get_model_version_lineage(name, served.version)
        except ModelyardError:
            continue
        if lineage.run is None:
            continue
        inputs = sorted(
            lineage.run.inputs.dataset_inputs,
            key=lambda i: i.context != "training",
        )
        for item in inputs:
            profile = monitoring.profile_of(item.dataset.profile)
            if profile.get("columns") and isinstance(profile["columns"], dict):
                names = list(profile["columns"])
                return profile, f"{item.dataset.name} ({item.dataset.digest})", names
    return {}, "", []


def _traffic(ep: Endpoint, log: pd.DataFrame, now: pd.Timestamp) -> monitoring.Traffic:
    """Traffic as served, from the log's sample of it (its latest LOG_ROWS rows at most)."""
    sampling = ep.inference_log.sampling_rate if ep.inference_log.enabled else 1.0
    return monitoring.traffic(log, now, sampling_rate=sampling, cut=len(log) >= LOG_ROWS)


def _traffic_charts(t: monitoring.Traffic) -> list[dict[str, Any]]:
    return [
        charts.figure(
            [{"type": "bar", "x": t.minutes, "y": t.requests, "name": "requests"}],
            "Requests per minute",
        ),
        charts.figure(
            [
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": t.minutes,
                    "y": t.p50,
                    "name": "p50",
                },
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "x": t.minutes,
                    "y": t.p95,
                    "name": "p95",
                },
            ],
            "Latency (ms)",
        ),
    ]


def endpoint(request: Request) -> Response:
    name = request.path_params["name"]
    c = client(request)
    ep = c.get_endpoint(name)
    log, why = _log(c, ep)
    context: dict[str, Any] = {"endpoint": ep, "why": why, "split": None}
    context["split"] = charts.figure(
        [
            {
                "type": "pie",
                "labels": [f"{s.name} (v{s.version or '?'})" for s in ep.served_models],
                "values": [s.traffic_percent for s in ep.served_models],
                "hole": 0.5,
            }
        ],
        "Traffic split",
        height=240,
    )
    if log is not None:
        now = pd.Timestamp.now(tz="UTC")
        traffic = _traffic(ep, log, now)
        context.update(traffic=traffic, traffic_charts=_traffic_charts(traffic))
        reference, reference_name, names = _reference(c, ep)
        inputs, predictions = monitoring.decode(log, names)
        column = monitoring.prediction_column(predictions) if not predictions.empty else None
        if column:
            dist = monitoring.distribution(predictions, column)
            context["distribution"] = dist and _distribution_chart(dist, column)
            context["anomalies"] = [dist.times[i] for i in dist.anomalies] if dist else []
            accuracy = monitoring.against_truth(predictions, column)
            context["accuracy"] = accuracy
            context["accuracy_chart"] = accuracy and _accuracy_chart(accuracy)
        context["drift"] = monitoring.drift(inputs, reference) if reference else []
        context["reference"] = reference_name
        forecast = monitoring.latest_forecast(log)
        context["forecast"] = forecast and _forecast_chart(forecast)
    return render(request, "endpoint.html", **context)


def endpoint_stats(request: Request) -> Response:
    """Live numbers for the endpoint page to poll."""
    c = client(request)
    name = request.path_params["name"]
    ep = c.get_endpoint(name)
    log, why = _log(c, ep)
    body: dict[str, Any] = {
        "states": {s.name: str(s.state) for s in ep.served_models},
        "versions": {s.name: s.version for s in ep.served_models},
        "why": why,
    }
    if log is not None:
        t = _traffic(ep, log, pd.Timestamp.now(tz="UTC"))
        body.update(
            rate_per_s=t.rate_per_s,
            latency_p50=t.latency_p50,
            latency_p95=t.latency_p95,
            total=t.total,
            errors=t.errors,
            error_percent=t.error_percent,
            charts=_traffic_charts(t),
        )
    return JSONResponse(body)


def _distribution_chart(d: monitoring.Distribution, column: str) -> dict[str, Any]:
    line = {"type": "scatter", "mode": "lines", "x": d.times}
    return charts.figure(
        [
            *charts.band(d.times, d.p10, d.p90, "p10-p90", "rgba(59,130,246,0.2)"),
            {**line, "y": d.p50, "name": "median", "line": {"color": "#2563eb"}},
            {**line, "y": d.upper, "name": "band", "line": {"dash": "dot", "color": "#9ca3af"}},
            {**line, "y": d.lower, "name": "band", "line": {"dash": "dot", "color": "#9ca3af"},
             "showlegend": False},
            {"type": "scatter", "mode": "markers", "name": "anomaly",
             "x": [d.times[i] for i in d.anomalies], "y": [d.mean[i] for i in d.anomalies],
             "marker": {"color": "#dc2626", "size": 10, "symbol": "x"}},
        ],
        f"{column} over time (mean outside the rolling band is flagged)",
    )  # fmt: skip


def _accuracy_chart(a: monitoring.Accuracy) -> dict[str, Any]:
    if a.kind == "regression":
        low = min(v for v in [*a.predicted, *a.actual] if v is not None)
        high = max(v for v in [*a.predicted, *a.actual] if v is not None)
        return charts.figure(
            [
                {"type": "scatter", "mode": "markers", "x": a.actual, "y": a.predicted,
                 "name": "requests"},
                {"type": "scatter", "mode": "lines", "x": [low, high], "y": [low, high],
                 "name": "ideal", "line": {"dash": "dash", "color": "#9ca3af"}},
            ],
            "Predicted vs actual",
            xaxis={"title": {"text": "actual"}},
            yaxis={"title": {"text": "predicted"}},
        )  # fmt: skip
    labels = sorted(set(a.predicted) | set(a.actual))
    counts = [[sum(1 for p, t in zip(a.predicted, a.actual, strict=True) if p == col and t == row)
               for col in labels] for row in labels]  # fmt: skip
    return charts.figure(
        [{"type": "heatmap", "x": labels, "y": labels, "z": counts, "colorscale": "Blues"}],
        "Actual (rows) vs predicted (columns)",
    )


def _forecast_chart(f: monitoring.Forecast) -> dict[str, Any]:
    line = {"type": "scatter", "mode": "lines", "x": f.steps}
    return charts.figure(
        [
            *charts.band(f.steps, f.lower, f.upper, "interval", "rgba(16,185,129,0.2)"),
            {**line, "y": f.value, "name": "forecast", "line": {"color": "#059669"}},
        ],
        f"Latest forecast (request {f.request_id}): {counted(len(f.steps), 'step')} ahead",
    )  # fmt: skip


ROUTES = [
    Route("/endpoints", endpoints),
    Route("/endpoints/{name}", endpoint),
    Route("/endpoints/{name}/stats", endpoint_stats),
]
