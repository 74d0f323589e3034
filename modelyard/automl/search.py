"""The search: an Optuna study over model families and their hyperparameters, every trial a run.

Each trial picks a family and its settings, writes its standalone script (logged on the trial's
run as `code/trial_<n>_<family>.py`), trains and evaluates exactly as the script does, and logs
train / validation / test metrics. The study runs through `modelyard.tuning`, so trials are
nested runs of the AutoML run, which also gets the study summary and parameter importance.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N803, N806

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import pandas as pd

from modelyard import fluent, tuning
from modelyard.automl import codegen, families, features
from modelyard.automl.dataset import SPLIT_COL, Schema
from modelyard.automl.deadline import OutOfTime, interrupt_at
from modelyard.automl.families import Context
from modelyard.automl.metrics import CLASSIFICATION
from modelyard.automl.metrics import classification as classification_scores
from modelyard.automl.metrics import regression as regression_scores


class FamilyLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def framework(self) -> str: ...


@dataclass(frozen=True)
class TrialEvent:
    """What a progress display needs after each trial."""

    number: int
    family: str
    state: str
    value: float | None
    best_value: float | None
    n_done: int
    elapsed_seconds: float


@dataclass
class TrialRecord:
    number: int
    run_id: str
    family: str
    framework: str
    spec: families.Spec | None
    metrics: dict[str, float]
    source_path: Path
    source_artifact: str


@dataclass
class Best:
    value: float = math.nan
    number: int = -1
    model: Any = None
    fit_frame: pd.DataFrame | None = None


@dataclass
class Search:
    """State shared by every trial of one AutoML run."""

    problem: str
    primary: str
    maximize: bool
    families: list[Any]  # FamilyLike: tabular Family or forecasting ForecastFamily
    ctx: Context  # not families.Context: the field above hides the module in this class
    origin: codegen.Origin  # trial_number / trial_run_id are filled per trial
    output_dir: Path
    seed: int
    records: dict[int, TrialRecord] = field(default_factory=dict)
    best: Best = field(default_factory=Best)
    deadline: float | None = None  # time.monotonic() when the search must stop

    def check_time(self) -> None:
        """Stop a trial that would run past the budget (its run ends KILLED, state PRUNED), as
        the deadline's timer does: `run_trial` records it, once the timer is disarmed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise OutOfTime()

    def better(self, value: float) -> bool:
        if math.isnan(self.best.value):
            return True
        return value > self.best.value if self.maximize else value < self.best.value


def cv_rows(df: pd.DataFrame) -> pd.DataFrame:
    """What CV folds split: the train rows, then the validation rows."""
    return pd.concat([df[df[SPLIT_COL] == "train"], df[df[SPLIT_COL] == "val"]])


def fold_mean(values: list[float]) -> float:
    """A metric's mean over the CV folds where it is defined (ROC AUC is not in a fold holding
    one class: with a rare class, one such fold made every trial's value NaN, and every trial
    failed); NaN if it is defined in none. The generated scripts compute the same."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def splitter(cv_folds: int, stratified: bool, seed: int) -> Any:
    """The CV folds every trial is scored on (the generated scripts write the same)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    kind = StratifiedKFold if stratified else KFold
    return kind(n_splits=cv_folds, shuffle=True, random_state=seed)


