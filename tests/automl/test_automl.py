"""AutoML end to end against a real server: runs, reports, generated code that reproduces trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelyard.automl
import modelyard.pyfunc
from modelyard.automl.dataset import SPLIT_COL
from modelyard.automl.search import TrialEvent
from modelyard.entities import RunStatus
from modelyard.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]


def _children(client, parent_run_id: str, experiment_id: str):
    return list(
        client.search_runs([experiment_id], f"attributes.parent_run_id = '{parent_run_id}'")
    )


def _run_script(path: Path, uri: str, *args: str) -> str:
    env = {**os.environ, "MODELYARD_URI": uri, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(path), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_classify_tracks_every_trial_and_logs_the_best_model(fluent, churn, tmp_path) -> None:
    c = fluent.client()
    events: list[TrialEvent] = []
    result = modelyard.automl.classify(
        churn,
        "churned",
        max_trials=3,
        timeout_minutes=2,
        experiment_name="churn-automl",
        register_model="churn",
        pos_label="yes",
        cv_folds=None,
        output_dir=tmp_path / "out",
        on_trial=events.append,
    )
    assert [e.n_done for e in events] == [1, 2, 3]
    assert events[-1].best_value == pytest.approx(result.best_score)

    parent = c.get_run(result.parent_run_id)
    assert parent.info.status == RunStatus.FINISHED
    assert parent.data.params["primary_metric"] == "f1"
    assert parent.data.params["pos_label"] == "yes"
    assert parent.data.tags["modelyard.automl.best_run_id"] == result.best_trial.run_id
    assert parent.data.metrics["val_f1"] == pytest.approx(result.best_score)
    assert parent.inputs.dataset_inputs[0].dataset.name == "training_data"
    # The exploration report: detected types and the warnings that matter.
    html = Path(c.download_artifacts(result.parent_run_id, "exploration/data_exploration.html"))
    text = html.read_text()
    assert "customer_id looks like an identifier" in text
    assert "country has a single value" in text
    profile = json.loads(
        Path(c.download_artifacts(result.parent_run_id, "exploration/profile.json")).read_text()
    )
    kinds = {col["name"]: col["semantic_type"] for col in profile["columns"]}
    assert kinds == {
        "customer_id": "id",
        "usage": "numeric",
        "plan": "categorical",
        "tenure": "numeric",
        "city": "high_cardinality",
        "signup": "datetime",
        "note": "text",
        "country": "constant",
        "churned": "target",
    }
    assert profile["target"]["classes"].keys() == {"yes", "no"}
    data = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert set(data[SPLIT_COL]) == {"train", "val", "test"} and len(data) == len(churn)

    # Every trial is a nested run with train / val / test metrics and its generated script.
    runs = _children(c, result.parent_run_id, result.experiment_id)
    assert len(runs) == 3 == len(result.trials)
    assert set(result.trials["run_id"]) == {r.info.run_id for r in runs}
    for run in runs:
        assert run.info.status == RunStatus.FINISHED
        for split in ("train", "val", "test"):
            for metric in ("f1", "roc_auc", "log_loss", "accuracy", "precision", "recall"):
                assert f"{split}_{metric}" in run.data.metrics
        source = run.data.tags["modelyard.automl.source"]
        assert source.startswith("code/trial_") and source.endswith(".py")
        code = Path(c.download_artifacts(run.info.run_id, source)).read_text()
        compile(code, source, "exec")
    assert list(result.trials["val_f1"]) == sorted(result.trials["val_f1"], reverse=True)

    # The best trial: a model with signature and input example, registered, and explained.
    best = result.best_trial
    assert best.source_path.exists() and best.source_path.parent == tmp_path / "out"
    assert (
        best.source_uri == f"runs:/{best.run_id}/{runs[0].data.tags['modelyard.automl.source']}"
        or (best.source_uri.startswith(f"runs:/{best.run_id}/code/"))
    )
    model = modelyard.pyfunc.load_model(best.model_uri)
    assert model.signature is not None
    assert [s.name for s in model.signature.inputs] == [
        "usage",
        "plan",
        "tenure",
        "city",
        "signup",
        "note",
    ]
    assert len(model.input_example()) == 5
    predicted = model.predict(churn.drop(columns=["churned"]).head(20))
    assert set(np.asarray(predicted)) <= {"yes", "no"}
    assert result.registered_model_version == 1
    assert c.get_model_version("churn", "1").run_id == best.run_id
    importances = json.loads(
        Path(
            c.download_artifacts(best.run_id, "explanations/permutation_importance.json")
        ).read_text()
    )
    assert next(iter(importances)) in {"usage", "note", "plan"}  # the columns churn depends on
    assert set(importances) == {"usage", "plan", "tenure", "city", "signup", "note"}


def test_a_generated_trial_script_reproduces_its_validation_metric(fluent, churn, tmp_path) -> None:
    c = fluent.client()
    result = modelyard.automl.classify(
        churn, "churned", max_trials=2, cv_folds=None, output_dir=tmp_path, primary_metric="roc_auc"
    )
    for _, trial in result.trials.iterrows():
        out = _run_script(Path(trial["source_path"]), fluent.get_tracking_uri())
        assert "logged run" in out
        (rerun,) = c.search_runs(
            [result.experiment_id], f"tags.`modelyard.automl.reproduces` = '{trial['run_id']}'"
        )
        logged = c.get_run(trial["run_id"]).data.metrics
        for key in ("val_roc_auc", "val_f1", "test_log_loss", "train_accuracy"):
            assert rerun.data.metrics[key] == pytest.approx(logged[key], rel=1e-6), key
        model = modelyard.pyfunc.load_model(f"runs:/{rerun.info.run_id}/model")
        assert len(model.predict(churn.head(3))) == 3


def test_regress_with_cross_validation_and_a_reproducing_script(fluent, prices, tmp_path) -> None:
    result = modelyard.automl.regress(
        prices,
        "price",
        max_trials=2,
        primary_metric="mae",
        exclude_frameworks=["xgboost"],
        output_dir=tmp_path,
    )
    assert result.primary_metric == "mae"
    assert set(result.trials["framework"]) <= {"sklearn", "lightgbm"}
    assert result.best_trial.metrics["val_r2"] > 0.8
    c = fluent.client()
    assert c.get_run(result.parent_run_id).data.params["cv_folds"] == "5"
    out = _run_script(result.best_trial.source_path, fluent.get_tracking_uri(), "--no-log")
    printed = dict(line.split() for line in out.strip().splitlines())
    for key in ("val_mae", "val_rmse", "test_r2"):
        assert float(printed[key]) == pytest.approx(result.best_trial.metrics[key], rel=1e-5)
    assert not c.search_runs(
        [result.experiment_id], "tags.`modelyard.automl.reproduces` != ''"
    )  # --no-log logged nothing


def test_forecast_with_a_statistical_model_and_its_script(fluent, sales, tmp_path) -> None:
    c = fluent.client()
    result = modelyard.automl.forecast(
        sales,
        "sales",
        "day",
        horizon=7,
        frequency="D",
        max_trials=4,
        output_dir=tmp_path,
        register_model="sales",
    )
    families = set(result.trials["model_family"])
    assert {"exponential_smoothing", "arima"} <= families  # statsmodels is searched
    for _, trial in result.trials.iterrows():
        assert trial["val_mase"] >= 0 and trial["test_smape"] >= 0
    assert result.best_trial.metrics["val_mase"] < 1.0  # beats the seasonal naive forecast
    parent = c.get_run(result.parent_run_id)
    assert parent.data.params["horizon"] == "7" and parent.data.params["season_length"] == "7"
    data = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert list(data[SPLIT_COL].tail(14)) == ["val"] * 7 + ["test"] * 7  # split by time

    model = modelyard.pyfunc.load_model("models:/sales/1")
    future = pd.DataFrame({"day": pd.date_range(sales["day"].max(), periods=8, freq="D")[1:]})
    forecast = np.asarray(model.predict(future))
    assert forecast.shape == (7,) and np.isfinite(forecast).all()
    with pytest.raises(InvalidArgument, match="after the end of the training data"):
        model.predict(pd.DataFrame({"day": sales["day"].head(2)}))

    out = _run_script(result.best_trial.source_path, fluent.get_tracking_uri())
    assert "logged run" in out
    (rerun,) = c.search_runs(
        [result.experiment_id],
        f"tags.`modelyard.automl.reproduces` = '{result.best_trial.run_id}'",
    )
    key = "val_smape"
    assert rerun.data.metrics[key] == pytest.approx(result.best_trial.metrics[key], rel=1e-6)


def test_bad_options_are_refused_before_any_run(fluent, churn) -> None:
    with pytest.raises(InvalidArgument, match="primary_metric 'rmse' is not a classification"):
        modelyard.automl.classify(churn, "churned", primary_metric="rmse", max_trials=1)
    with pytest.raises(InvalidArgument, match="target_col 'nope' is not a column"):
        modelyard.automl.classify(churn, "nope", max_trials=1)
    with pytest.raises(InvalidArgument, match="unknown"):
        modelyard.automl.classify(churn, "churned", exclude_frameworks=["torch"], max_trials=1)
    with pytest.raises(InvalidArgument, match="pos_label 'maybe'"):
        modelyard.automl.classify(churn, "churned", pos_label="maybe", max_trials=1)
    with pytest.raises(InvalidArgument, match="leaves no"):
        modelyard.automl.regress(
            churn, "usage", exclude_frameworks=["sklearn", "lightgbm", "xgboost"], max_trials=1
        )
    assert fluent.search_runs(search_all_experiments=True).empty


def test_a_model_name_the_registry_refuses_is_refused_before_the_search(
    fluent, churn, sales
) -> None:
    """register_model was checked only when the best model was registered, after the search
    had spent the whole budget."""
    with pytest.raises(InvalidArgument, match="not a valid model name") as err:
        modelyard.automl.classify(churn, "churned", register_model="bad/../name,", max_trials=1)
    assert err.value.field == "register_model"
    with pytest.raises(InvalidArgument, match="register_model ' padded'"):
        modelyard.automl.forecast(
            sales, "sales", "day", horizon=7, register_model=" padded", max_trials=1
        )
    assert fluent.search_runs(search_all_experiments=True).empty


def test_exclude_cols_naming_no_column_is_refused_naming_the_close_one(fluent, churn) -> None:
    """A misspelt exclude_cols entry was ignored, and the column it meant to leave out (here,
    one leaking the target) was trained on."""
    data = churn.assign(leak=churn["churned"] == "yes")
    with pytest.raises(
        InvalidArgument, match="exclude_cols 'Leak' is not a column; did you mean 'leak'"
    ):
        modelyard.automl.classify(data, "churned", exclude_cols=["Leak"], max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_one_name_given_as_a_string_is_one_name_not_its_letters(fluent, prices, tmp_path) -> None:
    """exclude_cols="area" was read as the columns 'a', 'r', 'e', 'a' (refused: "exclude_cols
    'a' is not a column") and exclude_frameworks="lightgbm" as frameworks 'l', 'i', ...;
    identity_col already took one name as a string."""
    result = modelyard.automl.regress(
        prices,
        "price",
        exclude_cols="area",
        exclude_frameworks="lightgbm",
        max_trials=1,
        output_dir=tmp_path,
    )
    params = fluent.client().get_run(result.parent_run_id).data.params
    assert params["exclude_frameworks"] == "lightgbm"
    assert "lightgbm" not in params["model_families"].split(",")
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.signature is not None
    assert [s.name for s in model.signature.inputs] == ["size", "rooms"]


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        # nan ran the search with no deadline, then 'no AutoML trial finished'
        ({"timeout_minutes": float("nan")}, "timeout_minutes"),
        ({"timeout_minutes": float("inf")}, "timeout_minutes"),  # OverflowError
        ({"max_trials": 2.5}, "max_trials"),  # ran 3 trials
        ({"max_trials": True}, "max_trials"),
        ({"seed": -1}, "seed"),  # scikit-learn's InvalidParameterError from the split
        ({"seed": 2**32}, "seed"),
        ({"cv_folds": 100}, "cv_folds"),  # scikit-learn's ValueError: 100 folds of 48 rows
    ],
)
def test_settings_no_search_can_use_are_refused_naming_them(fluent, churn, setting, field) -> None:
    data = churn.head(60)
    with pytest.raises(InvalidArgument) as refused:
        modelyard.automl.classify(data, "churned", **{"max_trials": 1, **setting})
    assert refused.value.field == field and field in str(refused.value)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_roc_auc_of_a_rare_class_is_the_mean_of_the_folds_that_hold_it(fluent, tmp_path) -> None:
    """4 positive rows in 5 CV folds: a fold without one has no ROC AUC, and its NaN made every
    trial's mean NaN, so with primary_metric='roc_auc' every trial failed ('no AutoML trial
    finished ... allow more time'). The mean is over the folds where a metric is defined, in
    the trial and in its script alike."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    data = pd.DataFrame({"x": x, "y": (x > 1.8).astype(int)})
    result = modelyard.automl.classify(
        data, "y", primary_metric="roc_auc", max_trials=2, output_dir=tmp_path
    )
    assert (result.trials["state"] == "COMPLETE").all()
    assert np.isfinite(result.trials["val_roc_auc"]).all()
    out = _run_script(result.best_trial.source_path, fluent.get_tracking_uri(), "--no-log")
    printed = dict(line.split() for line in out.strip().splitlines())
    assert float(printed["val_roc_auc"]) == pytest.approx(
        result.best_trial.metrics["val_roc_auc"], rel=1e-6
    )


def test_pos_label_of_a_multiclass_target_is_refused(fluent, churn) -> None:
    """Multiclass metrics are weighted averages over every class: the pos_label was ignored
    but logged as the run's pos_label param, as if the f1 were that class's."""
    data = churn.assign(churned=churn["plan"])
    with pytest.raises(InvalidArgument, match="pos_label 'pro' is for two classes") as refused:
        modelyard.automl.classify(data, "churned", pos_label="pro", max_trials=1)
    assert refused.value.field == "pos_label"
    assert fluent.search_runs(search_all_experiments=True).empty


def test_a_fractional_horizon_is_refused_naming_it(fluent, sales) -> None:
    """horizon=2.5 raised a raw TypeError (slice indices must be integers)."""
    with pytest.raises(InvalidArgument, match="horizon must be a whole number") as refused:
        modelyard.automl.forecast(sales, "sales", "day", horizon=2.5, max_trials=1)  # type: ignore[arg-type]
    assert refused.value.field == "horizon"
    assert fluent.search_runs(search_all_experiments=True).empty


def _holiday_sales(start: str, end: str, seed: int = 3) -> pd.DataFrame:
    """Daily sales with a weekly cycle and 40 more on each US public holiday."""
    import holidays

    days = pd.date_range(start, end, freq="D")
    us = holidays.country_holidays("US")
    rng = np.random.default_rng(seed)
    weekly = np.array([0, 2, 4, 5, 8, 14, 10])[days.day_of_week]
    spike = np.array([40.0 if d.date() in us else 0.0 for d in days])
    return pd.DataFrame({"day": days, "sales": 50 + weekly + spike + rng.normal(0, 1, len(days))})


def test_country_code_adds_holidays_the_lag_models_fit_on() -> None:
    """There was no holiday input: a holiday's spike was noise to every model. With
    country_code the lag models have a feature counting the country's holidays in each period,
    and the fitted model gives it the spike's weight and forecasts the holiday."""
    from sklearn.linear_model import Ridge

    from modelyard.automl.forecasters import LagForecaster, holidays_in_period

    data = _holiday_sales("2023-01-01", "2024-06-30").set_index("day")["sales"]
    future = _holiday_sales("2024-07-01", "2024-07-07").set_index("day")["sales"]
    fitted = {
        code: LagForecaster(Ridge(alpha=1.0), [1, 7], 7, "D", country_code=code).fit(data)
        for code in (None, "US")
    }
    with_days, without = fitted["US"], fitted[None]
    assert with_days.estimator.n_features_in_ == without.estimator.n_features_in_ + 1
    history = list(data)
    assert with_days._row(history, pd.Timestamp("2024-07-04"))[-1] == 1
    assert with_days._row(history, pd.Timestamp("2024-07-05"))[-1] == 0
    assert 30 < with_days.estimator.coef_[-1] < 50  # the spike is on the holiday feature
    july_4 = 3
    errors = {
        code: abs(model.forecast(7)[july_4] - future.iloc[july_4]) for code, model in fitted.items()
    }
    assert errors["US"] < 8 < 25 < errors[None]
    # Longer periods count the holidays in them: July 4th; Veterans Day and Thanksgiving.
    assert holidays_in_period("US", pd.Timestamp("2024-07-31"), "ME") == 1
    assert holidays_in_period("US", pd.Timestamp("2024-07-01"), "MS") == 1
    assert holidays_in_period("US", pd.Timestamp("2024-11-30"), "ME") == 2
    assert holidays_in_period("US", pd.Timestamp("2024-07-07"), "W-SUN") == 1


def test_forecast_with_country_code_writes_the_holidays_into_the_trial_script(
    fluent, tmp_path
) -> None:
    data = _holiday_sales("2024-01-01", "2024-07-10")
    result = modelyard.automl.forecast(
        data,
        "sales",
        "day",
        horizon=14,
        country_code="US",
        exclude_frameworks=["statsmodels", "lightgbm", "xgboost"],
        max_trials=1,
        output_dir=tmp_path,
    )
    c = fluent.client()
    assert c.get_run(result.parent_run_id).data.params["country_code"] == "US"
    source = Path(result.best_trial.source_path).read_text()
    assert "country_code='US'" in source
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri).unwrap_python_model()
    assert model.forecaster.country_code == "US"
    out = _run_script(result.best_trial.source_path, fluent.get_tracking_uri(), "--no-log")
    printed = dict(line.split() for line in out.strip().splitlines())
    for key in ("val_mae", "test_rmse"):  # the script fits the same holiday features
        assert float(printed[key]) == pytest.approx(result.best_trial.metrics[key], rel=1e-5)


def test_an_unknown_country_code_is_refused_before_any_run(fluent, sales) -> None:
    with pytest.raises(InvalidArgument, match="country_code 'XX' is no country") as refused:
        modelyard.automl.forecast(sales, "sales", "day", horizon=7, country_code="XX")
    assert refused.value.field == "country_code"
    assert "holidays.list_supported_countries()" in refused.value.message
    assert fluent.search_runs(search_all_experiments=True).empty
