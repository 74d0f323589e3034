"""`modelyard automl run` on a CSV file: a progress bar, then the trials and the best one."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from modelyard.cli import app

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
