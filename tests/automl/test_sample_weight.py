"""sample_weight_col (as Databricks AutoML's): each row's weight, in every fit and every metric.

The data here has a clean rule (y = x > 0) and, weighted 0, twice as many rows with the rule
reversed: a model fit without the weights learns the reversed rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, mean_absolute_error
from typer.testing import CliRunner

import modelyard.automl
import modelyard.pyfunc
from modelyard.automl.dataset import SPLIT_COL
from modelyard.cli import app
from modelyard.errors import InvalidArgument

SKLEARN_ONLY = ["lightgbm", "xgboost"]  # the linear family first: quick, and weights show


def _poisoned(n: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    clean = np.arange(n) % 3 == 0
    y = np.where(clean, x > 0, x <= 0).astype(int)
    return pd.DataFrame({"x": x, "y": y, "w": np.where(clean, 1.0, 0.0)})


def test_weights_decide_the_fit_and_weigh_every_metric(fluent, tmp_path) -> None:
    data = _poisoned()
    result = modelyard.automl.classify(
        data,
        "y",
        sample_weight_col="w",
        exclude_frameworks=SKLEARN_ONLY,
        max_trials=1,
        cv_folds=None,
        output_dir=tmp_path,
    )
    c = fluent.client()
    assert c.get_run(result.parent_run_id).data.params["sample_weight_col"] == "w"
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.signature is not None
    assert [s.name for s in model.signature.inputs] == ["x"]  # the weight is no feature
    probe = pd.DataFrame({"x": [-0.9, -0.5, 0.5, 0.9]})
    assert model.predict(probe).tolist() == [0, 0, 1, 1]  # the rule of the rows that count

    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert csv["w"].tolist() == data["w"].tolist()  # kept, for the generated script
    for part in ("val", "test"):
        rows = csv[csv[SPLIT_COL] == part]
        weighted = f1_score(rows["y"], model.predict(rows[["x"]]), sample_weight=rows["w"])
        assert result.best_trial.metrics[f"{part}_f1"] == pytest.approx(weighted)
    assert result.best_trial.metrics["test_f1"] == pytest.approx(1.0)


def test_regression_weights_and_families_that_cannot_take_them(fluent, tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 90)
    clean = np.arange(90) % 3 == 0
    data = pd.DataFrame({"x": x, "y": np.where(clean, 2 * x, -5 * x), "w": clean * 2.0})
    result = modelyard.automl.regress(
        data,
        "y",
        sample_weight_col="w",
        exclude_frameworks=SKLEARN_ONLY,
        max_trials=1,
        output_dir=tmp_path,
    )
    assert any("knn left out: it cannot fit with sample weights" in w for w in result.warnings)
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.predict(pd.DataFrame({"x": [1.0, 9.0]})) == pytest.approx([2.0, 18.0], abs=0.5)
    c = fluent.client()
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    rows = csv[csv[SPLIT_COL] == "test"]
    weighted = mean_absolute_error(rows["y"], model.predict(rows[["x"]]), sample_weight=rows["w"])
    assert result.best_trial.metrics["test_mae"] == pytest.approx(weighted)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -1.0], "has 45 row(s) whose weight is negative, e.g. ['-1.0']"),
        ([1.0, None], "has 45 row(s) whose weight is missing"),
        (["1", "heavy"], "has 45 row(s) whose weight is not a number, e.g. ['heavy']"),
        ([1.0, float("inf")], "has 45 row(s) whose weight is infinite"),
        ([0, 0], "is 0 in every row"),
    ],
)
def test_bad_weights_are_refused_naming_the_column(fluent, weights: list, message: str) -> None:
    data = _poisoned().assign(w=np.resize(np.asarray(weights, dtype=object), 90))
    with pytest.raises(InvalidArgument, match="sample_weight_col 'w' ") as caught:
        modelyard.automl.classify(data, "y", sample_weight_col="w", max_trials=1)
    assert message in caught.value.message and caught.value.field == "sample_weight_col"
    assert fluent.search_runs(search_all_experiments=True).empty


def test_the_weight_column_has_no_other_role(fluent) -> None:
    data = _poisoned()
    with pytest.raises(InvalidArgument, match="sample_weight_col 'W' is not a column; did you"):
        modelyard.automl.classify(data, "y", sample_weight_col="W", max_trials=1)
    with pytest.raises(InvalidArgument, match="sample_weight_col 'w' is also identity_col"):
        modelyard.automl.classify(data, "y", sample_weight_col="w", identity_col="w")
    with pytest.raises(InvalidArgument, match="sample_weight_col 'y' is also target_col"):
        modelyard.automl.regress(data, "y", sample_weight_col="y", max_trials=1)


def test_sample_weight_col_from_the_cli_and_the_generated_script(fluent, server, tmp_path) -> None:
    data = tmp_path / "poisoned.csv"
    _poisoned().to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "y", "--max-trials", "1"]
    args += ["--sample-weight-col", "w", "--exclude-framework", "lightgbm,xgboost"]
    args += ["--uri", server.address, "--json", "--output-dir", str(tmp_path / "code")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    params = fluent.client().get_run(summary["parent_run_id"]).data.params
    assert params["sample_weight_col"] == "w"
    env = {**os.environ, "MODELYARD_URI": server.address}
    script = [sys.executable, summary["best_trial"]["source_path"], "--no-log"]
    ran = subprocess.run(script, capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    printed = {k: float(v) for k, v in (line.split() for line in ran.stdout.splitlines())}
    for name in ("val_f1", "test_f1", "test_log_loss"):
        assert printed[name] == pytest.approx(summary["best_trial"]["metrics"][name])
    assert printed["test_f1"] == pytest.approx(1.0)

    sales = tmp_path / "sales.csv"
    pd.DataFrame({"day": pd.date_range("2024-01-01", periods=40), "s": 1.0, "w": 1.0}).to_csv(
        sales, index=False
    )
    forecast = ["automl", "run", "--data", str(sales), "--target", "s"]
    forecast += ["--problem", "forecasting", "--time-col", "day", "--horizon", "3"]
    refused = CliRunner().invoke(app, [*forecast, "--sample-weight-col", "w"])
    assert refused.exit_code != 0 and "--sample-weight-col" in refused.output