@dataclass
class TabularSearch(Search):
    df: pd.DataFrame = field(default_factory=pd.DataFrame)
    schema: Schema | None = None
    target_col: str = ""
    plan: features.FeaturePlan | None = None
    classes: list[Any] | None = None
    pos_label: Any = None
    cv_folds: int | None = None
    stratified: bool = False
    weight_col: str | None = None  # each row's sample weight, in fits and in metrics

    # -- evaluation, mirrored line by line in the generated script --------------------------

    def pipeline(self, spec: families.Spec) -> Any:
        from sklearn.pipeline import Pipeline

        assert self.plan is not None
        return Pipeline(
            [("preprocess", features.build(self.plan)), ("model", families.estimator(spec))]
        )

    def weights(self, part: pd.DataFrame) -> pd.Series | None:
        return None if self.weight_col is None else part[self.weight_col]

    def fit(self, spec: families.Spec, X: pd.DataFrame, y: pd.Series, w: Any) -> Any:
        """The pipeline fit on (X, y), each row weighing `w` (None: once)."""
        weighted = {} if w is None else {"model__sample_weight": np.asarray(w)}
        return self.pipeline(spec).fit(X, y, **weighted)

    def scores(
        self,
        model: Any,
        X: pd.DataFrame,
        y: pd.Series,
        names: list[str] | None = None,
        weights: pd.Series | None = None,
    ) -> dict[str, float]:
        features = model[:-1].transform(X)  # preprocess once for predict and predict_proba
        estimator = model[-1]
        w = None if weights is None else np.asarray(weights)
        if self.problem != CLASSIFICATION:
            return regression_scores(y, estimator.predict(features), w)
        assert self.classes is not None
        proba = pd.DataFrame(estimator.predict_proba(features), columns=list(estimator.classes_))
        proba = proba.reindex(columns=self.classes, fill_value=0.0).to_numpy()
        predicted = estimator.predict(features)
        return classification_scores(y, predicted, proba, self.classes, self.pos_label, names, w)

    def folds(self) -> Any:
        assert self.cv_folds is not None
        return splitter(self.cv_folds, self.stratified, self.seed)

    def evaluate(self, spec: families.Spec) -> tuple[Any, dict[str, float], pd.DataFrame]:
        assert self.plan is not None
        cols, target = self.plan.columns, self.target_col
        parts = {p: self.df[self.df[SPLIT_COL] == p] for p in ("train", "val", "test")}
        metrics: dict[str, float] = {}
        if self.cv_folds is None:
            self.check_time()
            train = parts["train"]
            model = self.fit(spec, train[cols], train[target], self.weights(train))
            for name, part in parts.items():
                scores = self.scores(model, part[cols], part[target], None, self.weights(part))
                metrics.update({f"{name}_{k}": v for k, v in scores.items()})
            return model, metrics, parts["train"]
        fit = cv_rows(self.df)
        X, y, w = fit[cols], fit[target], self.weights(fit)
        fold_scores = []
        for fit_rows, score_rows in self.folds().split(X, y):
            self.check_time()
            fold_w, score_w = (None, None) if w is None else (w.iloc[fit_rows], w.iloc[score_rows])
            model = self.fit(spec, X.iloc[fit_rows], y.iloc[fit_rows], fold_w)
            fold_scores.append(
                self.scores(model, X.iloc[score_rows], y.iloc[score_rows], None, score_w)
            )
        metrics.update({f"val_{k}": fold_mean([s[k] for s in fold_scores]) for k in fold_scores[0]})
        self.check_time()
        model = self.fit(spec, X, y, w)
        for name, part in (("train", fit), ("test", parts["test"])):
            scores = self.scores(model, part[cols], part[target], None, self.weights(part))
            metrics.update({f"{name}_{k}": v for k, v in scores.items()})
        return model, metrics, fit

    def source(
        self, spec: families.Spec, family: str, origin: codegen.Origin, filename: str
    ) -> str:
        assert self.plan is not None
        assert self.schema is not None
        return codegen.tabular(
            origin=origin,
            problem=self.problem,
            family=family,
            spec=spec,
            plan=self.plan,
            schema=self.schema,
            target_col=self.target_col,
            classes=self.classes,
            pos_label=self.pos_label,
            cv_folds=self.cv_folds,
            stratified=self.stratified,
            seed=self.seed,
            filename=filename,
            weight_col=self.weight_col,
        )

    # -- one trial -----------------------------------------------------------------------------

    def suggest(self, trial: optuna.Trial) -> tuple[families.Family, families.Spec]:
        names = [f.name for f in self.families]
        family = self.families[names.index(trial.suggest_categorical("model_family", names))]
        return family, family.suggest(trial, self.ctx)

    def objective(self, trial: optuna.Trial) -> float:
        family, spec = self.suggest(trial)
        return run_trial(
            self,
            trial,
            family,
            spec,
            lambda: self.evaluate(spec),
            lambda origin, filename: self.source(spec, family.name, origin, filename),
            estimator=spec.cls,
        )


