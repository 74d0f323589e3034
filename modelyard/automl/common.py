"""What every AutoML problem type shares: options, the parent run, and wrapping up the result."""

# X and y are named as scikit-learn names them.
# ruff: noqa: N806

from __future__ import annotations

import json
import math
import numbers
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import pandas as pd

import modelyard
from modelyard import fluent, tuning
from modelyard.automl import explain, report
from modelyard.automl.families import FRAMEWORKS
from modelyard.automl.profile import DataProfile
from modelyard.automl.result import AutoMLResult, BestTrial
from modelyard.automl.search import Search
from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.services.registry.names import model_name

DEFAULT_TIMEOUT_MINUTES = 10.0
# Time kept back from the search for logging the best model and explaining it.
_RESERVE_FRACTION = 0.1
_RESERVE_MAX_SECONDS = 20.0
MAX_SEED = 2**32 - 1


def budget_seconds(
    timeout_minutes: float | None, max_trials: int | None
) -> tuple[float | None, float | None]:
    """(whole budget, search budget) in seconds; None without a time limit (max_trials only)."""
    if timeout_minutes is not None and not (
        _number(timeout_minutes) and math.isfinite(timeout_minutes) and timeout_minutes > 0
    ):
        raise InvalidArgument(
            f"timeout_minutes must be a positive number of minutes, not {timeout_minutes!r}; "
            "for no time limit, pass max_trials alone",
            field="timeout_minutes",
        )
    if max_trials is not None and not (whole_number(max_trials) and max_trials >= 1):
        raise InvalidArgument(
            f"max_trials must be a whole number, at least 1, not {max_trials!r}",
            field="max_trials",
        )
    if timeout_minutes is None:
        if max_trials is not None:
            return None, None
        timeout_minutes = DEFAULT_TIMEOUT_MINUTES
    total = timeout_minutes * 60
    return total, total - min(_RESERVE_MAX_SECONDS, _RESERVE_FRACTION * total)


