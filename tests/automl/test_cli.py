"""`modelyard automl run` on a CSV file: a progress bar, then the trials and the best one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import modelyard.pyfunc
from modelyard.cli import app
from modelyard.errors import InvalidArgument

runner = CliRunner()


def test_automl_run_shows_progress_and_the_best_trial(fluent, server, prices, tmp_path) -> None:
    data = tmp_path / "prices.csv"
    prices.to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "price", "--problem", "regression"]
    args += ["--timeout", "1", "--max-trials", "2", "--uri", server.address]
    result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "code")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "AutoML regression: price" not in out  # no bar drawn where no one watches
    assert "Trials (2), best first by val_rmse" in out
    assert "source" in out and str(tmp_path / "code") in out.replace("\n", "")
    assert len(list((tmp_path / "code").glob("trial_*.py"))) == 2

    done = runner.invoke(app, [*args, "--experiment", "cli-automl", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert summary["trials"] == 2 and summary["primary_metric"] == "rmse"
    run = fluent.client().get_run(summary["best_trial"]["run_id"])
    assert run.info.experiment_id == summary["experiment_id"]
    assert fluent.client().get_experiment(summary["experiment_id"]).name == "cli-automl"


def test_automl_run_refuses_a_forecast_without_a_time_column(
    fluent, server, sales, tmp_path
) -> None:
    data = tmp_path / "sales.csv"
    sales.to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "sales", "--problem", "forecasting"]
    result = runner.invoke(app, [*args, "--uri", server.address])
    assert result.exit_code != 0
    assert "--time-col" in result.output


def test_with_json_an_error_is_a_json_object_naming_the_close_column(prices, tmp_path) -> None:
    data = tmp_path / "prices.csv"
    prices.to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "Price", "--problem", "regression"]
    done = subprocess.run(  # through main(), the one place a command's error is printed
        [sys.executable, "-m", "modelyard.cli", *args, "--json", "--uri", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": "target_col 'Price' is not a column; did you mean 'price'?",
            "field": "target_col",
        }
    }


def _automl(server: Any, data: Path, target: str, *extra: str) -> dict[str, Any]:
    """`modelyard automl run --json` against the real server, its summary parsed."""
    args = ["automl", "run", "--data", str(data), "--target", target, "--max-trials", "1"]
    done = runner.invoke(app, [*args, "--timeout", "1", "--uri", server.address, "--json", *extra])
    assert done.exit_code == 0, done.output
    summary: dict[str, Any] = json.loads(done.output)
    return summary


def _reproduce(script: str, server: Any) -> dict[str, float]:
    """The trial's generated script, run as a user would (--no-log): its printed metrics."""
    env = {**os.environ, "MODELYARD_URI": server.address}
    done = subprocess.run(
        [sys.executable, script, "--no-log"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {
        name: float(value) for name, value in (line.split() for line in done.stdout.splitlines())
    }


def test_identity_cols_from_the_cli_are_kept_and_no_feature(
    fluent, server, churn, tmp_path
) -> None:
    """--identity-col, repeated or comma-separated: recorded, kept in the logged data as given,
    not in the model's inputs; the generated script reproduces the trial."""
    data = tmp_path / "churn.csv"
    churn.to_csv(data, index=False)
    code = tmp_path / "code"
    summary = _automl(
        server,
        data,
        "churned",
        "--identity-col",
        "customer_id,city",
        "--identity-col",
        "note",
        "--output-dir",
        str(code),
    )
    c = fluent.client()
    params = c.get_run(summary["parent_run_id"]).data.params
    assert params["identity_cols"] == "customer_id,city,note"
    model = modelyard.pyfunc.load_model(summary["best_trial"]["model_uri"])
    assert model.signature is not None
    inputs = {s.name for s in model.signature.inputs}
    assert inputs.isdisjoint({"customer_id", "city", "note"}) and "usage" in inputs
    assert model.predict(churn.drop(columns=["churned"])).size == len(churn)
    logged = c.download_artifacts(summary["parent_run_id"], "data/training_data.csv")
    csv = pd.read_csv(logged)
    assert csv["customer_id"].tolist() == churn["customer_id"].tolist()
    assert csv["city"].tolist() == churn["city"].tolist()
    metrics = _reproduce(summary["best_trial"]["source_path"], server)
    assert metrics["val_f1"] == pytest.approx(summary["best_trial"]["metrics"]["val_f1"])


def test_time_col_from_the_cli_splits_by_time(fluent, server, churn, tmp_path) -> None:
    """--time-col on classification: the earliest rows train, the latest test, trials scored
    on the validation split; the generated script rebuilds the same split and scores."""
    shuffled = churn.sample(frac=1.0, random_state=3)  # the file's order is not time's
    data = tmp_path / "churn.csv"
    shuffled.to_csv(data, index=False)
    summary = _automl(
        server, data, "churned", "--time-col", "signup", "--output-dir", str(tmp_path / "code")
    )
    c = fluent.client()
    params = c.get_run(summary["parent_run_id"]).data.params
    assert params["split"] == "time:signup:0.2/0.2"
    assert params["cv_folds"] == ""  # None: no CV over shuffled rows
    csv = pd.read_csv(c.download_artifacts(summary["parent_run_id"], "data/training_data.csv"))
    when = pd.to_datetime(csv["signup"])
    parts = {p: when[csv["_automl_split"] == p] for p in ("train", "val", "test")}
    assert parts["train"].max() < parts["val"].min() <= parts["val"].max() < parts["test"].min()
    assert len(parts["test"]) == len(churn) // 5
    metrics = _reproduce(summary["best_trial"]["source_path"], server)
    assert metrics["test_f1"] == pytest.approx(summary["best_trial"]["metrics"]["test_f1"])


def test_split_col_from_the_cli_is_the_users_split(fluent, server, churn, tmp_path) -> None:
    """--split-col (the API's split_col, which the CLI lacked): each row goes to the set its
    column names, as logged with the training data."""
    which = [
        "test" if i % 5 == 0 else "validate" if i % 5 == 1 else "train" for i in range(len(churn))
    ]
    data = tmp_path / "churn.csv"
    churn.assign(which=which).to_csv(data, index=False)
    summary = _automl(server, data, "churned", "--split-col", "which")
    c = fluent.client()
    assert c.get_run(summary["parent_run_id"]).data.params["split"] == "user:which"
    csv = pd.read_csv(c.download_artifacts(summary["parent_run_id"], "data/training_data.csv"))
    named = {"train": "train", "validate": "val", "test": "test"}
    assert csv["_automl_split"].tolist() == [named[w] for w in which]


@pytest.mark.parametrize(
    ("extra", "message", "field"),
    [
        (
            ["--identity-col", "Customer_id"],
            "identity_col 'Customer_id' is not a column",
            "identity_col",
        ),
        (
            ["--identity-col", "churned"],
            "identity_col 'churned' is also target_col",
            "identity_col",
        ),
        (
            ["--time-col", "signp"],
            "time_col 'signp' is not a column; did you mean 'signup'?",
            "time_col",
        ),
        (
            ["--time-col", "plan"],
            "time_col: column 'plan' holds 240 value(s) that are no timestamp",
            "time_col",
        ),
    ],
)
def test_bad_identity_or_time_cols_are_refused_naming_the_option(
    server, churn, tmp_path, extra: list[str], message: str, field: str
) -> None:
    data = tmp_path / "churn.csv"
    churn.to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "churned", "--max-trials", "1"]
    done = subprocess.run(  # through main(), which prints a command's error
        [sys.executable, "-m", "modelyard.cli", *args, *extra, "--json", "--uri", server.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and error["field"] == field
    assert message in error["message"]


@pytest.mark.parametrize(
    ("problem", "extra", "message"),
    [
        ("regression", ["--pos-label", "1"], "--pos-label is for classification only"),
        ("forecasting", ["--pos-label", "1"], "--pos-label is for classification only"),
        ("forecasting", ["--exclude-col", "nope"], "--exclude-col is for classification and"),
        ("regression", ["--horizon", "7"], "--horizon is for forecasting only, not regression"),
        ("forecasting", ["--split-col", "day"], "--split-col is for classification and"),
        ("regression", ["--country-code", "US"], "--country-code is for forecasting only"),
    ],
)
def test_options_of_another_problem_are_refused_not_ignored(
    prices, tmp_path, problem: str, extra: list[str], message: str
) -> None:
    """--pos-label with regression, or a misspelt --exclude-col with forecasting, were
    silently ignored: the run went ahead as if they had not been given."""
    data = tmp_path / "prices.csv"
    prices.assign(day=pd.date_range("2024-01-01", periods=len(prices))).to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "price", "--problem", problem]
    if problem == "forecasting":
        args += ["--time-col", "day", "--horizon", "7"]
    done = runner.invoke(app, [*args, *extra, "--uri", "127.0.0.1:1"])
    assert done.exit_code == 2, done.output
    assert message in " ".join(done.output.split())


def test_country_code_from_the_cli_reaches_the_forecast(fluent, server, sales, tmp_path) -> None:
    """--country-code is the forecast's country_code: one it does not know is refused so."""
    data = tmp_path / "sales.csv"
    sales.to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "sales", "--problem", "forecasting"]
    args += ["--time-col", "day", "--horizon", "7", "--max-trials", "1", "--country-code", "XX"]
    done = runner.invoke(app, [*args, "--uri", server.address])
    assert isinstance(done.exception, InvalidArgument), done.output
    assert done.exception.field == "country_code"
    assert fluent.search_runs(search_all_experiments=True).empty
