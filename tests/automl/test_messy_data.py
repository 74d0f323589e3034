"""AutoML on data as users have it: gaps, future rows, other frequencies, odd types, their own
splits. Each either works as the user meant or is refused up front, saying what to do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import modelyard.automl
import modelyard.pyfunc
from modelyard.automl import families, forecasting, search
from modelyard.automl.dataset import SPLIT_COL
from modelyard.automl.forecasters import (
    ForecastModel,
    MultiSeriesForecastModel,
    StatsmodelsForecaster,
)
from modelyard.automl.metrics import CLASSIFICATION
from modelyard.automl.result import AutoMLResult
from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.models.signature import ColumnSpec

ROOT = Path(__file__).resolve().parents[2]


def _binary(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": (x + rng.normal(scale=0.5, size=n) > 0).astype(int)})


# -- forecasting: the grid ---------------------------------------------------------------------


def test_forecast_drops_future_rows_and_never_scores_a_filled_gap(fluent, sales, tmp_path) -> None:
    data = sales.copy()
    data.loc[len(data) - 5 :, "sales"] = np.nan  # future rows: no value yet
    gap = len(data) - 5 - 10  # a day without a value inside the validation period
    data.loc[gap, "sales"] = np.nan
    last = data["day"].iloc[len(data) - 6]
    result = modelyard.automl.forecast(
        data, "sales", "day", horizon=7, max_trials=2, output_dir=tmp_path
    )
    c = fluent.client()
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert pd.Timestamp(csv["day"].iloc[-1]) == last  # the test period ends at the last value
    assert list(csv[SPLIT_COL].tail(14)) == ["val"] * 7 + ["test"] * 7
    missing = csv[csv["sales"].isna()]
    assert list(missing["day"]) == [str(data["day"].iloc[gap].date())]
    assert missing[SPLIT_COL].tolist() == ["val"]
    assert "6 rows without a sales value were dropped" in result.warnings  # 5 + the gap
    assert any("1 of 115 'D' periods have no value" in w for w in result.warnings)
    assert np.isfinite(result.trials["val_smape"]).all()
    # The trial's own script scores the same periods (reads the same CSV, skips the same gap).
    env = {**os.environ, "MODELYARD_URI": fluent.get_tracking_uri(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(result.best_trial.source_path), "--no-log"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = dict(line.split() for line in done.stdout.strip().splitlines())
    for key in ("val_smape", "val_mase", "test_mae"):
        assert float(printed[key]) == pytest.approx(result.best_trial.metrics[key], rel=1e-5)


def test_forecast_refuses_a_grid_that_is_mostly_made_up(fluent) -> None:
    rng = np.random.default_rng(0)
    days = np.sort(rng.choice(200, 70, replace=False))
    data = pd.DataFrame(
        {"ds": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"), "y": 5.0}
    )
    with pytest.raises(InvalidArgument, match=r"only 70 of the \d+ 'D' periods .* coarser one"):
        modelyard.automl.forecast(data, "y", "ds", horizon=7, max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_lag_models_fit_a_weekly_series_shorter_than_two_years(fluent, tmp_path) -> None:
    """Weekly data has a 52-week season; with 60 weeks the rolling window of 52 left no row to
    fit on, and every ridge, LightGBM and XGBoost trial failed ("52 points are too few")."""
    weeks = pd.date_range("2020-01-05", periods=60, freq="W-SUN")
    data = pd.DataFrame({"ds": weeks, "y": 10 + np.sin(np.arange(60) / 3)})
    result = modelyard.automl.forecast(
        data,
        "y",
        "ds",
        horizon=4,
        frequency="W",
        max_trials=1,
        exclude_frameworks=["statsmodels", "lightgbm", "xgboost"],
        output_dir=tmp_path,
    )
    assert result.best_trial.model_family == "ridge"
    assert np.isfinite(result.best_trial.metrics["val_smape"])


def test_mase_on_flat_series_is_refused_before_any_trial(fluent, tmp_path) -> None:
    """MASE divides by the seasonal naive forecast's error, none on a flat history: every
    trial returned NaN and failed, and the run ended in "no AutoML trial finished"."""
    days = pd.date_range("2024-01-01", periods=60)
    data = pd.concat([pd.DataFrame({"ds": days, "s": s, "y": 5.0}) for s in ("a", "b")])
    with pytest.raises(
        InvalidArgument, match=r"primary_metric 'mase' is undefined here: every series is flat"
    ):
        modelyard.automl.forecast(
            data, "y", "ds", 5, identity_col="s", primary_metric="mase", max_trials=1
        )
    assert fluent.search_runs(search_all_experiments=True).empty
    data.loc[data["s"] == "b", "y"] = np.arange(60.0)  # one series to scale by is enough
    result = modelyard.automl.forecast(
        data,
        "y",
        "ds",
        5,
        identity_col="s",
        primary_metric="mase",
        max_trials=1,
        output_dir=tmp_path,
    )
    assert np.isfinite(result.best_score)


def _grid(data: pd.DataFrame, frequency: str, tmp_path: Path) -> tuple[pd.DataFrame, str, list]:
    df, _, _, resolved, notes, _ = forecasting._prepare(data, "y", "ds", frequency, 3, tmp_path)
    return df, resolved, notes


def test_rows_without_a_time_are_dropped_with_a_note(tmp_path) -> None:
    """They were dropped without a word: only a note on gaps in the grid hinted at them."""
    data = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=40).astype(str), "y": 1.0})
    data.loc[[3, 7], "ds"] = None
    df, _, notes = _grid(data, "D", tmp_path)
    assert len(df) == 40 and df["y"].isna().sum() == 2
    assert "2 rows without a ds were dropped" in notes


def test_rows_finer_than_the_frequency_are_averaged_per_period(tmp_path) -> None:
    hours = pd.date_range("2024-01-01", periods=24 * 20, freq="h")
    data = pd.DataFrame({"ds": hours, "y": np.repeat(np.arange(20.0), 24) + hours.hour / 100})
    df, resolved, notes = _grid(data, "D", tmp_path)
    assert resolved == "D" and len(df) == 20
    assert df["y"].tolist() == pytest.approx(np.arange(20.0) + 0.115)  # each day's mean
    assert "480 rows fall in 20 'D' periods: each period is the mean of its rows" in notes


@pytest.mark.parametrize(
    ("dates", "frequency", "resolved"),
    [
        (pd.date_range("2019-01-01", periods=30, freq="MS"), "M", "MS"),  # Databricks' month
        (pd.date_range("2019-01-31", periods=30, freq="ME"), "month", "ME"),
        (pd.date_range("2019-01-01", periods=30, freq="MS"), "ME", "ME"),  # pandas' own, kept
        (pd.date_range("2022-01-03", periods=30, freq="W-MON"), "W", "W-MON"),
        (pd.date_range("2022-01-03", periods=30, freq="W-MON"), "W-SUN", "W-SUN"),
        (pd.date_range("2024-01-01", periods=30, freq="h"), "hours", "h"),
        (pd.date_range("2024-01-01", periods=30, freq="min"), "m", "min"),
        (pd.date_range("2019-01-01", periods=30, freq="QS"), "Q", "QS"),
    ],
)
def test_frequencies_by_databricks_name_or_pandas_alias_keep_every_point(
    dates: pd.DatetimeIndex, frequency: str, resolved: str, tmp_path: Path
) -> None:
    data = pd.DataFrame({"ds": dates, "y": np.arange(30.0)})
    df, got, notes = _grid(data, frequency, tmp_path)
    assert got == resolved
    assert df["y"].tolist() == list(np.arange(30.0)) and not notes


def test_timestamps_with_changing_utc_offsets_are_read_as_utc(tmp_path) -> None:
    # Hourly across the switch to summer time: "+01:00", then "+02:00".
    berlin = pd.date_range("2024-03-30 12:00", periods=30, freq="h", tz="Europe/Berlin")
    data = pd.DataFrame({"ds": berlin.astype(str), "y": np.arange(30.0)})
    df, _, notes = _grid(data, "h", tmp_path)
    assert df["ds"].iloc[0] == pd.Timestamp("2024-03-30 11:00")  # UTC
    assert df["y"].tolist() == list(np.arange(30.0)) and not notes


def test_forecast_refuses_text_targets_and_several_series(tmp_path) -> None:
    days = pd.date_range("2024-01-01", periods=40, freq="D")
    text = pd.DataFrame({"ds": days, "y": [f"{v:,.1f}" for v in 1000 + np.arange(40) * 10.0]})
    with pytest.raises(InvalidArgument, match=r"column 'y' holds 40 value.*'1,000.0'.*thousands"):
        _grid(text, "D", tmp_path)
    stores = pd.concat(
        [pd.DataFrame({"ds": days, "store": s, "y": 1.0}) for s in ("a", "b")], ignore_index=True
    )
    with pytest.raises(InvalidArgument, match="column 'store' tells 2 series apart"):
        _grid(stores, "D", tmp_path)


def _forecast_model(store: str = "") -> ForecastModel:
    history = pd.Series(np.arange(30.0), index=pd.date_range("2024-01-01", periods=30))
    fitted = StatsmodelsForecaster("exponential_smoothing").fit(history)
    return ForecastModel(fitted, "day", "D", history.index[-1])


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (
            ["2024-01-31", None],
            r"column 'day' is missing in 1 input row\(s\) \(at positions \[1\]\)",
        ),
        (["", "NaT"], r"column 'day' is missing in 2 input row\(s\) \(at positions \[0, 1\]\)"),
        ([None, None], r"column 'day' is missing in 2 input row\(s\)"),
        (
            ["not a date", "2024-02-30", "2024-02-01", "not a date"],
            r"column 'day' holds 3 value\(s\) that are no timestamp, e.g. 'not a date', "
            r"'2024-02-30'; give dates",
        ),
        (
            ["31/01/2024", "2024-02-01"],
            r"column 'day' mixes date formats \('31/01/2024' and '2024-02-01'\): give every value",
        ),
    ],
)
def test_a_forecast_refuses_times_it_cannot_read_naming_them(days: list, message: str) -> None:
    """A missing time was told it was off the grid (all missing: pandas' ValueError), and text
    that is no date got pandas' advice on its own arguments, naming one value of several."""
    with pytest.raises(InvalidArgument, match=message):
        _forecast_model().predict(pd.DataFrame({"day": days}))


def test_a_multi_series_forecast_names_the_row_without_a_time() -> None:
    model = MultiSeriesForecastModel({("a",): _forecast_model(), ("b",): _forecast_model()}, ["s"])
    rows = pd.DataFrame({"s": ["a", "b", "a"], "day": ["2024-01-31", "2024-01-31", None]})
    with pytest.raises(InvalidArgument, match=r"1 input row\(s\) \(at positions \[2\]\)"):
        model.predict(rows)
    assert len(model.predict(rows.iloc[:2])) == 2


# -- tabular -----------------------------------------------------------------------------------


def test_regression_refuses_a_target_value_that_is_no_number(tmp_path) -> None:
    data = _binary()
    data["y"] = data["x"].map(lambda v: f"{v:.3f}")
    data.loc[3, "y"] = "n/a"
    with pytest.raises(InvalidArgument, match=r"column 'y' holds 1 value.*\['n/a'\].*NaN"):
        modelyard.automl.regress(data, "y", max_trials=1, output_dir=tmp_path)


def test_too_few_rows_say_how_many_are_needed_and_count_only_those_with_a_target(
    tmp_path,
) -> None:
    """A target missing in every row was "0 rows is too few to train and validate": nothing
    said the rows were there, without a target value, nor how many AutoML needs."""
    data = _binary().head(30)
    with pytest.raises(
        InvalidArgument,
        match=r"^6 rows with a y value are too few to train, validate and test: AutoML needs "
        r"at least 20$",
    ):
        modelyard.automl.classify(data.head(6), "y", max_trials=1, output_dir=tmp_path)
    with pytest.raises(
        InvalidArgument, match=r"^0 rows with a y value \(30 without one were left out\) are"
    ):
        modelyard.automl.regress(data.assign(y=np.nan), "y", max_trials=1, output_dir=tmp_path)


def test_a_class_only_in_the_test_split_is_refused_before_any_trial(fluent, tmp_path) -> None:
    """With every row of a class in the test split, every trial failed (LightGBM: "Shape of
    passed values is (12, 2)"; linear: "needs samples of at least 2 classes"), and the run
    ended in "no AutoML trial finished"."""
    data = _binary().assign(y="a", split="train")
    data.loc[:11, "split"] = "validate"
    data.loc[58:, ["y", "split"]] = ["b", "test"]
    with pytest.raises(
        InvalidArgument,
        match=r"the rows models are fit on \(train and validation\) hold one class, 'a': the "
        r"others are all in the test split: 'b' \(2 row\(s\)\); add rows",
    ):
        modelyard.automl.classify(data, "y", split_col="split", max_trials=2, output_dir=tmp_path)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_regression_refuses_a_target_with_one_value(fluent, tmp_path) -> None:
    """It ran, and reported a perfect model (val_rmse 0) without a word."""
    data = _binary().assign(y=1.5)
    data.loc[:4, "y"] = np.nan  # rows without a value do not count
    with pytest.raises(InvalidArgument, match=r"target_col 'y' is 1.5 in every row: there is"):
        modelyard.automl.regress(data, "y", max_trials=1, output_dir=tmp_path)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_columns_with_the_same_name_as_text_are_refused(fluent, tmp_path) -> None:
    """Columns 1 and "1" (one name in the training CSV) crashed classify with AttributeError:
    'DataFrame' object has no attribute 'dtype'."""
    data = _binary().assign(**{"1": 0.5})
    data[1] = data["x"] * 2
    with pytest.raises(InvalidArgument, match=r"more than one column named \['1'\]") as err:
        modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    assert err.value.field == "data"
    assert fluent.search_runs(search_all_experiments=True).empty


def test_a_column_named_as_automls_split_is_refused_or_used_as_the_split(fluent, tmp_path) -> None:
    """A column named _automl_split (as in data an earlier AutoML run logged) was silently
    replaced by a split drawn anew: the user's column was neither a feature nor the split."""
    data = _binary().assign(**{SPLIT_COL: np.resize(["train", "train", "val", "test"], 60)})
    with pytest.raises(InvalidArgument, match=f"split_col='{SPLIT_COL}'") as err:
        modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    assert err.value.field == "data"
    assert fluent.search_runs(search_all_experiments=True).empty
    result = modelyard.automl.classify(
        data, "y", split_col=SPLIT_COL, cv_folds=None, max_trials=1, output_dir=tmp_path
    )
    logged = fluent.client().download_artifacts(result.parent_run_id, "data/training_data.csv")
    assert pd.read_csv(logged)[SPLIT_COL].tolist() == data[SPLIT_COL].tolist()


def test_fractional_class_labels_are_refused_saying_what_to_do(fluent, tmp_path) -> None:
    """Labels such as 0.5 / 1.5 failed with scikit-learn's "Supported target types are:
    ('binary', 'multiclass'). Got 'continuous' instead." ('This is a bug' in the CLI)."""
    data = _binary().astype({"y": float})
    data["y"] = data["y"] + 0.5
    with pytest.raises(
        InvalidArgument, match=r"not whole, e\.g\. \['[01]\.5', '[01]\.5'\].*astype\(str\).*regress"
    ) as err:
        modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    assert err.value.field == "target_col"
    assert fluent.search_runs(search_all_experiments=True).empty


@pytest.mark.parametrize("column", ["y", "x"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values_are_refused_naming_their_column(
    fluent, sales, tmp_path, column: str, value: float
) -> None:
    """An infinite target crashed the data profile (numpy's histogram: 'autodetected range ...
    is not finite', 'This is a bug' in the CLI); an infinite feature failed every trial in its
    imputer, after the whole budget. Both are refused up front, saying what to do."""
    data = _binary().astype({"y": float})
    data.loc[3, column] = value
    with pytest.raises(InvalidArgument, match=f"column '{column}' holds 1 infinite.*NaN") as err:
        modelyard.automl.regress(data, "y", max_trials=1, output_dir=tmp_path)
    assert err.value.field == column
    if column == "x":
        with pytest.raises(InvalidArgument, match="column 'x' holds 1 infinite"):
            modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    else:
        series = sales.copy()
        series.loc[10, "sales"] = value
        with pytest.raises(InvalidArgument, match="column 'sales' holds 1 infinite"):
            modelyard.automl.forecast(series, "sales", "day", horizon=7, max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty


@pytest.mark.parametrize(
    ("values", "cv_folds", "missing"),
    [
        (["train", "validate"], "auto", "no test rows"),
        (["train", "validate"], None, "no test rows"),
        (["train", "test"], None, "no validation rows"),
    ],
)
def test_a_split_col_without_a_needed_part_is_refused_before_any_run(
    fluent, values: list[str], cv_folds: str | None, missing: str
) -> None:
    data = _binary()
    data["which"] = np.resize(values, len(data))
    with pytest.raises(InvalidArgument, match=f"split_col 'which' has {missing}"):
        modelyard.automl.classify(data, "y", split_col="which", cv_folds=cv_folds, max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty


def test_no_finished_trial_counts_only_trials_that_ran(fluent, monkeypatch, tmp_path) -> None:
    def fail(self: search.TabularSearch, spec: families.Spec) -> None:
        raise ValueError("this trial fails")

    monkeypatch.setattr(search.TabularSearch, "evaluate", fail)
    with pytest.raises(FailedPrecondition, match=r"no AutoML trial finished \(of 1 run\)"):
        modelyard.automl.classify(_binary(), "y", max_trials=1, output_dir=tmp_path)


def test_identity_cols_are_no_feature_but_stay_in_the_logged_data(fluent, tmp_path) -> None:
    """identity_col (as Databricks AutoML's): a batch or customer id to join results back to.
    It was not a parameter, so such a column was trained on or had to be dropped with
    exclude_cols, losing it from the logged data."""
    data = _binary().assign(batch=np.arange(60) % 3 + 100)
    result = modelyard.automl.classify(
        data, "y", identity_col="batch", max_trials=1, output_dir=tmp_path
    )
    c = fluent.client()
    assert c.get_run(result.parent_run_id).data.params["identity_cols"] == "batch"
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.signature is not None
    assert [s.name for s in model.signature.inputs] == ["x"]
    assert model.predict(data).size == 60  # the frame as given, identity column and all
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert csv["batch"].tolist() == data["batch"].tolist()  # whole numbers, as given


def _rare_first(n: int = 120) -> pd.DataFrame:
    """A rare class that sorts first ("fraud" before "ok"): the default pos_label is "ok"."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": np.where(x > 1.2, "fraud", "ok")})


def test_a_default_pos_label_that_is_the_common_class_is_warned_of(fluent, tmp_path) -> None:
    """With 90% "ok", f1 for "ok" was ~0.95 for a model that never finds a fraud, unremarked."""
    data = _rare_first()
    result = modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path / "a")
    (note,) = [w for w in result.warnings if w.startswith("pos_label defaults to 'ok'")]
    assert "f1, precision and recall (f1 is the primary metric) score finding 'ok'" in note
    assert note.endswith(
        "pass pos_label='fraud' (on the command line --pos-label fraud) to score the rare class"
    )
    chosen = modelyard.automl.classify(
        data, "y", pos_label="fraud", max_trials=1, output_dir=tmp_path / "b"
    )
    assert not [w for w in chosen.warnings if "pos_label" in w]
    rare_last = data.assign(y=np.where(data["y"] == "fraud", 1, 0))  # 1, the default, is rare
    ones = modelyard.automl.classify(rare_last, "y", max_trials=1, output_dir=tmp_path / "c")
    assert not [w for w in ones.warnings if "pos_label" in w]


def test_no_feature_left_says_which_columns_were_set_aside_or_unusable(fluent) -> None:
    """Every column set aside was refused as "no usable feature columns: {}", naming nothing."""
    data = _binary().assign(batch=np.arange(60) % 3, one=1.0)
    with pytest.raises(InvalidArgument) as caught:
        modelyard.automl.classify(data, "y", exclude_cols="x", identity_col="batch", max_trials=1)
    assert caught.value.field == "data"
    message = caught.value.message
    assert message.startswith("no feature column to predict 'y' from: the columns left carry")
    assert "'one' (constant)" in message
    assert "set aside as exclude_cols ['x'], identity_col ['batch']" in message
    assert message.endswith("add columns to learn from, or set fewer aside")
    assert fluent.search_runs(search_all_experiments=True).empty


def test_identity_cols_are_checked_as_exclude_cols_are(fluent) -> None:
    data = _binary().assign(batch=np.arange(60) % 3)
    with pytest.raises(InvalidArgument, match="identity_col 'Batch' is not a column; did you"):
        modelyard.automl.classify(data, "y", identity_col=["Batch"], max_trials=1)
    with pytest.raises(InvalidArgument, match="identity_col 'y' is also target_col"):
        modelyard.automl.classify(data, "y", identity_col="y", max_trials=1)
    with pytest.raises(InvalidArgument, match="identity_col 'batch' is also exclude_cols"):
        modelyard.automl.regress(
            data, "x", identity_col="batch", exclude_cols=["batch"], max_trials=1
        )
    assert fluent.search_runs(search_all_experiments=True).empty


def test_the_logged_model_takes_the_frame_it_was_trained_from(fluent, tmp_path) -> None:
    data = _binary()
    data["flag"] = data["x"] > 0.5  # bool: the training CSV holds it as 0.0 / 1.0
    data["count"] = np.arange(len(data)) % 4
    result = modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.signature is not None
    types = {s.name: s.type for s in model.signature.inputs if isinstance(s, ColumnSpec)}
    assert types == {"x": "double", "flag": "boolean", "count": "long"}
    assert model.input_example()["flag"].dtype == bool
    assert len(model.predict(data.drop(columns=["y"]))) == len(data)


def test_pos_label_as_text_names_a_whole_number_target_with_gaps(fluent, tmp_path) -> None:
    data = _binary().astype({"y": float})
    data.loc[:3, "y"] = np.nan  # 0/1 stored as float because values are missing
    result = modelyard.automl.classify(data, "y", pos_label="1", max_trials=1, output_dir=tmp_path)
    assert fluent.client().get_run(result.parent_run_id).data.params["pos_label"] == "1"
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert set(np.asarray(model.predict(data.drop(columns=["y"])))) <= {0, 1}


@pytest.mark.parametrize("name", ["random_forest", "extra_trees"])
def test_weighted_forests_fit_labels_that_look_like_numbers(name: str) -> None:
    """scikit-learn 1.9 forests with class weights failed every fit on labels "0" / "1"."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = np.array(["0", "1"] * 29 + ["rare", "rare"], dtype=object)
    ctx = families.Context(CLASSIFICATION, n_rows=60, n_classes=3, imbalanced=True)
    family = next(f for f in families.FAMILIES if f.name == name)
    params = {k: v for k, v in family.enqueued(ctx).items() if k != "model_family"}
    assert params[f"{name}.class_weight"] == "balanced"
    model = families.estimator(family.suggest(optuna.trial.FixedTrial(params), ctx))
    model.fit(X, y)
    assert set(model.predict(X)) <= {"0", "1", "rare"}
    assert list(model.classes_) == ["0", "1", "rare"]


def test_classes_rarer_than_the_folds_are_reported(fluent, tmp_path) -> None:
    data = _binary().astype({"y": str})
    data.loc[[0, 1], "y"] = "rare"
    result = modelyard.automl.classify(data, "y", max_trials=1, output_dir=tmp_path)
    assert any(
        "classes {'rare': 2} have fewer train + validation rows than the 5 CV folds" in w
        for w in result.warnings
    )


@pytest.mark.parametrize("rare_rows", [1, 2, 3, 4, 5, 6])
def test_svm_is_left_out_exactly_when_calibration_cannot_fit(rare_rows: int) -> None:
    """A class too rare for calibration's folds failed every SVM trial; the rule that leaves
    the family out must match what CalibratedClassifierCV can fit in the search's CV folds."""
    from modelyard.automl import api

    rng = np.random.default_rng(1)
    y = pd.Series(["a", "b"] * 20 + ["rare"] * rare_rows)
    df = pd.DataFrame({"x": rng.normal(size=len(y)), "y": y, SPLIT_COL: "train"})
    stratified = rare_rows >= 5
    ctx = families.Context(
        CLASSIFICATION,
        n_rows=len(df),
        n_classes=3,
        rarest_fit_class=api._rarest_fit_class(df, "y", 5, stratified, seed=0),
    )
    svm = next(f for f in families.FAMILIES if f.name == "svm")
    spec = svm.suggest(optuna.trial.FixedTrial({"svm.C": 1.0, "svm.gamma": 0.01}), ctx)
    fits = [np.arange(len(df))]
    fits += [rows for rows, _ in search.splitter(5, stratified, seed=0).split(df[["x"]], y)]
    fitted = True
    for rows in fits:
        try:
            families.estimator(spec).fit(df[["x"]].iloc[rows], y.iloc[rows])
        except ValueError:
            fitted = False
    assert svm.too_few_class_rows(ctx) == (not fitted)


def test_a_one_row_class_leaves_svm_out_instead_of_failing_its_trials(fluent, tmp_path) -> None:
    data = _binary(80).astype({"y": str})
    data.loc[0, "y"] = "rare"
    result = modelyard.automl.classify(
        data,
        "y",
        max_trials=3,
        cv_folds=None,
        exclude_frameworks=["lightgbm", "xgboost"],
        output_dir=tmp_path,
    )
    assert "svm" not in set(result.trials["model_family"])
    assert (result.trials["state"] == "COMPLETE").all()
    assert any(w.startswith("svm left out: a class has only 1 row(s)") for w in result.warnings)
    params = fluent.client().get_run(result.parent_run_id).data.params
    assert "svm" not in params["model_families"].split(",")


def test_svm_whose_fit_cannot_be_stopped_is_left_out_of_larger_tables_with_a_note(
    fluent, tmp_path
) -> None:
    """A kernel SVM's fit is one call into libsvm that the deadline cannot stop: at 10,000 rows
    (where it was tried) one fit took 22 s, and a trial makes up to 11. It is tried on up to
    SVM_MAX_ROWS rows; above, it is left out with a note, as k-nearest neighbours are above
    theirs."""
    limit = families.SVM_MAX_ROWS
    at_limit = families.Context(CLASSIFICATION, n_rows=limit, n_classes=2)
    assert "svm" in {f.name for f in families.available(at_limit)}
    result = modelyard.automl.classify(
        _binary(limit + 1), "y", max_trials=1, cv_folds=None, output_dir=tmp_path
    )
    params = fluent.client().get_run(result.parent_run_id).data.params
    assert "svm" not in params["model_families"].split(",")
    assert "knn" in params["model_families"].split(",")
    (note,) = [w for w in result.warnings if w.startswith("svm left out")]
    assert f"{limit + 1:,} rows, more than the {limit:,}" in note


@pytest.mark.parametrize("in_thread", [False, True], ids=["main_thread", "other_thread"])
def test_a_fit_longer_than_the_budget_is_stopped_and_the_best_model_kept(
    fluent, monkeypatch, tmp_path, in_thread: bool
) -> None:
    """The budget was checked only between CV folds (never without CV), so one long fit ran to
    its end: a 30 s classify took 79 s on a 20k-row table, a forest fitting for 55 s. A fit
    still running at the deadline is stopped now; the trial ends PRUNED, the best model stays.
    Also from a thread other than the main one (a notebook's worker, a web handler), where
    SIGALRM never arrives and the 120 s fit ran to its end."""
    real = search.TabularSearch.evaluate
    spun: list[float] = []

    def evaluate(self: search.TabularSearch, spec: families.Spec) -> object:
        if spec.cls == "LGBMClassifier":
            return real(self, spec)
        end = time.monotonic() + 120  # a fit far longer than the budget, in Python as fits are
        while time.monotonic() < end:
            pass
        spun.append(time.monotonic())
        return real(self, spec)

    monkeypatch.setattr(search.TabularSearch, "evaluate", evaluate)
    results: list[AutoMLResult] = []

    def classify() -> None:
        results.append(
            modelyard.automl.classify(
                _binary(), "y", timeout_minutes=0.25, cv_folds=None, output_dir=tmp_path
            )
        )

    if in_thread:
        worker = threading.Thread(target=classify)
        worker.start()
        worker.join()
    else:
        classify()
    (result,) = results

    assert spun == []  # no 120 s fit ran to its end
    states = dict(zip(result.trials["model_family"], result.trials["state"], strict=True))
    assert states.pop("lightgbm") == "COMPLETE"
    # Which family was running when the budget ran out depends on the search's order.
    assert states and set(states.values()) == {"PRUNED"}, states
    assert result.best_trial.model_family == "lightgbm"
    assert modelyard.pyfunc.load_model(result.best_trial.model_uri).predict(_binary()).size == 60
    for pruned in result.trials.loc[result.trials["state"] == "PRUNED", "run_id"]:
        stopped = fluent.client().get_run(pruned)
        assert stopped.info.status == "KILLED"
        assert stopped.data.tags["modelyard.automl.stopped"] == "the time budget ran out mid-trial"


def test_the_deadline_timer_leaves_the_callers_own_timer_and_handler_as_they_were() -> None:
    """pytest-timeout, or a caller's own alarm: its handler comes back and its timer is re-armed
    with the time it had left."""
    from modelyard.automl.deadline import OutOfTime, interrupt_at

    def theirs(signum: int, frame: object) -> None:
        raise AssertionError("the caller's alarm")

    before = signal.signal(signal.SIGALRM, theirs)
    before_timer = signal.setitimer(signal.ITIMER_REAL, 1000)
    try:
        with pytest.raises(OutOfTime), interrupt_at(time.monotonic() + 0.2):
            end = time.monotonic() + 30
            while time.monotonic() < end:
                pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert signal.getsignal(signal.SIGALRM) is theirs and 990 < left <= 1000
    finally:
        signal.setitimer(signal.ITIMER_REAL, *before_timer)
        signal.signal(signal.SIGALRM, before)


def test_time_col_splits_train_validation_and_test_by_time(fluent, tmp_path) -> None:
    """time_col (as Databricks AutoML's for classification and regression): the earliest rows
    train, the latest test. There was none: a random split (and shuffled CV) scored models on
    the past after training on the future."""
    data = _binary(100).assign(
        when=pd.date_range("2024-01-01", periods=100, freq="D").astype(str)[::-1]
    )
    result = modelyard.automl.classify(
        data, "y", time_col="when", max_trials=1, output_dir=tmp_path
    )
    c = fluent.client()
    params = c.get_run(result.parent_run_id).data.params
    assert params["cv_folds"] == "" and params["split"] == "time:when:0.2/0.2"  # no CV
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    when = pd.to_datetime(csv["when"])
    parts = {p: when[csv[SPLIT_COL] == p] for p in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [60, 20, 20]
    assert parts["train"].max() < parts["val"].min() <= parts["val"].max() < parts["test"].min()
    # Split by time, yet not trained on it: the split is drawn before exclude_cols drops it.
    excluded = modelyard.automl.classify(
        data, "y", time_col="when", exclude_cols=["when"], max_trials=1, output_dir=tmp_path
    )
    csv = pd.read_csv(c.download_artifacts(excluded.parent_run_id, "data/training_data.csv"))
    assert "when" not in csv.columns and csv[SPLIT_COL].tolist()[:20] == ["test"] * 20  # latest


def test_time_col_is_refused_with_cv_folds_or_a_split_col(fluent) -> None:
    data = _binary(100).assign(t=np.arange(100), s="train")
    with pytest.raises(InvalidArgument, match="cv_folds 5 with time_col") as refused:
        modelyard.automl.classify(data, "y", time_col="t", cv_folds=5, max_trials=1)
    assert refused.value.field == "cv_folds"
    with pytest.raises(InvalidArgument, match="time_col 't' with split_col"):
        modelyard.automl.regress(data, "x", time_col="t", split_col="s", max_trials=1)
    with pytest.raises(InvalidArgument, match="time_col 'T' is not a column; did you mean 't'"):
        modelyard.automl.classify(data, "y", time_col="T", max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty
