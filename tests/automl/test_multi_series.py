"""Multi-series forecasting (Databricks AutoML's identity_col): one model per series, each
fitted on its own history, and a logged model that answers each row with its series' model."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import modelyard.automl
import modelyard.pyfunc
import modelyard.sklearn
from modelyard.automl.dataset import SPLIT_COL
from modelyard.cli import app
from modelyard.errors import InvalidArgument
from modelyard.models.signature import ColumnSpec

ONE_FAMILY = ["sklearn", "lightgbm", "xgboost"]  # statsmodels only: exponential smoothing first


def _stores(days: int = 45) -> pd.DataFrame:
    """Two stores on the same days, nothing alike: a weekly cycle near 100, a trend near 10."""
    rng = np.random.default_rng(4)
    t = np.arange(days)
    day = pd.date_range("2024-01-01", periods=days, freq="D")
    a = 100 + np.array([0, 3, 6, 9, 6, 3, 0])[t % 7] + rng.normal(0, 0.5, days)
    b = 10 + 0.5 * t + rng.normal(0, 0.2, days)
    return pd.concat(
        [
            pd.DataFrame({"day": day, "store": "a", "sales": a}),
            pd.DataFrame({"day": day, "store": "b", "sales": b}),
        ]
    ).sample(frac=1.0, random_state=0)  # rows in no order


def _forecast(data: pd.DataFrame, tmp_path, **kwargs) -> modelyard.automl.AutoMLResult:
    return modelyard.automl.forecast(
        data,
        "sales",
        "day",
        horizon=5,
        max_trials=1,
        exclude_frameworks=ONE_FAMILY,
        output_dir=tmp_path,
        **kwargs,
    )


def test_each_series_is_forecast_from_its_own_history(fluent, tmp_path) -> None:
    data = _stores()
    both = _forecast(data, tmp_path / "both", identity_col="store")
    c = fluent.client()
    params = c.get_run(both.parent_run_id).data.params
    assert (params["identity_cols"], params["n_series"]) == ("store", "2")
    csv = pd.read_csv(c.download_artifacts(both.parent_run_id, "data/training_data.csv"))
    test = csv[csv[SPLIT_COL] == "test"]
    assert test.groupby("store").size().to_dict() == {"a": 5, "b": 5}  # each its own last days

    model = modelyard.pyfunc.load_model(both.best_trial.model_uri)
    rows = test[["store", "day"]].assign(day=lambda f: pd.to_datetime(f["day"]))
    rows = rows.sample(frac=1.0, random_state=1).reset_index(drop=True)  # series interleaved
    predicted = pd.Series(model.predict(rows))
    alone = {}
    for store in ("a", "b"):
        own = _forecast(data[data["store"] == store].drop(columns="store"), tmp_path / store)
        mine = rows["store"] == store
        own_model = modelyard.pyfunc.load_model(own.best_trial.model_uri)
        expected = own_model.predict(rows.loc[mine, ["day"]])
        assert predicted[mine].to_numpy() == pytest.approx(np.asarray(expected))
        alone[store] = own.best_trial.metrics
    assert predicted[rows["store"] == "a"].between(95, 115).all()
    assert predicted[rows["store"] == "b"].between(25, 40).all()
    for name in ("val_smape", "test_mae"):  # as many points each: weighted is the plain mean
        mean = (alone["a"][name] + alone["b"][name]) / 2
        assert both.best_trial.metrics[name] == pytest.approx(mean)

    with pytest.raises(InvalidArgument, match="no series store='c' in the training data"):
        model.predict(rows.assign(store="c"))


def test_metrics_over_series_weigh_each_series_by_its_scored_points(fluent, tmp_path) -> None:
    """Each metric was the plain mean over series: a series scored on 4 points counted as much
    as one scored on 5, a short history's training fit as much as one 3 times as long, and the
    mean of two RMSEs is no RMSE of their points."""
    long = _stores(120)
    long = long[long["store"] == "b"].sort_values("day")
    gap = long["day"].iloc[-7]  # a day of b's validation period without a value: not scored
    data = pd.concat([_stores(45).query("store == 'a'"), long[long["day"] != gap]])
    result = _forecast(data, tmp_path, identity_col="store")
    c = fluent.client()
    params = c.get_run(result.parent_run_id).data.params
    assert params["series_metrics"] == "each series weighted by its scored points"
    listed = c.download_artifacts(result.best_trial.run_id, "per_series_metrics.json")
    rows = {r["store"]: r for r in json.loads(Path(listed).read_text())["series"]}
    a, b = rows["a"], rows["b"]
    assert (a["val_points"], b["val_points"], a["test_points"], b["test_points"]) == (5, 4, 5, 5)
    assert b["train_points"] > 2 * a["train_points"]
    for store in ("a", "b"):  # each series' metrics: those of its forecast alone
        alone = _forecast(data[data["store"] == store].drop(columns="store"), tmp_path / store)
        for name in ("train_mae", "val_smape", "test_rmse"):
            assert rows[store][name] == pytest.approx(alone.best_trial.metrics[name])
    got = result.best_trial.metrics
    for name in ("train_mae", "val_smape", "val_mase", "test_mae"):
        split = name.split("_")[0]
        n_a, n_b = a[f"{split}_points"], b[f"{split}_points"]
        assert got[name] == pytest.approx((n_a * a[name] + n_b * b[name]) / (n_a + n_b))
    assert got["val_rmse"] == pytest.approx(
        np.sqrt((5 * a["val_rmse"] ** 2 + 4 * b["val_rmse"] ** 2) / 9)
    )
    assert got["train_mae"] != pytest.approx((a["train_mae"] + b["train_mae"]) / 2)


def test_numeric_series_ids_stay_numbers(fluent, tmp_path) -> None:
    """Store ids 17 and 23 were made text: the logged model's signature then refused the ids
    as the data has them ("column 'store' has type long, but the model expects string")."""
    data = _stores().assign(store=lambda f: np.where(f["store"] == "a", 17, 23))
    result = _forecast(data, tmp_path, identity_col="store")
    c = fluent.client()
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert sorted(csv["store"].unique().tolist()) == [17, 23]
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    assert model.signature is not None
    inputs = [(s.name, s.type) for s in model.signature.inputs if isinstance(s, ColumnSpec)]
    assert inputs == [("store", "long"), ("day", "datetime")]
    day = pd.Timestamp(csv["day"].max())
    ahead = model.predict(pd.DataFrame({"store": [23, 17], "day": [day, day]}))
    assert 25 < ahead[0] < 40 and 95 < ahead[1] < 115
    # Ids as floats (JSON, a column with a gap elsewhere) were refused by the signature:
    # "column 'store' has type double, but the model expects long".
    as_floats = model.predict(pd.DataFrame({"store": [23.0, 17.0], "day": [day, day]}))
    assert list(as_floats) == pytest.approx(list(ahead))
    with pytest.raises(InvalidArgument, match=r"column 'store' .* no whole number .*: 17\.5") as no:
        model.predict(pd.DataFrame({"store": [23.0, 17.5], "day": [day, day]}))
    assert no.value.field == "store"


def test_series_ids_are_matched_by_value_as_the_training_type(fluent, tmp_path) -> None:
    """Ids were matched as text: the series 17 was no series when asked for as 17.0 (a column
    with a missing value elsewhere is float), text ids took numbers, and in training the ids 1
    and "1" were one series, their rows averaged together."""
    data = _stores().assign(store=lambda f: np.where(f["store"] == "a", 17, 23))
    result = _forecast(data, tmp_path / "numbers", identity_col="store")
    model = modelyard.sklearn.load_model(result.best_trial.model_uri)  # no signature between
    csv = pd.read_csv(
        fluent.client().download_artifacts(result.parent_run_id, "data/training_data.csv")
    )
    day = pd.Timestamp(csv["day"].max()) + pd.Timedelta(days=1)
    as_int = model.predict(pd.DataFrame({"store": [17, 23], "day": [day, day]}))
    for ids in ([17.0, 23.0], ["17", "23"], np.array([17, 23], dtype=np.int32)):
        got = model.predict(pd.DataFrame({"store": ids, "day": [day, day]}))
        assert got == pytest.approx(as_int)
    with pytest.raises(
        InvalidArgument,
        match=r"identity column 'store' holds whole-number ids in the training data, and 1 "
        r"input row\(s\) hold ids that are none: 17.5 \(float\)",
    ):
        model.predict(pd.DataFrame({"store": [17.5, 23.0], "day": [day, day]}))

    text = _stores().assign(store=lambda f: np.where(f["store"] == "a", "1", "2"))
    result = _forecast(text, tmp_path / "text", identity_col="store")
    model = modelyard.sklearn.load_model(result.best_trial.model_uri)
    assert np.isfinite(model.predict(pd.DataFrame({"store": ["1"], "day": [day]}))).all()
    with pytest.raises(InvalidArgument, match=r"holds text ids in the training data.*1 \(int\)"):
        model.predict(pd.DataFrame({"store": [1], "day": [day]}))

    mixed = _stores()  # store a: the number 1; store b: the text "1"
    mixed["store"] = [1 if v == "a" else "1" for v in mixed["store"]]
    with pytest.raises(InvalidArgument, match=r"identity_col 'store' mixes types of id \(int, str"):
        _forecast(mixed, tmp_path / "mixed", identity_col="store")


def test_identity_cols_for_forecasting_are_checked(fluent) -> None:
    data = _stores()
    with pytest.raises(InvalidArgument, match="pass identity_col='store' to forecast each"):
        modelyard.automl.forecast(data, "sales", "day", horizon=5, max_trials=1)
    with pytest.raises(InvalidArgument, match="identity_col 'Store' is not a column"):
        modelyard.automl.forecast(data, "sales", "day", 5, identity_col="Store", max_trials=1)
    with pytest.raises(InvalidArgument, match="identity_col 'day' is also time_col"):
        modelyard.automl.forecast(data, "sales", "day", 5, identity_col="day", max_trials=1)
    short = data.sort_values("day").groupby("store").head(12)  # 12 days each, 20 needed
    with pytest.raises(
        InvalidArgument,
        match=r"all 2 series are too short: the longest has 12 'D' periods, "
        r"and a series needs 20 \(2 x horizon 5 held out, 10 to fit on\)",
    ):
        modelyard.automl.forecast(short, "sales", "day", 5, identity_col="store", max_trials=1)
    assert fluent.search_runs(search_all_experiments=True).empty


def _with_short_store(data: pd.DataFrame, store: str = "c", days: int = 3) -> pd.DataFrame:
    day = pd.date_range("2024-01-01", periods=days)
    return pd.concat([data, pd.DataFrame({"day": day, "store": store, "sales": 1.0})])


def _short(points: int) -> str:
    return f"{points} 'D' periods, fewer than the 20 a series needs"


def test_a_series_too_short_is_skipped_and_reported_not_the_whole_run(fluent, tmp_path) -> None:
    """One store with 3 days refused the forecast of every other store."""
    data = _with_short_store(_with_short_store(_stores(), "c", 3), "d", 19)
    result = _forecast(data, tmp_path, identity_col="store")
    c = fluent.client()
    run = c.get_run(result.parent_run_id)
    assert (run.data.params["n_series"], run.data.params["n_series_skipped"]) == ("2", "2")
    assert run.data.tags["modelyard.automl.skipped_series"] == "2"
    listed = c.download_artifacts(result.parent_run_id, "data/skipped_series.json")
    expected = [
        {"series": {"store": "c"}, "points": 3, "minimum": 20, "reason": _short(3)},
        {"series": {"store": "d"}, "points": 19, "minimum": 20, "reason": _short(19)},
    ]
    assert json.loads(Path(listed).read_text()) == {"skipped_series": expected}
    assert [dataclasses.asdict(s) for s in result.skipped_series] == expected
    assert any(
        w.startswith("2 of 4 series skipped, AutoML cannot forecast them: ")
        and f"store='c' ({_short(3)}); store='d' ({_short(19)})" in w
        for w in result.warnings
    )
    csv = pd.read_csv(c.download_artifacts(result.parent_run_id, "data/training_data.csv"))
    assert sorted(csv["store"].unique()) == ["a", "b"]

    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    day = pd.Timestamp(csv["day"].max()) + pd.Timedelta(days=1)
    assert np.isfinite(model.predict(pd.DataFrame({"store": ["a"], "day": [day]}))).all()
    with pytest.raises(InvalidArgument, match="series store='c' was skipped in train"):
        model.predict(pd.DataFrame({"store": ["c"], "day": [day]}))


def test_a_sparse_series_or_one_without_validation_values_is_skipped_with_its_reason(
    fluent, tmp_path
) -> None:
    """A series too sparse for the frequency, or with no value in its validation period,
    refused every other series' forecast; each is now skipped, saying why."""
    days = pd.date_range("2024-01-01", periods=45, freq="D")
    sparse = pd.DataFrame({"day": days[::3], "store": "e", "sales": 5.0})  # 15 of 43 days
    gap = pd.DataFrame({"day": days, "store": "f", "sales": np.arange(45.0)})
    gap = gap[~gap["day"].isin(days[35:40])]  # the 5 days held out for validation
    result = _forecast(pd.concat([_stores(), sparse, gap]), tmp_path, identity_col="store")
    expected = [
        {
            "series": {"store": "e"},
            "points": 43,
            "minimum": 20,
            "reason": "too sparse for 'D': only 15 of its 43 periods have a value",
        },
        {
            "series": {"store": "f"},
            "points": 45,
            "minimum": 20,
            "reason": "its validation period (the 5 'D' periods before its last 5, from "
            "2024-02-05) has no value to score on",
        },
    ]
    assert [dataclasses.asdict(s) for s in result.skipped_series] == expected
    c = fluent.client()
    listed = c.download_artifacts(result.parent_run_id, "data/skipped_series.json")
    assert json.loads(Path(listed).read_text()) == {"skipped_series": expected}
    assert c.get_run(result.parent_run_id).data.params["n_series"] == "2"
    model = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    with pytest.raises(InvalidArgument, match=r"store='e' was skipped in training \(too sparse"):
        model.predict(pd.DataFrame({"store": ["e"], "day": [pd.Timestamp("2024-03-01")]}))

    with pytest.raises(
        InvalidArgument,
        match=r"none of the 2 series can be forecast \(store='e': too sparse for 'D'.*"
        r"store='f': its validation period",
    ):
        _forecast(pd.concat([sparse, gap]), tmp_path / "none", identity_col="store")