def run_trial(
    search: Search,
    trial: optuna.Trial,
    family: FamilyLike,
    spec: families.Spec | None,
    evaluate: Callable[[], tuple[Any, dict[str, float], pd.DataFrame]],
    source: Callable[[codegen.Origin, str], str],
    estimator: str,
) -> float:
    """Log the trial's script and tags, evaluate, log the metrics, remember the best model.

    Runs inside the trial's run (modelyard.tuning made it the active run).
    """
    run = fluent.active_run()
    assert run is not None
    rid = run.info.run_id
    origin = codegen.Origin(
        search.origin.tracking_uri,
        search.origin.experiment_id,
        search.origin.parent_run_id,
        trial.number,
        rid,
    )
    filename = f"trial_{trial.number:03d}_{family.name}.py"
    code = source(origin, filename)
    path = search.output_dir / filename
    path.write_text(code)
    artifact = f"code/{filename}"
    fluent.log_text(code, artifact)
    fluent.set_tags(
        {
            "modelyard.automl.model_family": family.name,
            "modelyard.automl.framework": family.framework,
            "modelyard.automl.estimator": estimator,
            "modelyard.automl.source": artifact,
        }
    )
    search.records[trial.number] = TrialRecord(
        trial.number, rid, family.name, family.framework, spec, {}, path, artifact
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with interrupt_at(search.deadline):  # a long fit stops at the deadline
                model, metrics, fit_frame = evaluate()
        except OutOfTime:
            fluent.set_tag("modelyard.automl.stopped", "the time budget ran out mid-trial")
            raise optuna.TrialPruned("the time budget ran out") from None
    if caught:  # convergence and deprecation notes: on the run, not on the console
        messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        fluent.set_tag("modelyard.automl.warnings", " | ".join(messages)[:8000])
    search.records[trial.number].metrics = metrics
    key = f"val_{search.primary}"
    value = metrics[key]
    fluent.log_metrics({k: v for k, v in metrics.items() if k != key and not math.isnan(v)})
    if not math.isnan(value) and search.better(value):
        search.best = Best(value, trial.number, model, fit_frame)
    return value


def study_for(search: Search, enqueue: list[dict[str, Any]]) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=search.seed,
            multivariate=True,
            group=True,
            n_startup_trials=max(10, len(search.families)),
        )
    study = optuna.create_study(
        direction="maximize" if search.maximize else "minimize", sampler=sampler
    )
    for params in enqueue:
        study.enqueue_trial(params)
    return study


def run(
    search: Search,
    objective: Callable[[optuna.Trial], float],
    timeout_seconds: float | None,
    max_trials: int | None,
    on_trial: Callable[[TrialEvent], None] | None,
    enqueue: list[dict[str, Any]],
) -> tuning.TuningResult:
    """Run the study: first each family's defaults (`enqueue`), then TPE's suggestions."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_for(search, enqueue)
    started = time.monotonic()
    if timeout_seconds is not None:
        search.deadline = started + timeout_seconds

    def progress(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if on_trial is None:
            return
        record = search.records.get(t.number)
        best = None if math.isnan(search.best.value) else search.best.value
        on_trial(
            TrialEvent(
                number=t.number,
                family=record.family if record else str(t.params.get("model_family", "")),
                state=t.state.name,
                value=t.value,
                best_value=best,
                n_done=len(s.get_trials(deepcopy=False, states=tuning.FINISHED_STATES)),
                elapsed_seconds=time.monotonic() - started,
            )
        )

    try:
        return tuning.optimize(
            study,
            objective,
            n_trials=max_trials,
            timeout=timeout_seconds,
            catch=(Exception,),
            callbacks=[progress],
            metric_name=f"val_{search.primary}",
            parent_run_id=search.origin.parent_run_id,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
