"""Type detection and the exploration report's warnings, without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelyard.automl import dataset, features, profile, report


def test_warnings_name_leaking_sparse_and_correlated_columns(churn) -> None:
    df = churn.copy()
    df["churn_flag"] = (df["churned"] == "yes").astype(float)  # the target in disguise
    df["usage_copy"] = df["usage"] * 2 + 1
    df["survey"] = np.where(np.arange(len(df)) % 4 == 0, df["usage"], np.nan)
    types = profile.detect_types(df.drop(columns=["churned"]))
    found = profile.profile(df, "churned", "classification", types)
    kinds = {(w.kind, w.column) for w in found.warnings}
    assert ("leakage", "churn_flag") in kinds
    assert ("leakage", "usage") not in kinds
    assert ("missing", "survey") in kinds
    assert ("correlated", "usage") in kinds
    assert {("id", "customer_id"), ("constant", "country")} <= kinds
    html = report.render(found)
    assert "churn_flag alone predicts churned almost perfectly" in html
    assert found.target["classes"] == dict(df["churned"].value_counts())


def test_regression_leak_and_the_feature_plan() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    df = pd.DataFrame(
        {
            "x": x,
            "y_cents": x * 100 + 3,
            "flag": rng.random(300) > 0.5,
            "when": pd.date_range("2024-01-01", periods=300, freq="h"),
            "y": x + rng.normal(0, 0.001, 300),
        }
    )
    df, schema = dataset.normalize(df, "y", keep_target_numeric=True)
    assert schema.date_columns == ["when"] and schema.dtypes["flag"] == "float64"
    types = profile.detect_types(df.drop(columns=["y"]))
    assert types == {"x": "numeric", "y_cents": "numeric", "flag": "numeric", "when": "datetime"}
    found = profile.profile(df, "y", "regression", types)
    leaks = {w.column for w in found.warnings if w.kind == "leakage"}
    assert leaks == {"x", "y_cents"}
    plan = features.plan(types)
    assert plan.columns == ["x", "y_cents", "flag", "when"]
    out = features.build(plan).fit_transform(df[plan.columns])
    assert out.shape[0] == 300 and not np.isnan(np.asarray(out, dtype=float)).any()


def test_imbalanced_classes_search_class_weights() -> None:
    import optuna

    from modelyard.automl import families

    def fixed(params: dict[str, Any]) -> optuna.trial.BaseTrial:
        return optuna.trial.FixedTrial(params)

    ctx = families.Context("classification", n_rows=500, n_classes=2, imbalanced=True)
    found = {f.name: f for f in families.available(ctx)}
    trial = fixed(found["lightgbm"].enqueued(ctx))
    spec = found["lightgbm"].suggest(trial, ctx)
    assert spec.kwargs["class_weight"] == "balanced"
    xgb = found["xgboost"].suggest(fixed(found["xgboost"].enqueued(ctx)), ctx)
    assert "scale_pos_weight" in xgb.kwargs
    balanced = families.Context("classification", n_rows=500, n_classes=2, imbalanced=False)
    plain = found["linear"].suggest(fixed(found["linear"].enqueued(balanced)), balanced)
    assert "class_weight" not in plain.kwargs
    assert "knn" not in {
        f.name for f in families.available(families.Context("classification", n_rows=50_000))
    }  # kernel and neighbour models only on small data


def test_far_outlying_regression_targets_are_warned_about() -> None:
    """A few target values far outside the rest made rmse and r2 all about them, without a
    word: every trial scored badly, and the report did not say why."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    df = pd.DataFrame({"x": x, "price": 3 * x + rng.normal(0, 0.3, 200)})
    types = profile.detect_types(df.drop(columns=["price"]))
    clean = profile.profile(df, "price", "regression", types)
    assert not [w for w in clean.warnings if w.kind == "outliers"]
    df.loc[:4, "price"] = 1e6
    found = profile.profile(df, "price", "regression", types)
    [far] = [w for w in found.warnings if w.kind == "outliers"]
    assert far.column == "price"
    assert far.message.startswith("5 of 200 price values lie far outside the rest")
    assert "e.g. 1e+06" in far.message and "--metric mae" in far.message
    assert "5 of 200 price values" in report.render(found)