def _as_saved_before_typed_ids(model: Any, dtypes: bool = True) -> dict[str, Any]:
    """The pickled state of `model` as Modelyard wrote it before series ids were typed: each
    key the text of its ids (str(17)), and, older still, no `dtypes` nor `skipped` at all."""
    state = dict(model.__dict__)
    state["models"] = {tuple(str(v) for v in k): m for k, m in model.models.items()}
    state["skipped"] = {tuple(str(v) for v in k): why for k, why in model.skipped.items()}
    if not dtypes:
        del state["dtypes"], state["skipped"]
    return state


def test_a_model_saved_with_text_keys_matches_ids_as_it_was_trained(fluent, tmp_path) -> None:
    """Models saved before ids were typed keyed series by text ("17"): typed ids (17) then
    matched no series of theirs, and the oldest (no recorded types) failed on any input."""
    data = _with_short_store(_stores(), "c").assign(
        store=lambda f: f["store"].map({"a": 17, "b": 23, "c": 5})
    )
    result = _forecast(data, tmp_path, identity_col="store")
    model = modelyard.sklearn.load_model(result.best_trial.model_uri)
    day = pd.Timestamp("2024-02-20")
    expected = model.predict(pd.DataFrame({"store": [17, 23], "day": [day, day]}))

    old = object.__new__(type(model))
    old.__dict__.update(_as_saved_before_typed_ids(model))
    modelyard.sklearn.save_model(old, tmp_path / "typed_as_text")
    loaded = modelyard.sklearn.load_model(str(tmp_path / "typed_as_text"))
    for ids in ([17, 23], [17.0, 23.0], ["17", "23"]):
        got = loaded.predict(pd.DataFrame({"store": ids, "day": [day, day]}))
        np.testing.assert_allclose(got, expected)
    with pytest.raises(InvalidArgument, match=r"store=5 was skipped in training \(3 'D'"):
        loaded.predict(pd.DataFrame({"store": [5], "day": [day]}))

    oldest = object.__new__(type(model))
    oldest.__dict__.update(_as_saved_before_typed_ids(model, dtypes=False))
    modelyard.sklearn.save_model(oldest, tmp_path / "text_only")
    loaded = modelyard.sklearn.load_model(str(tmp_path / "text_only"))
    got = loaded.predict(pd.DataFrame({"store": ["17", "23"], "day": [day, day]}))
    np.testing.assert_allclose(got, expected)
    with pytest.raises(InvalidArgument, match=r"holds text ids in the training data"):
        loaded.predict(pd.DataFrame({"store": [17], "day": [day]}))


