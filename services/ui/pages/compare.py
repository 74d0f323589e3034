"""Comparing 2-10 runs: params side by side (differences marked), metrics, overlaid metric
histories, and a parallel-coordinates plot of params against a metric (tuning studies)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.entities.tracking import Run
from modelyard.errors import InvalidArgument, NotFound, PermissionDenied
from modelyard.services.ui import charts
from modelyard.services.ui.web import client, render, said

MIN_RUNS, MAX_RUNS = 2, 10


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compare(request: Request) -> Response:
    ids = [i for item in request.query_params.getlist("runs") for i in item.split(",") if i]
    ids = list(dict.fromkeys(ids))
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise InvalidArgument(
            f"pick {MIN_RUNS} to {MAX_RUNS} runs to compare (got {len(ids)}); tick them in the "
            "runs table",
            field="runs",
        )
    c = client(request)
    runs: list[Run] = []
    left_out: list[str] = []
    for rid in ids:
        try:
            runs.append(c.get_run(rid))
        except (NotFound, PermissionDenied) as exc:  # the others are still worth comparing
            if len(left_out) == len(ids) - 1:
                raise
            left_out.append(said(request, exc))
    param_keys = sorted({k for r in runs for k in r.data.params})
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    params = [(key, [r.data.params.get(key) for r in runs]) for key in param_keys]
    # compared here, exactly: Jinja's `unique` ignores case, so "Adam" and "adam" did not differ
    differing = {key for key, values in params if len(set(values)) > 1}
    metrics = [(key, [r.data.metrics.get(key) for r in runs]) for key in metric_keys]
    histories = []
    charted, uncharted = charts.charted_keys(metric_keys)
    for key in charted:
        series = [
            charts.metric_series(
                r.info.run_name or r.info.run_id[:8],
                c.sample_metric_history(r.info.run_id, key, charts.MAX_POINTS),
            )
            for r in runs
            if key in r.data.metrics
        ]
        histories.append(charts.metric_chart(key, series))
    color_key = request.query_params.get("color") or (metric_keys[0] if metric_keys else "")
    dimensions = []
    for key in param_keys:
        values = [_number(r.data.params.get(key, "")) for r in runs]
        if all(v is not None for v in values):
            dimensions.append((f"params.{key}", values))
    for key in metric_keys:
        values = [r.data.metrics.get(key) for r in runs]
        if all(v is not None for v in values):
            dimensions.append((f"metrics.{key}", values))
    color = [r.data.metrics.get(color_key) for r in runs] if color_key else None
    parallel = (
        charts.parallel_coordinates(
            dimensions, color if color and None not in color else None, color_key
        )
        if len(dimensions) >= 2
        else None
    )
    return render(
        request,
        "compare.html",
        runs=runs,
        params=params,
        differing=differing,
        metrics=metrics,
        histories=histories,
        uncharted=uncharted,
        parallel=parallel,
        metric_keys=metric_keys,
        color_key=color_key,
        ids=",".join(ids),
        left_out=left_out,
    )


ROUTES = [Route("/compare", compare)]
