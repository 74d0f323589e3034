"""`modelyard automl run`: AutoML on a CSV file, with a live progress bar."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import ProgressColumn, Task, TextColumn
from rich.progress_bar import ProgressBar
from rich.text import Text

from modelyard.cli.output import console, print_json, progress, say, table

if TYPE_CHECKING:
    from modelyard.automl.result import SkippedSeries

app = typer.Typer(help="AutoML: a tracked, glass-box baseline model.", no_args_is_help=True)

PROBLEMS = ("classification", "regression", "forecasting")


class _Budget:
    """Time and trial budget of a run, read by the progress columns at every refresh."""

    def __init__(self, minutes: float | None, max_trials: int | None) -> None:
        self.seconds = minutes * 60 if minutes else None
        self.max_trials = max_trials
        self.started = time.monotonic()
        self.trials = 0

    def fraction(self) -> float:
        parts = [0.0]
        if self.seconds:
            parts.append((time.monotonic() - self.started) / self.seconds)
        if self.max_trials:
            parts.append(self.trials / self.max_trials)
        return min(1.0, max(parts))

    def left(self) -> str:
        if not self.seconds:
            return ""
        remaining = max(0.0, self.seconds - (time.monotonic() - self.started))
        return f"{int(remaining // 60)}:{int(remaining % 60):02d} left"


class _BarColumn(ProgressColumn):
    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self.budget = budget

    def render(self, task: Task) -> ProgressBar:
        return ProgressBar(total=1.0, completed=self.budget.fraction(), width=30)


class _TimeLeftColumn(ProgressColumn):
    def __init__(self, budget: _Budget) -> None:
        super().__init__()
        self.budget = budget

    def render(self, task: Task) -> Text:
        return Text(self.budget.left(), style="progress.remaining")


def _parse_list(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@app.command("run")
def run(
    data: Annotated[Path, typer.Option("--data", help="CSV (or Parquet) file with the data.")],
    target: Annotated[str, typer.Option("--target", help="The column to predict.")],
    problem: Annotated[
        str, typer.Option("--problem", help="classification, regression or forecasting.")
    ] = "classification",
    timeout: Annotated[float, typer.Option("--timeout", help="Time budget in minutes.")] = 10.0,
    max_trials: Annotated[
        int | None, typer.Option("--max-trials", help="Stop after this many trials too.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Primary metric (default per problem).")
    ] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="Experiment name.")] = None,
    exclude_frameworks: Annotated[
        list[str] | None,
        typer.Option("--exclude-framework", help="sklearn, lightgbm, xgboost or statsmodels."),
    ] = None,
    exclude_cols: Annotated[
        list[str] | None,
        typer.Option("--exclude-col", help="Columns not to use as features (repeatable, or a,b)."),
    ] = None,
    identity_cols: Annotated[
        list[str] | None,
        typer.Option(
            "--identity-col",
            help="An id column: no feature, kept in the data; forecasting: one series per value.",
        ),
    ] = None,
    pos_label: Annotated[
        str | None,
        typer.Option(
            "--pos-label",
            help="Classification: the class binary metrics score (default: the last label).",
        ),
    ] = None,
    sample_weight_col: Annotated[
        str | None,
        typer.Option(
            "--sample-weight-col",
            help="Classification, regression: each row's weight (numbers >= 0) in fits and "
            "metrics.",
        ),
    ] = None,
    split_col: Annotated[
        str | None,
        typer.Option(
            "--split-col",
            help="Classification, regression: each row's set, train / validate / test.",
        ),
    ] = None,
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="Time (forecasting; else split by it).")
    ] = None,
    horizon: Annotated[int | None, typer.Option("--horizon", help="Forecasting: steps.")] = None,
    frequency: Annotated[
        str, typer.Option("--frequency", help="Forecasting: D, h, W, MS...")
    ] = "D",
    country_code: Annotated[
        str | None,
        typer.Option("--country-code", help="Forecasting: holidays of this country (US, GB...)."),
    ] = None,
    register_model: Annotated[
        str | None, typer.Option("--register-model", help="Register the best model as NAME.")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where to write the trial scripts.")
    ] = None,
    uri: Annotated[
        str | None, typer.Option("--uri", envvar="MODELYARD_URI", help="Server address.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="MODELYARD_TOKEN", help="API token.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run AutoML on a file: every trial becomes a run with its generated source code."""
    import modelyard
    import modelyard.automl
    from modelyard.automl.metrics import primary_metric

    if problem not in PROBLEMS:
        raise typer.BadParameter(f"--problem must be one of {', '.join(PROBLEMS)}")
    if problem == "forecasting" and (time_col is None or horizon is None):
        raise typer.BadParameter("forecasting needs --time-col and --horizon")
    given = {
        "--pos-label": (pos_label is not None, ("classification",)),
        "--sample-weight-col": (sample_weight_col is not None, ("classification", "regression")),
        "--exclude-col": (bool(exclude_cols), ("classification", "regression")),
        "--split-col": (split_col is not None, ("classification", "regression")),
        "--horizon": (horizon is not None, ("forecasting",)),
        "--country-code": (country_code is not None, ("forecasting",)),
    }
    for option, (is_given, problems) in given.items():
        if is_given and problem not in problems:  # else silently ignored: misspelt, unchecked
            raise typer.BadParameter(
                f"{option} is for {' and '.join(problems)} only, not {problem}; leave it out"
            )
    if token:
        os.environ["MODELYARD_TOKEN"] = token
    if uri:
        modelyard.set_tracking_uri(uri)
    budget = _Budget(timeout, max_trials)
    label = f"AutoML {problem}: {target}"
    bar = progress(
        TextColumn("{task.description}", style="bold", markup=False),  # the target: user data
        _BarColumn(budget),
        TextColumn("trials {task.fields[trials]}"),
        TextColumn("best {task.fields[best]}", markup=False),
        _TimeLeftColumn(budget),
        as_json=as_json,
    )
    metric_name = primary_metric(problem, metric)  # refuses an unknown metric before any work
    task = bar.add_task(label, total=1.0, trials=0, best="-")

    def on_trial(event: modelyard.automl.TrialEvent) -> None:
        budget.trials = event.n_done
        best = f"{event.best_value:.4g}" if event.best_value is not None else "-"
        bar.update(task, trials=event.n_done, best=f"{metric_name} {best}")

    common: dict[str, Any] = {
        "primary_metric": metric,
        "timeout_minutes": timeout,
        "max_trials": max_trials,
        "exclude_frameworks": _parse_list(exclude_frameworks),
        "experiment_name": experiment,
        "register_model": register_model,
        "output_dir": output_dir,
        "on_trial": on_trial,
    }
    columns: dict[str, Any] = {
        "exclude_cols": _parse_list(exclude_cols),
        "identity_col": _parse_list(identity_cols),
        "sample_weight_col": sample_weight_col,
        "split_col": split_col,
        "time_col": time_col,  # classification / regression: split by time
    }
    with bar:
        if problem == "classification":
            result = modelyard.automl.classify(
                data, target, pos_label=pos_label, **columns, **common
            )
        elif problem == "regression":
            result = modelyard.automl.regress(data, target, **columns, **common)
        else:
            assert time_col is not None
            assert horizon is not None
            result = modelyard.automl.forecast(
                data,
                target,
                time_col,
                horizon,
                frequency,
                identity_col=_parse_list(identity_cols),
                country_code=country_code,
                **common,
            )
        bar.update(task, completed=1.0)
    best = result.best_trial
    if as_json:
        print_json(
            {
                "parent_run_id": result.parent_run_id,
                "experiment_id": result.experiment_id,
                "primary_metric": result.primary_metric,
                "best_trial": {
                    "number": best.number,
                    "run_id": best.run_id,
                    "model_family": best.model_family,
                    "metrics": best.metrics,
                    "model_uri": best.model_uri,
                    "source_path": str(best.source_path),
                    "source_uri": best.source_uri,
                },
                "trials": len(result.trials),
                "registered_model_version": result.registered_model_version,
                "report_uri": result.report_uri,
                "warnings": result.warnings,
                "skipped_series": result.skipped_series,
            }
        )
        return
    key = f"val_{result.primary_metric}"
    top = result.trials.head(10)
    table(
        f"Trials ({len(result.trials)}), best first by {key}",
        ["trial", "family", "state", key, f"test_{result.primary_metric}", "run"],
        [
            (
                row["number"],
                row["model_family"],
                row["state"],
                _fmt(row.get(key)),
                _fmt(row.get(f"test_{result.primary_metric}")),
                row["run_id"],
            )
            for _, row in top.iterrows()
        ],
    )
    if result.skipped_series:
        _show_skipped(result.skipped_series)
    for warning in result.warnings:
        console.print(Text.assemble(("warning", "yellow"), f" {warning}"))
    say(f"AutoML run   {result.parent_run_id} (experiment {result.experiment_id})")
    score = _fmt(best.metrics.get(key))
    say(f"best         trial {best.number}: {best.model_family}, {key} {score}")
    say(f"model        {best.model_uri}")
    say(f"source       {best.source_path}")
    say(f"report       {result.report_uri}")
    if result.registered_model_version is not None:
        say(f"registered   models:/{register_model}/{result.registered_model_version}")


def _show_skipped(skipped: list[SkippedSeries], most: int = 20) -> None:
    """The series a forecast left out, by id, with their length, the minimum, and why."""
    from modelyard.automl.forecasting import SKIPPED_ARTIFACT

    columns = list(skipped[0].series)
    say(f"Skipped series ({len(skipped)}), AutoML cannot forecast them: no model")
    table(
        None,
        [*columns, "periods", "minimum", "reason"],
        [(*s.series.values(), s.points, s.minimum, s.reason) for s in skipped[:most]],
    )
    if len(skipped) > most:
        say(f"... and {len(skipped) - most} more: see {SKIPPED_ARTIFACT} on the AutoML run")


def _fmt(value: object) -> str:
    if value is None:
        return ""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "" if number != number else f"{number:.4g}"