def test_date_ids_match_by_value_as_timestamps_or_iso_text(fluent, server, tmp_path) -> None:
    """A date identity column (a cohort by its launch day) was written as text: predict then
    refused the Timestamps the data held, and took only the text as the CSV had written it."""
    launch = {"a": pd.Timestamp("2023-05-01"), "b": pd.Timestamp("2023-06-01")}
    data = _with_short_store(_stores(), "c").assign(
        store=lambda f: f["store"].map({**launch, "c": pd.Timestamp("2023-07-01")})
    )
    result = _forecast(data, tmp_path, identity_col="store")
    model = modelyard.sklearn.load_model(result.best_trial.model_uri)
    day = pd.Timestamp("2024-02-20")
    typed = model.predict(pd.DataFrame({"store": list(launch.values()), "day": [day, day]}))
    assert np.isfinite(typed).all() and typed[0] != typed[1]
    for ids in (["2023-05-01", "2023-06-01"], ["2023-05-01T00:00:00", "2023-06-01T00:00:00"]):
        got = model.predict(pd.DataFrame({"store": ids, "day": [day, day]}))
        np.testing.assert_allclose(got, typed)
    with pytest.raises(InvalidArgument, match=r"store=Timestamp\('2023-07-01 00:00:00'\) was "):
        model.predict(pd.DataFrame({"store": ["2023-07-01"], "day": [day]}))
    with pytest.raises(InvalidArgument, match=r"holds date/time ids in the training data"):
        model.predict(pd.DataFrame({"store": [17], "day": [day]}))
    pyfunc = modelyard.pyfunc.load_model(result.best_trial.model_uri)
    np.testing.assert_allclose(
        pyfunc.predict(pd.DataFrame({"store": list(launch.values()), "day": [day, day]})), typed
    )
    c = fluent.client()
    listed = c.download_artifacts(result.parent_run_id, "data/skipped_series.json")
    assert json.loads(Path(listed).read_text())["skipped_series"][0]["series"] == {
        "store": "2023-07-01T00:00:00"
    }

    env = {**os.environ, "MODELYARD_URI": server.address}
    script = str(result.best_trial.source_path)
    ran = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr
    again = modelyard.sklearn.load_model(ran.stdout.splitlines()[-1].split()[-1])
    got = again.predict(pd.DataFrame({"store": ["2023-05-01", "2023-06-01"], "day": [day, day]}))
    np.testing.assert_allclose(got, typed)


