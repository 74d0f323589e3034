"""The metrics AutoML computes and optimizes, their directions, and the defaults per problem.

Metric keys on trial runs are `<split>_<name>`: `val_f1`, `test_roc_auc`, `train_rmse`, ...
Binary f1/precision/recall are for `pos_label`; multiclass ones are support-weighted averages;
multiclass ROC AUC is one-vs-rest, weighted. The generated trial scripts compute the same numbers
with the same scikit-learn calls, written out in full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument

CLASSIFICATION = "classification"
REGRESSION = "regression"
FORECASTING = "forecasting"

# name -> True when larger is better
DIRECTIONS: dict[str, dict[str, bool]] = {
    CLASSIFICATION: {
        "f1": True,
        "roc_auc": True,
        "log_loss": False,
        "accuracy": True,
        "precision": True,
        "recall": True,
    },
    REGRESSION: {"rmse": False, "mae": False, "r2": True},
    FORECASTING: {"smape": False, "mase": False, "mae": False, "rmse": False},
}
DEFAULTS = {CLASSIFICATION: "f1", REGRESSION: "rmse", FORECASTING: "smape"}
_ALIASES = {
    "f1_score": "f1",
    "roc_auc_score": "roc_auc",
    "auc": "roc_auc",
    "logloss": "log_loss",
    "accuracy_score": "accuracy",
    "precision_score": "precision",
    "recall_score": "recall",
    "root_mean_squared_error": "rmse",
    "mean_absolute_error": "mae",
    "r2_score": "r2",
}


def primary_metric(problem: str, name: str | None) -> str:
    """The canonical name of `name` for `problem` (its default when None), or InvalidArgument."""
    if name is None:
        return DEFAULTS[problem]
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DIRECTIONS[problem]:
        raise InvalidArgument(
            f"primary_metric {name!r} is not a {problem} metric; use one of "
            f"{', '.join(DIRECTIONS[problem])}",
            field="primary_metric",
        )
    return key


def maximize(problem: str, name: str) -> bool:
    return DIRECTIONS[problem][name]


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    try:
        return float(fn(*args, **kwargs))
    except ValueError:  # e.g. ROC AUC on a split holding one class
        return math.nan


def classification(
    y_true: Any,
    y_pred: Any,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    pos_label: Any,
    names: Sequence[str] | None = None,
    sample_weight: Any = None,
) -> dict[str, float]:
    """Every classification metric (or only `names`); `proba` columns follow `classes`; each
    row counts as its `sample_weight` (None: every row once)."""
    from sklearn import metrics as m

    labels = list(classes)
    wanted = set(names or DIRECTIONS[CLASSIFICATION])
    out: dict[str, float] = {}
    w = sample_weight
    if "accuracy" in wanted:
        out["accuracy"] = float(m.accuracy_score(y_true, y_pred, sample_weight=w))
    if wanted & {"f1", "precision", "recall"}:
        if len(labels) == 2:
            average: dict[str, Any] = {"average": "binary", "pos_label": pos_label}
        else:
            average = {"average": "weighted", "labels": labels}
        precision, recall, f1, _ = m.precision_recall_fscore_support(
            y_true, y_pred, zero_division=0, sample_weight=w, **average
        )
        out.update(f1=float(f1), precision=float(precision), recall=float(recall))
    if proba is not None and "log_loss" in wanted:
        out["log_loss"] = _safe(m.log_loss, y_true, proba, labels=labels, sample_weight=w)
    if proba is not None and "roc_auc" in wanted:
        if len(labels) == 2:
            positive = proba[:, labels.index(pos_label)]
            out["roc_auc"] = _safe(
                m.roc_auc_score, np.asarray(y_true) == pos_label, positive, sample_weight=w
            )
        else:
            out["roc_auc"] = _safe(
                m.roc_auc_score,
                y_true,
                proba,
                multi_class="ovr",
                average="weighted",
                labels=labels,
                sample_weight=w,
            )
    return {k: v for k, v in out.items() if k in wanted}


def regression(y_true: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, float]:
    from sklearn import metrics as m

    w = sample_weight
    return {
        "rmse": float(np.sqrt(m.mean_squared_error(y_true, y_pred, sample_weight=w))),
        "mae": float(m.mean_absolute_error(y_true, y_pred, sample_weight=w)),
        "r2": _safe(m.r2_score, y_true, y_pred, sample_weight=w),
    }


def smape(y_true: Any, y_pred: Any) -> float:
    """Symmetric mean absolute percentage error, in percent (0/0 counts as 0)."""
    a, f = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    denominator = np.abs(a) + np.abs(f)
    ratio = np.divide(2 * np.abs(f - a), denominator, out=np.zeros_like(a), where=denominator != 0)
    return float(100 * ratio.mean())


def mase(y_true: Any, y_pred: Any, history: Any, season: int) -> float:
    """Mean absolute scaled error: MAE over the in-sample MAE of the seasonal naive forecast
    (over the history's periods that have a value)."""
    scale = mase_scale(history, season)
    error = np.mean(np.abs(np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)))
    return float(error / scale) if scale and not math.isnan(scale) else math.nan


def mase_scale(history: Any, season: int) -> float:
    """MASE's denominator: the seasonal naive forecast's in-sample MAE (NaN without one; 0 for
    a flat history, where MASE is undefined)."""
    h = np.asarray(history, dtype=float)
    lag = season if 1 < season < len(h) else 1
    steps = np.abs(h[lag:] - h[:-lag]) if len(h) > lag else np.array([])
    return float(np.nanmean(steps)) if np.isfinite(steps).any() else math.nan


def forecasting(y_true: Any, y_pred: Any, history: Any, season: int) -> dict[str, float]:
    """Scores over the periods that have a value: a gap filled in to fit is no actual."""
    a, f = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    keep = ~np.isnan(a)
    a, f = a[keep], f[keep]
    return {
        "smape": smape(a, f),
        "mase": mase(a, f, history, season),
        "mae": float(np.mean(np.abs(a - f))),
        "rmse": float(np.sqrt(np.mean((a - f) ** 2))),
    }


def over_series(scores: list[dict[str, float]], points: list[dict[str, int]]) -> dict[str, float]:
    """Each `<split>_<name>` metric over every series' scored points together: the series'
    values weighted by their scored points in that split (RMSE: the root of the weighted mean
    square), so a 5-point series weighs a thousandth of a 5000-point one, not as much. A series
    where a metric is undefined (MASE of a flat history) is left out of that metric."""
    out: dict[str, float] = {}
    for key in scores[0]:
        split, name = key.split("_", 1)
        pairs = [
            (s[key], p[split])
            for s, p in zip(scores, points, strict=True)
            if p[split] and not math.isnan(s[key])
        ]
        total = sum(n for _, n in pairs)
        if not total:
            out[key] = math.nan
        elif name == "rmse":
            out[key] = float(np.sqrt(sum(n * v**2 for v, n in pairs) / total))
        else:
            out[key] = float(sum(n * v for v, n in pairs) / total)
    return out
