"""`modelyard.automl.classify / regress / forecast`: a tracked, glass-box baseline in minutes.

    import modelyard.automl
    result = modelyard.automl.classify(df, target_col="churned", timeout_minutes=5)
    result.best_trial.model_uri        # runs:/<id>/model, with signature and input example
    result.best_trial.source_path      # the trial as a standalone script: read it, change it
    result.trials                      # every trial, best first

One AutoML run holds the data (`data/training_data.csv`, with the split), the data exploration
report and the study summary; each trial is a nested run with train / val / test metrics and its
generated script; the best trial's run also gets the model and its permutation importance.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N803

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

import modelyard.sklearn
from modelyard import fluent
from modelyard.automl import common, dataset, families, features, metrics, profile, search
from modelyard.automl.codegen import Origin
from modelyard.automl.metrics import CLASSIFICATION, REGRESSION
from modelyard.automl.result import AutoMLResult
from modelyard.errors import InvalidArgument
from modelyard.models.signature import column_type

OnTrial = Callable[[search.TrialEvent], None]
CV_MAX_ROWS = 5000  # at most this many train + val rows: trials are scored by 5-fold CV
MIN_ROWS = 20  # rows with a target value, for train, validation and test splits


def classify(
    data: pd.DataFrame | str | Path,
    target_col: str,
    *,
    primary_metric: str | None = None,
    timeout_minutes: float | None = None,
    max_trials: int | None = None,
    exclude_frameworks: str | Iterable[str] | None = None,
    exclude_cols: str | Iterable[str] | None = None,
    identity_col: str | Iterable[str] | None = None,
    pos_label: Any = None,
    sample_weight_col: str | None = None,
    split_col: str | None = None,
    time_col: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    cv_folds: int | str | None = "auto",
    experiment_name: str | None = None,
    register_model: str | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    on_trial: OnTrial | None = None,
) -> AutoMLResult:
    """Find a classifier for `target_col`. Primary metric: f1 (default), roc_auc, log_loss,
    accuracy, precision or recall; binary metrics are for `pos_label` (default: the last label
    in sorted order, e.g. 1 or True). `exclude_cols` are left out of the run altogether;
    `identity_col` (one name or several: a customer or order id) is no feature but stays, as
    given, in the logged training data, to join results back to. The split is random, or the
    user's (`split_col`: train / validate / test per row), or by time (`time_col`, timestamps
    or numbers: the earliest rows train, the latest test; trials are then scored on the
    validation split, as cross-validation would train on the future). `sample_weight_col`
    (as Databricks AutoML's) holds each row's weight (numbers >= 0, none missing): models are
    fit with it and every metric weighs rows by it; it is no feature, and stays in the logged
    training data."""
    return _tabular(CLASSIFICATION, **locals())


def regress(
    data: pd.DataFrame | str | Path,
    target_col: str,
    *,
    primary_metric: str | None = None,
    timeout_minutes: float | None = None,
    max_trials: int | None = None,
    exclude_frameworks: str | Iterable[str] | None = None,
    exclude_cols: str | Iterable[str] | None = None,
    identity_col: str | Iterable[str] | None = None,
    sample_weight_col: str | None = None,
    split_col: str | None = None,
    time_col: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    cv_folds: int | str | None = "auto",
    experiment_name: str | None = None,
    register_model: str | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    on_trial: OnTrial | None = None,
) -> AutoMLResult:
    """Find a regressor for `target_col`. Primary metric: rmse (default), mae or r2.
    `exclude_cols`, `identity_col`, `sample_weight_col`, `split_col` and `time_col` as for
    `classify`."""
    return _tabular(REGRESSION, pos_label=None, **locals())


def forecast(
    data: pd.DataFrame | str | Path,
    target_col: str,
    time_col: str,
    horizon: int,
    frequency: str = "D",
    *,
    primary_metric: str | None = None,
    timeout_minutes: float | None = None,
    max_trials: int | None = None,
    exclude_frameworks: str | Iterable[str] | None = None,
    identity_col: str | Iterable[str] | None = None,
    experiment_name: str | None = None,
    register_model: str | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    on_trial: OnTrial | None = None,
    country_code: str | None = None,
) -> AutoMLResult:
    """Forecast `target_col` `horizon` steps of `frequency` ahead. Primary metric: smape
    (default), mase, mae or rmse. The last `horizon` points are the test set, the `horizon`
    before them the validation set. `identity_col` (one name or several: a store, a product)
    makes it multi-series, as in Databricks AutoML: each series, the rows sharing those
    columns' values, gets its own split and its own model, fitted on its history only; the
    logged model forecasts a row with its series' model, matching ids by value as the
    training data's type (17, 17.0 and "17" are the integer id 17; text ids take text only).
    A trial's metrics are then over
    every series' scored points (each series' metric weighted by its points; parent param
    `series_metrics`), each series' own in the trial's `per_series_metrics.json`. A series
    AutoML cannot forecast (fewer than 2 x horizon + 10 periods, under half its periods with
    a value, or no value in its validation or test period) is skipped, not the run:
    `AutoMLResult.skipped_series` and the run's `data/skipped_series.json` list them, each
    with its reason; only no series left refuses the run. `country_code` (ISO 3166-1
    alpha-2, "US"; Databricks AutoML's) adds that country's public holidays in each period
    (the `holidays` package) as a feature of the lag models (Ridge, LightGBM, XGBoost), a
    setting in each trial's script; a code it does not know is refused before any run."""
    kwargs = dict(locals())
    kwargs["identity_col"] = common.names(identity_col)
    from modelyard.automl import forecasting

    return forecasting.run(**kwargs)


def _cv_folds(cv_folds: int | str | None, n_rows: int, time_col: str | None) -> int | None:
    if time_col is not None and cv_folds not in ("auto", None):
        raise InvalidArgument(
            f"cv_folds {cv_folds!r} with time_col: folds of shuffled rows would train on the "
            "future; leave cv_folds out (trials are scored on the validation split) or pass "
            "split_col",
            field="cv_folds",
        )
    if cv_folds == "auto":
        return 5 if n_rows <= CV_MAX_ROWS and time_col is None else None
    if cv_folds is None:
        return None
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
        raise InvalidArgument("cv_folds must be 'auto', None or an integer >= 2", field="cv_folds")
    if cv_folds > n_rows:  # every fold scores at least one row
        raise InvalidArgument(
            f"cv_folds {cv_folds} is more than the {n_rows} train + validation rows: pass at "
            f"most {n_rows}, 'auto', or None to score on the validation split",
            field="cv_folds",
        )
    return cv_folds


def _rarest_fit_class(
    df: pd.DataFrame, target_col: str, folds: int | None, stratified: bool, seed: int
) -> int:
    """Fewest rows a class has in any set a model is fit on (the train split, or each CV
    fold's training part and their union); a class absent from a fit does not count."""
    if folds is None:
        fits = [df.loc[df[dataset.SPLIT_COL] == "train", target_col]]
    else:
        y = search.cv_rows(df)[target_col]
        split = search.splitter(folds, stratified, seed).split(y.to_frame(), y)
        fits = [y, *(y.iloc[rows] for rows, _ in split)]
    return min(int(f.value_counts().min()) for f in fits)


def _classes(y: pd.Series, pos_label: Any) -> tuple[list[Any], Any]:
    classes = sorted(y.unique().tolist())
    if len(classes) < 2:
        raise InvalidArgument(
            f"the target has {len(classes)} class(es); classification needs at least two",
            field="target_col",
        )
    if pos_label is None:
        return classes, classes[-1] if len(classes) == 2 else None
    if len(classes) > 2:  # it would be logged, and read as the class the metrics are for
        raise InvalidArgument(
            f"pos_label {pos_label!r} is for two classes, and the target has {len(classes)}: "
            "its f1, precision and recall are averages over every class, weighted by its "
            "rows; leave pos_label out, or make the target that class against the rest",
            field="pos_label",
        )
    for c in classes:
        if _same_label(c, pos_label):
            return classes, c
    raise InvalidArgument(f"pos_label {pos_label!r} is not one of {classes}", field="pos_label")


def _majority_pos_label(label: Any, counts: pd.Series, primary: str) -> str:
    """The default pos_label (the last label) is the common class: its f1 / precision / recall
    look excellent for a model that never finds the rare class, which is what one usually
    wants found (fraud, churn, failure)."""
    rare = counts.idxmin()
    share = counts[label] / counts.sum()
    scored = (
        f" ({primary} is the primary metric)" if primary in ("f1", "precision", "recall") else ""
    )
    return (
        f"pos_label defaults to {label!r} (the last label), the common class ({share:.0%} of "
        f"rows): f1, precision and recall{scored} score finding {label!r}, and look good even "
        f"for a model that never predicts {rare!r}; pass pos_label={rare!r} (on the command "
        f"line --pos-label {shlex.quote(str(rare))}) to score the rare class"
    )


def _same_label(label: Any, given: Any) -> bool:
    """`given` names `label` as itself, as its text, or as the same number ("1" for 1 or 1.0):
    a pos_label from the command line is always text."""
    if label == given or str(label) == str(given):
        return True
    try:
        return not isinstance(label, bool | str) and float(given) == float(label)
    except (TypeError, ValueError):
        return False


def _whole_numbers(y: pd.Series) -> pd.Series:
    """Class labels stored as floats only because a value was missing (0.0 / 1.0) as integers."""
    if pd.api.types.is_float_dtype(y) and len(y) and bool((y % 1 == 0).all()):
        return y.astype("int64")
    return y


def _labels(y: pd.Series, target_col: str) -> pd.Series:
    """Class labels: whole numbers stored as floats as integers; other fractional numbers are
    refused, as scikit-learn reads them as a continuous target and fails every model."""
    y = _whole_numbers(y)
    if pd.api.types.is_float_dtype(y):
        shown = [str(v) for v in dict.fromkeys(y[y % 1 != 0].tolist())][:3]
        raise InvalidArgument(
            f"target_col {target_col!r} holds numbers that are not whole, e.g. {shown}, which "
            "cannot be class labels: give the classes as text (df[col].astype(str)) or whole "
            "numbers, or use regress to predict the number",
            field="target_col",
        )
    return y


def _prepare(
    problem: str,
    data: Any,
    target_col: str,
    exclude_cols: str | Iterable[str] | None,
    identity: list[str],
    weight_col: str | None,
    split_col: str | None,
    time_col: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    workdir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dataset.Schema, Path, list[str]]:
    """Load, clean, split, and round-trip through the CSV the trial scripts will read; also
    the features as the user gave them (same rows, same order), for the model's signature."""
    raw = dataset.load(data)
    notes = []
    dataset.require_column(raw, target_col, "target_col")
    if time_col is not None:
        dataset.require_column(raw, time_col, "time_col")
        if split_col is not None or time_col == target_col:
            raise InvalidArgument(
                f"time_col {time_col!r} with "
                + ("split_col: pass one of them" if split_col else "itself as target_col")
                + "; time_col splits the rows by time, split_col as its values say",
                field="time_col",
            )
    missing = int(raw[target_col].isna().sum())
    if missing:
        raw = raw[raw[target_col].notna()]
        notes.append(f"{missing} rows without a {target_col} value were dropped")
    if problem == CLASSIFICATION:
        raw[target_col] = _labels(raw[target_col], target_col)
    drop = [c for c in common.names(exclude_cols) if c != target_col]
    for c in drop:  # a misspelt name would leave in the very column meant to be left out
        dataset.require_column(raw, c, "exclude_cols")
    _check_identity(raw, identity, target_col, drop, split_col)
    if weight_col is not None:
        _check_weight_role(raw, weight_col, target_col, identity, drop, split_col, time_col)
        raw[weight_col] = _sample_weights(raw[weight_col], weight_col)
    splits_by = {c for c in (split_col, time_col) if c is not None}  # dropped once split by
    raw = raw.drop(columns=[c for c in drop if c not in splits_by]).reset_index(drop=True)
    if len(raw) < MIN_ROWS:
        dropped = f" ({missing} without one were left out)" if missing else ""
        raise InvalidArgument(
            f"{len(raw)} rows with a {target_col} value{dropped} are too few to train, validate "
            f"and test: AutoML needs at least {MIN_ROWS}",
            field="data",
        )
    if time_col is not None:
        split = dataset.chronological_split(raw, time_col, val_fraction, test_fraction)
    else:
        split = dataset.assign_split(
            raw, target_col, problem == CLASSIFICATION, val_fraction, test_fraction, seed, split_col
        )
    raw = raw.drop(columns=[c for c in splits_by if c == split_col or c in drop])
    if dataset.SPLIT_COL in raw.columns:  # AutoML's own split would replace it unseen
        raise InvalidArgument(
            f"column {dataset.SPLIT_COL!r} is the name AutoML gives its train / val / test "
            f"split: pass split_col={dataset.SPLIT_COL!r} to split by it (as in data AutoML "
            "logged), or rename it to train on it",
            field="data",
        )
    keep = [str(c) for c in identity] + ([weight_col] if weight_col is not None else [])
    normalized, schema = dataset.normalize(raw, target_col, problem == REGRESSION, keep)
    normalized[dataset.SPLIT_COL] = split.to_numpy()
    schema.dtypes[dataset.SPLIT_COL] = "str"
    csv_path = workdir / "training_data.csv"
    normalized.to_csv(csv_path, index=False)
    given = raw.drop(columns=[target_col]).rename(columns=str)
    return schema.read(csv_path), given, schema, csv_path, notes


def _check_identity(
    raw: pd.DataFrame,
    identity: list[str],
    target_col: str,
    excluded: list[str],
    split_col: str | None,
) -> None:
    """Identity columns must be columns (a misspelt one would be trained on, as with
    exclude_cols) and none of the columns with another role."""
    roles: dict[str, Collection[str | None]] = {
        "target_col": [target_col],
        "split_col": [split_col],
        "exclude_cols": excluded,
    }
    for c in identity:
        dataset.require_own_column(
            raw,
            c,
            "identity_col",
            roles,
            "an identity column is kept in the outputs and used for nothing else",
        )
    dataset.require_once(identity, "identity_col")


def _check_weight_role(
    raw: pd.DataFrame,
    weight_col: str,
    target_col: str,
    identity: list[str],
    excluded: list[str],
    split_col: str | None,
    time_col: str | None,
) -> None:
    """The weight column must be a column (misspelt, the weights would be a feature) with no
    other role."""
    roles: dict[str, Collection[str | None]] = {
        "target_col": [target_col],
        "identity_col": identity,
        "exclude_cols": excluded,
        "split_col": [split_col],
        "time_col": [time_col],
    }
    dataset.require_own_column(
        raw,
        weight_col,
        "sample_weight_col",
        roles,
        "the weight column weighs rows and is used for nothing else",
    )


def _sample_weights(col: pd.Series, name: str) -> pd.Series:
    """The weights as float64: numbers, none missing, none negative or infinite, not all zero.
    A fit would fail every trial on them, or (a missing weight) quietly count the row as 0."""
    numbers = (
        pd.to_numeric(col, errors="coerce")
        if not pd.api.types.is_bool_dtype(col)
        else pd.Series(float("nan"), index=col.index)
    ).astype("float64")
    rows = {
        "missing": col.isna(),
        "not a number": numbers.isna() & col.notna(),
        "negative": numbers < 0,
        "infinite": numbers.abs() == float("inf"),
    }
    for what, bad in rows.items():
        if bad.any():
            shown = [str(v) for v in dict.fromkeys(col[bad].tolist())][:3]
            raise InvalidArgument(
                f"sample_weight_col {name!r} has {int(bad.sum())} row(s) whose weight is "
                f"{what}, e.g. {shown}: each row needs a weight, a finite number >= 0 (0 "
                "leaves the row out); fix those rows or drop them",
                field="sample_weight_col",
            )
    if not (numbers > 0).any():
        raise InvalidArgument(
            f"sample_weight_col {name!r} is 0 in every row: no row would count; give the rows "
            "to learn from a weight above 0",
            field="sample_weight_col",
        )
    return numbers


def _no_features(
    dropped: dict[str, str],
    target_col: str,
    exclude_cols: str | Iterable[str] | None,
    identity: list[str],
    weight_col: str | None,
    split_col: str | None,
) -> InvalidArgument:
    """Why no column is left to learn from, and what to do: 'no usable feature columns: {}'
    said neither when every column had been set aside."""
    unused = [f"{c!r} ({kind})" for c, kind in dropped.items()]
    set_aside = {
        "exclude_cols": [c for c in common.names(exclude_cols) if c != target_col],
        "identity_col": identity,
        "sample_weight_col": [weight_col] if weight_col is not None else [],
        "split_col": [split_col] if split_col is not None else [],
    }
    parts = [f"{role} {names}" for role, names in set_aside.items() if names]
    why = []
    if unused:
        why.append(f"the columns left carry nothing to learn from: {', '.join(unused)}")
    if parts:
        why.append(f"set aside as {', '.join(parts)}")
    return InvalidArgument(
        f"no feature column to predict {target_col!r} from: {'; '.join(why) or 'no columns'}; "
        "add columns to learn from, or set fewer aside",
        field="data",
    )


def _input_example(given: pd.DataFrame, df: pd.DataFrame, rows: Any, columns: list[str]) -> Any:
    """Rows of the user's own columns and types (a bool stays bool), so the signature accepts
    the frame the model was trained from; a column a signature cannot describe as given
    (a category, time-zone-aware timestamps) is taken as the training CSV has it."""
    out = {}
    for c in columns:
        col = given.loc[rows, c]
        try:
            column_type(col.dtype)
            usable = not isinstance(col.dtype, pd.DatetimeTZDtype)
        except (InvalidArgument, TypeError):
            usable = False
        out[c] = col if usable else df.loc[rows, c]
    return pd.DataFrame(out)


def _tabular(
    problem: str,
    data: Any,
    target_col: str,
    *,
    primary_metric: str | None,
    timeout_minutes: float | None,
    max_trials: int | None,
    exclude_frameworks: str | Iterable[str] | None,
    exclude_cols: str | Iterable[str] | None,
    identity_col: str | Iterable[str] | None,
    pos_label: Any,
    sample_weight_col: str | None,
    split_col: str | None,
    time_col: str | None,
    val_fraction: float,
    test_fraction: float,
    cv_folds: int | str | None,
    experiment_name: str | None,
    register_model: str | None,
    seed: int,
    output_dir: str | Path | None,
    on_trial: OnTrial | None,
) -> AutoMLResult:
    started = time.monotonic()
    primary = metrics.primary_metric(problem, primary_metric)
    excluded = common.excluded_frameworks(exclude_frameworks)
    common.check_seed(seed)
    common.registered_model_name(register_model)
    total, timeout = common.budget_seconds(timeout_minutes, max_trials)
    workdir = common.output_dir(output_dir)
    identity = common.names(identity_col)
    kept = [str(c) for c in identity]  # as the normalized frame names columns
    weight = sample_weight_col
    df, given, schema, csv_path, notes = _prepare(
        problem,
        data,
        target_col,
        exclude_cols,
        identity,
        weight,
        split_col,
        time_col,
        val_fraction,
        test_fraction,
        seed,
        workdir,
    )
    not_features = [*kept, *([weight] if weight is not None else [])]
    feature_frame = df.drop(columns=[target_col, dataset.SPLIT_COL, *not_features])
    types = profile.detect_types(feature_frame)
    plan = features.plan(types)
    if not plan.columns:
        raise _no_features(plan.dropped, target_col, exclude_cols, kept, weight, split_col)
    prof = profile.profile(
        df.drop(columns=[dataset.SPLIT_COL, *not_features]), target_col, problem, types
    )
    fit_rows = int((df[dataset.SPLIT_COL] != "test").sum())
    folds = _cv_folds(cv_folds, fit_rows, time_col)
    if split_col is not None:
        dataset.check_split(df[dataset.SPLIT_COL], split_col, folds)
    classes, label = (None, None)
    imbalanced, stratified, rarest = False, False, 0
    if problem == REGRESSION and df[target_col].nunique() < 2:  # as one class is refused
        raise InvalidArgument(
            f"target_col {target_col!r} is {df[target_col].iloc[0]} in every row: there is "
            "nothing to predict (every model scores perfectly, and r2 is undefined); check the "
            "column, and the rows with a value",
            field="target_col",
        )
    if problem == CLASSIFICATION:
        classes, label = _classes(df[target_col], pos_label)
        counts = df[target_col].value_counts()
        imbalanced = bool(counts.min() / counts.max() < 0.5)
        if pos_label is None and imbalanced and len(classes) == 2 and label == counts.idxmax():
            notes.append(_majority_pos_label(label, counts, primary))
        fit_counts = df.loc[df[dataset.SPLIT_COL] != "test", target_col].value_counts()
        if len(fit_counts) < 2:  # every model then fails ("only one class"), and so the run
            absent = ", ".join(
                f"{c!r} ({int(counts[c])} row(s))" for c in classes[:5] if c not in fit_counts
            )
            raise InvalidArgument(
                f"the rows models are fit on (train and validation) hold one class, "
                f"{fit_counts.index[0]!r}: the others are all in the test split: {absent}; add "
                "rows of those classes, or choose each row's split with split_col",
                field="target_col",
            )
        stratified = folds is not None and int(fit_counts.min()) >= folds
        rare = {k: int(n) for k, n in fit_counts.items() if folds is not None and n < folds}
        if rare:
            notes.append(
                f"classes {rare} have fewer train + validation rows than the {folds} CV folds: "
                "folds are not stratified, and scores for those classes rest on a row or two; "
                "add rows of those classes, or merge them into others"
            )
        rarest = _rarest_fit_class(df, target_col, folds, stratified, seed)
    ctx = families.Context(
        problem=problem,
        n_rows=len(df),
        n_classes=len(classes or []),
        imbalanced=imbalanced,
        rarest_fit_class=rarest,
        seed=seed,
        n_jobs=1 if df.size <= 2_000_000 else -1,
        weighted=weight is not None,
    )
    candidates = families.available(ctx, excluded)
    notes += families.unweighted_notes(ctx, excluded)
    notes += families.too_many_rows_notes(ctx, excluded)
    short = [f.name for f in candidates if f.too_few_class_rows(ctx)]
    candidates = [f for f in candidates if f.name not in short]
    if short:
        notes.append(
            f"{', '.join(short)} left out: a class has only {rarest} row(s) in a set a model "
            f"is fit on, and calibrating probabilities needs {families.CALIBRATION_CLASS_ROWS}; "
            "add rows of the rare classes to include it"
        )
    if not candidates:
        raise InvalidArgument(
            f"exclude_frameworks {list(excluded)} leaves no model family for {problem}",
            field="exclude_frameworks",
        )
    exp_id = common.experiment_id(experiment_name)
    params = {
        "problem_type": problem,
        "target_col": target_col,
        "primary_metric": primary,
        "timeout_minutes": timeout_minutes,
        "max_trials": max_trials,
        "exclude_frameworks": ",".join(excluded),
        "model_families": ",".join(f.name for f in candidates),
        "cv_folds": folds,
        "split": f"user:{split_col}"
        if split_col
        else f"time:{time_col}:{val_fraction}/{test_fraction}"
        if time_col
        else f"random:{val_fraction}/{test_fraction}",
        "identity_cols": ",".join(kept),
        "sample_weight_col": weight or "",
        "seed": seed,
        "n_rows": len(df),
        "n_features": len(plan.columns),
        "pos_label": label,
    }
    with common.start_parent(problem, target_col, exp_id, params) as parent:
        common.log_data(
            df,
            csv_path,
            Path(str(data)).stem if isinstance(data, str | Path) else "training_data",
            target_col,
        )
        report_uri = common.log_exploration(prof, f"Data exploration: {target_col} ({problem})")
        s = search.TabularSearch(
            problem=problem,
            primary=primary,
            maximize=metrics.maximize(problem, primary),
            families=candidates,
            ctx=ctx,
            origin=Origin(fluent.get_tracking_uri(), exp_id, parent.info.run_id, -1, ""),
            output_dir=workdir,
            seed=seed,
            df=df,
            schema=schema,
            target_col=target_col,
            plan=plan,
            classes=classes,
            pos_label=label,
            cv_folds=folds,
            stratified=stratified,
            weight_col=weight,
        )
        remaining = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
        enqueue = [f.enqueued(ctx) for f in candidates]
        tuned = search.run(s, s.objective, remaining, max_trials, on_trial, enqueue)
        held_out = df[df[dataset.SPLIT_COL] == ("val" if folds is None else "test")]

        def log_model(model: Any, run_id: str, fit_frame: pd.DataFrame) -> tuple[str, int | None]:
            family = s.records[s.best.number].framework
            example = _input_example(given, df, fit_frame.index[:5], plan.columns)
            info = modelyard.sklearn.log_model(
                model,
                "model",
                input_example=example,
                run_id=run_id,
                registered_model_name=register_model,
                pip_requirements=common.requirements(family),
            )
            return info.model_uri, info.registered_model_version

        def score(model: Any, X: pd.DataFrame, y: pd.Series) -> float:
            weights = None if weight is None else df.loc[X.index, weight]  # rows kept by index
            return s.scores(model, X, y, [primary], weights)[primary]

        return common.finish(
            s,
            tuned,
            log_model=log_model,
            explain_frame=(held_out[plan.columns], held_out[target_col]),
            score=score,
            report_uri=report_uri,
            warnings=notes + [w.message for w in prof.warnings],
            deadline=None if total is None else started + total - 2.0,
        )
