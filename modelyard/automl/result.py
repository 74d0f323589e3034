"""What an AutoML run returns: the best trial and every trial as a DataFrame."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class BestTrial:
    number: int
    run_id: str
    model_family: str
    metrics: dict[str, float]
    params: dict[str, Any]
    model_uri: str
    source_path: Path  # the generated script, on this machine
    source_uri: str  # the same script as an artifact of the trial's run

    @property
    def run_uri(self) -> str:
        return f"runs:/{self.run_id}"


@dataclass(frozen=True)
class SkippedSeries:
    """A series of a multi-series forecast left out: too short, too sparse for the frequency,
    or no value in a held-out period (Databricks AutoML skips such series too, rather than
    refusing every other series for them)."""

    series: dict[str, Any]  # identity column -> this series' value
    points: int  # periods on the series' grid
    minimum: int  # periods a series needs: 2 x horizon held out, and history to fit on
    reason: str  # why this series was skipped, in words


@dataclass(frozen=True)
class AutoMLResult:
    problem_type: str
    primary_metric: str
    experiment_id: str
    parent_run_id: str
    best_trial: BestTrial
    trials: pd.DataFrame  # one row per trial, best first
    output_dir: Path
    report_uri: str
    registered_model_version: int | None = None
    warnings: list[str] = field(default_factory=list)
    skipped_series: list[SkippedSeries] = field(default_factory=list)  # forecast() only

    @property
    def best_score(self) -> float:
        return self.best_trial.metrics[f"val_{self.primary_metric}"]

    def __repr__(self) -> str:
        return (
            f"AutoMLResult({self.problem_type}, best={self.best_trial.model_family} "
            f"val_{self.primary_metric}={self.best_score:.4g}, trials={len(self.trials)}, "
            f"run={self.parent_run_id})"
        )