def _number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole_number(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_seed(seed: object) -> None:
    """A seed every library AutoML seeds takes (numpy's and scikit-learn's: 0 to 2**32 - 1)."""
    if not (whole_number(seed) and 0 <= cast(int, seed) <= MAX_SEED):
        raise InvalidArgument(
            f"seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}", field="seed"
        )


def names(value: str | Iterable[Any] | None) -> list[Any]:
    """A list of names given as one name or several: a single string is one name, not its
    letters (exclude_cols="plan" once read as the columns 'p', 'l', 'a', 'n')."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def excluded_frameworks(exclude: str | Iterable[str] | None) -> tuple[str, ...]:
    names_ = tuple(str(f).lower() for f in names(exclude))
    unknown = [n for n in names_ if n not in FRAMEWORKS]
    if unknown:
        raise InvalidArgument(
            f"exclude_frameworks: unknown {unknown}; frameworks are {', '.join(FRAMEWORKS)}",
            field="exclude_frameworks",
        )
    return names_


def registered_model_name(name: str | None) -> str | None:
    """`register_model` checked by the registry's rule before the search: refused only when the
    best model is registered, a bad name cost the whole budget."""
    return None if name is None else model_name("register_model", name)


def output_dir(path: str | Path | None) -> Path:
    if path is None:
        return Path(tempfile.mkdtemp(prefix="modelyard-automl-"))
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def experiment_id(name: str | None) -> str:
    """The named experiment (created if missing), or the active one; global state is untouched."""
    return tuning._experiment_id(name, None)


def requirements(framework: str) -> list[str]:
    out = []
    for package in ("scikit-learn", "numpy", "pandas", "modelyard", framework):
        if package == "sklearn":
            continue
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            out.append(package)
    return list(dict.fromkeys(out))


def start_parent(
    problem: str, target_col: str, exp_id: str, params: dict[str, Any]
) -> fluent.ActiveRun:
    run = fluent.start_run(
        run_name=f"automl-{problem}-{target_col}"[:250],
        experiment_id=exp_id,
        nested=True,
        tags={
            "modelyard.automl.role": "parent",
            "modelyard.automl.problem_type": problem,
            "modelyard.automl.target_col": target_col,
        },
    )
    fluent.log_params({k: "" if v is None else v for k, v in params.items()})
    return run


def log_data(df: pd.DataFrame, csv_path: Path, name: str, target_col: str) -> None:
    fluent.log_artifact(csv_path, "data")
    dataset = modelyard.data.from_pandas(df, source=csv_path.name, name=name, targets=target_col)
    fluent.log_input(dataset, context="training")


def log_exploration(prof: DataProfile, title: str) -> str:
    fluent.log_text(report.render(prof, title), "exploration/data_exploration.html")
    fluent.log_dict(json.loads(json.dumps(prof.to_dict(), default=str)), "exploration/profile.json")
    fluent.set_tags(
        {
            "modelyard.automl.warnings": str(len(prof.warnings)),
            "modelyard.automl.report": "exploration/data_exploration.html",
        }
    )
    return "exploration/data_exploration.html"


def trials_frame(search: Search, result: tuning.TuningResult) -> pd.DataFrame:
    rows = []
    for t in result.study.get_trials(deepcopy=False, states=tuning.FINISHED_STATES):
        record = search.records.get(t.number)
        rows.append(
            {
                "number": t.number,
                "run_id": record.run_id if record else result.trial_run_ids.get(t.number),
                "model_family": record.family if record else t.params.get("model_family"),
                "framework": record.framework if record else None,
                "state": t.state.name,
                f"val_{search.primary}": t.value,
                "duration_seconds": t.duration.total_seconds() if t.duration else None,
                **(record.metrics if record else {}),
                "params": {k: v for k, v in t.params.items() if k != "model_family"},
                "source_path": str(record.source_path) if record else None,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    key = f"val_{search.primary}"
    return frame.sort_values(key, ascending=not search.maximize, na_position="last").reset_index(
        drop=True
    )


def finish(
    search: Search,
    result: tuning.TuningResult,
    *,
    log_model: Callable[[Any, str, pd.DataFrame], tuple[str, int | None]],
    explain_frame: tuple[pd.DataFrame, pd.Series] | None,
    score: Callable[[Any, pd.DataFrame, pd.Series], float] | None,
    report_uri: str,
    warnings: list[str],
    deadline: float | None = None,
) -> AutoMLResult:
    """Log the best model (and register it), explain it, and describe the run."""
    best = search.best
    if best.model is None or best.number not in search.records:
        # Not len(study.trials): that counts defaults enqueued but never started.
        ran = len(result.study.get_trials(deepcopy=False, states=tuning.FINISHED_STATES))
        raise FailedPrecondition(
            f"no AutoML trial finished (of {ran} run): see the failed trial runs "
            f"under run {search.origin.parent_run_id} (tag optuna.fail_reason), or allow more time"
        )
    record = search.records[best.number]
    model_uri, version_number = log_model(best.model, record.run_id, best.fit_frame)
    client = fluent.client()
    if explain_frame is not None and score is not None:
        X, y = explain_frame
        scorer = explain.scorer(score, search.maximize)
        seconds = None if deadline is None else max(0.0, deadline - time.monotonic())
        importances = explain.permutation_importance(
            best.model, X, y, scorer, seed=search.seed, seconds=seconds
        )
        client.log_dict(record.run_id, importances, "explanations/permutation_importance.json")
        client.log_text(
            record.run_id,
            explain.render(importances, search.primary),
            "explanations/permutation_importance.html",
        )
    parent = search.origin.parent_run_id
    fluent.log_metrics({k: v for k, v in record.metrics.items() if not math.isnan(v)})
    fluent.set_tags(
        {
            "modelyard.automl.best_run_id": record.run_id,
            "modelyard.automl.best_model_uri": model_uri,
            "modelyard.automl.best_model_family": record.family,
        }
    )
    study_trial = result.study.trials[best.number]
    best_trial = BestTrial(
        number=best.number,
        run_id=record.run_id,
        model_family=record.family,
        metrics=dict(record.metrics),
        params={k: v for k, v in study_trial.params.items() if k != "model_family"},
        model_uri=model_uri,
        source_path=record.source_path,
        source_uri=f"runs:/{record.run_id}/{record.source_artifact}",
    )
    return AutoMLResult(
        problem_type=search.problem,
        primary_metric=search.primary,
        experiment_id=search.origin.experiment_id,
        parent_run_id=parent,
        best_trial=best_trial,
        trials=trials_frame(search, result),
        output_dir=search.output_dir,
        report_uri=f"runs:/{parent}/{report_uri}",
        registered_model_version=version_number,
        warnings=warnings,
    )
