"""An AutoML run's trials as a leaderboard, each linked to its run and its generated source."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.automl.metrics import maximize
from modelyard.errors import InvalidArgument
from modelyard.services.ui.pages.runs import path_query
from modelyard.services.ui.web import client, render

MAX_TRIALS = 1000


def leaderboard(request: Request) -> Response:
    rid = request.path_params["run_id"]
    c = client(request)
    parent = c.get_run(rid)
    tags = parent.data.tags
    if tags.get("modelyard.automl.role") != "parent":
        raise InvalidArgument(f"run {rid} is not an AutoML run", field="run_id")
    primary = parent.data.params.get("primary_metric", "")
    key = f"val_{primary}"  # what AutoML ranks trials by
    problem = tags.get("modelyard.automl.problem_type", "")
    try:
        lower_is_better = not maximize(problem, primary)
    except KeyError:  # a run from another AutoML version: assume an error metric
        lower_is_better = True
    of_parent = f"attributes.parent_run_id = '{rid}'"
    # the best MAX_TRIALS, not the newest: the service ranks them (trials without the metric last)
    page = c.search_runs(
        [parent.info.experiment_id],
        filter_string=of_parent,
        max_results=MAX_TRIALS,
        order_by=[f"metrics.`{key}` {'ASC' if lower_is_better else 'DESC'}"],
    )
    trials = list(page)
    metric_keys = sorted({k for t in trials for k in t.data.metrics})

    def score(run) -> float:
        value = run.data.metrics.get(key)
        if value is None or math.isnan(value):
            return math.inf
        return value if lower_is_better else -value

    trials.sort(key=score)
    columns = [k for k in metric_keys if k.startswith(("val_", "test_", "train_"))] or metric_keys
    return render(
        request,
        "automl.html",
        parent=parent,
        trials=trials,
        key=key,
        columns=columns[:9],
        best=tags.get("modelyard.automl.best_run_id"),
        problem=problem,
        target=tags.get("modelyard.automl.target_col", ""),
        report=tags.get("modelyard.automl.report"),
        path_query=path_query,  # the report's and sources' paths are tags: any length
        all_trials=(
            f"/experiments/{parent.info.experiment_id}?{urlencode({'filter': of_parent})}"
            if page.token
            else ""
        ),
    )


ROUTES = [Route("/automl/{run_id}", leaderboard)]