def test_the_generated_script_knows_the_skipped_series(fluent, server, tmp_path) -> None:
    """The script's model was built without them: asked for one, it said the series was not
    in the training data, where the model AutoML logged says it was skipped, and why."""
    result = _forecast(_with_short_store(_stores()), tmp_path, identity_col="store")
    env = {**os.environ, "MODELYARD_URI": server.address}
    ran = subprocess.run(
        [sys.executable, str(result.best_trial.source_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    model = modelyard.sklearn.load_model(ran.stdout.splitlines()[-1].split()[-1])
    day = pd.Timestamp("2024-03-01")
    with pytest.raises(
        InvalidArgument,
        match=r"store='c' was skipped in training \(3 'D' periods, fewer than the 20 a series "
        r"needs\): it has no model",
    ):
        model.predict(pd.DataFrame({"store": ["c"], "day": [day]}))


def test_the_cli_lists_the_skipped_series(fluent, server, tmp_path) -> None:
    data = tmp_path / "stores.csv"
    _with_short_store(_stores()).to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "sales", "--problem", "forecasting"]
    args += ["--time-col", "day", "--horizon", "5", "--identity-col", "store", "--max-trials"]
    args += ["1", "--uri", server.address, "--output-dir", str(tmp_path / "code")]
    for name in ONE_FAMILY:
        args += ["--exclude-framework", name]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "Skipped series (1), AutoML cannot forecast them: no model" in shown.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.output.splitlines()]
    assert ["store", "periods", "minimum", "reason"] in [
        [c.strip() for c in line.split("┃")[1:-1]] for line in shown.output.splitlines()
    ]
    assert ["c", "3", "20", _short(3)] in cells
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    expected = {"series": {"store": "c"}, "points": 3, "minimum": 20, "reason": _short(3)}
    assert summary["skipped_series"] == [expected]


def test_multi_series_from_the_cli_and_the_generated_script(fluent, server, tmp_path) -> None:
    data = tmp_path / "stores.csv"
    _stores().to_csv(data, index=False)
    args = ["automl", "run", "--data", str(data), "--target", "sales", "--problem", "forecasting"]
    args += ["--time-col", "day", "--horizon", "5", "--identity-col", "store", "--max-trials"]
    args += ["2", "--uri", server.address, "--json", "--output-dir", str(tmp_path / "code")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    params = fluent.client().get_run(summary["parent_run_id"]).data.params
    assert params["n_series"] == "2"
    env = {**os.environ, "MODELYARD_URI": server.address}
    for script in sorted((tmp_path / "code").glob("trial_*.py")):
        ran = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        logged = ran.stdout.splitlines()[-1].split()[-1]  # "logged run ...; model runs:/.../model"
        model = modelyard.pyfunc.load_model(logged)
        assert model.signature is not None
        assert [s.name for s in model.signature.inputs] == ["store", "day"]
    printed = dict(line.split()[:2] for line in ran.stdout.splitlines()[:-1])
    trial = fluent.client().get_run(
        fluent.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.modelyard.automl.source = 'code/{script.name}'",
        )["run_id"][0]
    )
    assert float(printed["test_smape"]) == pytest.approx(trial.data.metrics["test_smape"])
