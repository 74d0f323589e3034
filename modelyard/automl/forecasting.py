"""AutoML for time series: statistical models and regressors on lag features, searched.

The series is put on a regular grid (`frequency`; each period the mean of its rows, periods
without one interpolated to fit but never scored), then split by time: the last `horizon`
points are the test set and the `horizon` before them the validation set. Each trial fits on
the training points and forecasts the validation points; then it refits on train + validation
and forecasts the test points. The refitted model is the one logged for the best trial.

With `identity_col` (Databricks AutoML's multi-series forecasting) each series (rows sharing
the identity columns' values) gets its own grid, split and model, fitted on its history only;
a trial's metrics are over every series' scored points together (each series' metric weighted
by its points in that split, RMSE the root of the weighted mean square: a 5-point series weighs
a thousandth of a 5000-point one), and each series' own metrics are the trial's artifact
`per_series_metrics.json`.

Families: Holt-Winters exponential smoothing and seasonal ARIMA (statsmodels), Ridge
(scikit-learn) and LightGBM / XGBoost on lag, rolling-mean and calendar features, and with
`country_code` (Databricks AutoML's) the number of that country's public holidays in each
period (the `holidays` package): a setting of the lag models, so it is in each generated script.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import optuna
import pandas as pd

import modelyard.sklearn
from modelyard import fluent
from modelyard.automl import codegen, common, dataset, families, metrics, profile, search
from modelyard.automl.codegen import Origin
from modelyard.automl.forecasters import (
    ForecastModel,
    LagForecaster,
    MultiSeriesForecastModel,
    StatsmodelsForecaster,
    check_country_code,
    describe,
    fill_gaps,
    id_literal,
    is_datetime,
    plain_id,
    season_length,
    series_key,
)
from modelyard.automl.metrics import FORECASTING
from modelyard.automl.result import AutoMLResult, SkippedSeries
from modelyard.errors import InvalidArgument


@dataclass(frozen=True)
class ForecastSpec:
    """A forecaster to build: statsmodels (`settings`) or a regressor on lags (`regressor`)."""

    kind: str  # "exponential_smoothing", "arima" or "lags"
    settings: dict[str, Any]
    regressor: families.Spec | None = None


@dataclass(frozen=True)
class Series:
    n_train: int
    season: int
    positive: bool
    country_code: str | None = None  # holiday features for the lag models


# -- families ----------------------------------------------------------------------------------


def _exponential_smoothing(trial: optuna.Trial, s: Series) -> ForecastSpec:
    trend = trial.suggest_categorical("exponential_smoothing.trend", [None, "add"])
    settings: dict[str, Any] = {"trend": trend}
    if trend:
        settings["damped_trend"] = trial.suggest_categorical(
            "exponential_smoothing.damped_trend", [False, True]
        )
    if s.season > 1 and s.n_train >= 2 * s.season + 2:
        choices = [None, "add", "mul"] if s.positive else [None, "add"]
        seasonal = trial.suggest_categorical("exponential_smoothing.seasonal", choices)
        if seasonal:
            settings.update(seasonal=seasonal, seasonal_periods=s.season)
    return ForecastSpec("exponential_smoothing", settings)


def _arima(trial: optuna.Trial, s: Series) -> ForecastSpec:
    p = trial.suggest_int("arima.p", 0, 3)
    d = trial.suggest_int("arima.d", 0, 1)
    q = trial.suggest_int("arima.q", 0, 2)
    settings: dict[str, Any] = {"order": (p, d, q)}
    seasonal_d = 0
    if s.season > 1 and s.n_train >= 3 * s.season:
        big_p = trial.suggest_int("arima.P", 0, 1)
        seasonal_d = trial.suggest_int("arima.D", 0, 1)
        big_q = trial.suggest_int("arima.Q", 0, 1)
        settings["seasonal_order"] = (big_p, seasonal_d, big_q, s.season)
    settings["trend"] = "c" if d + seasonal_d == 0 else "n"
    return ForecastSpec("arima", settings)


def _lag_settings(trial: optuna.Trial, name: str, s: Series) -> dict[str, Any]:
    most = max(2, min(3 * s.season, s.n_train // 4))
    n_lags = trial.suggest_int(f"{name}.n_lags", 1, most)
    # A season longer than half the history (52 weeks of 60) is neither a lag nor the rolling
    # window: a 52-point window left no training row, and every lag trial failed.
    seasonal = 1 < s.season < s.n_train // 2
    lags = sorted({*range(1, n_lags + 1), *([s.season] if seasonal else [])})
    settings: dict[str, Any] = {
        "lags": lags,
        "window": s.season if seasonal else 3,
        "difference": trial.suggest_categorical(f"{name}.difference", [False, True]),
    }
    if s.country_code:  # a setting, so the generated script builds the same features
        settings["country_code"] = s.country_code
    return settings


def _ridge(trial: optuna.Trial, s: Series) -> ForecastSpec:
    settings = _lag_settings(trial, "ridge", s)
    alpha = trial.suggest_float("ridge.alpha", 1e-4, 100.0, log=True)
    return ForecastSpec(
        "lags", settings, families.Spec("sklearn.linear_model", "Ridge", {"alpha": alpha})
    )


def _boosting(name: str) -> Any:
    def suggest(trial: optuna.Trial, s: Series) -> ForecastSpec:
        settings = _lag_settings(trial, name, s)
        kwargs: dict[str, Any] = {
            "n_estimators": trial.suggest_int(f"{name}.n_estimators", 20, 500, log=True),
            "learning_rate": trial.suggest_float(f"{name}.learning_rate", 0.01, 0.3, log=True),
        }
        if name == "lightgbm":
            kwargs["num_leaves"] = trial.suggest_int("lightgbm.num_leaves", 4, 64, log=True)
            kwargs["min_child_samples"] = trial.suggest_int(
                "lightgbm.min_child_samples", 2, 30, log=True
            )
            kwargs.update(random_state=0, n_jobs=1, verbose=-1)
            return ForecastSpec(
                "lags", settings, families.Spec("lightgbm", "LGBMRegressor", kwargs)
            )
        kwargs["max_depth"] = trial.suggest_int("xgboost.max_depth", 2, 8)
        kwargs.update(random_state=0, n_jobs=1, verbosity=0)
        return ForecastSpec("lags", settings, families.Spec("xgboost", "XGBRegressor", kwargs))

    return suggest


@dataclass(frozen=True)
class ForecastFamily:
    name: str
    framework: str
    suggest: Any
    defaults: Any

    def enqueued(self, s: Series) -> dict[str, Any]:
        return {
            "model_family": self.name,
            **{f"{self.name}.{k}": v for k, v in self.defaults(s).items()},
        }


def _es_defaults(s: Series) -> dict[str, Any]:
    out: dict[str, Any] = {"trend": "add", "damped_trend": True}
    if s.season > 1:
        out["seasonal"] = "add"
    return out


FAMILIES = (
    ForecastFamily("exponential_smoothing", "statsmodels", _exponential_smoothing, _es_defaults),
    ForecastFamily(
        "ridge",
        "sklearn",
        _ridge,
        lambda s: {"n_lags": max(1, min(s.season, 7)), "difference": False, "alpha": 1.0},
    ),
    ForecastFamily(
        "lightgbm",
        "lightgbm",
        _boosting("lightgbm"),
        lambda s: {
            "n_lags": max(1, min(s.season, 7)),
            "difference": True,
            "n_estimators": 100,
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_child_samples": 5,
        },
    ),
    ForecastFamily(
        "arima", "statsmodels", _arima, lambda s: {"p": 1, "d": 1, "q": 1, "P": 0, "D": 1, "Q": 1}
    ),
    ForecastFamily(
        "xgboost",
        "xgboost",
        _boosting("xgboost"),
        lambda s: {
            "n_lags": max(1, min(s.season, 7)),
            "difference": True,
            "n_estimators": 100,
            "learning_rate": 0.1,
            "max_depth": 4,
        },
    ),
)


def build(spec: ForecastSpec, frequency: str) -> Any:
    if spec.kind == "lags":
        assert spec.regressor is not None
        return LagForecaster(
            families.estimator(spec.regressor), frequency=frequency, **spec.settings
        )
    return StatsmodelsForecaster(spec.kind, **spec.settings)


def source(spec: ForecastSpec) -> tuple[list[str], str]:
    """(imports, the constructor call) for the generated script, FREQUENCY being a constant."""
    settings = "".join(f"        {k}={v!r},\n" for k, v in spec.settings.items())
    if spec.kind == "lags":
        assert spec.regressor is not None
        imports = ["from modelyard.automl.forecasters import LagForecaster"]
        imports += families.imports(spec.regressor)
        call = (
            f"LagForecaster(\n        {families.source(spec.regressor, '        ')},\n"
            f"{settings}        frequency=FREQUENCY,\n    )"
        )
        return imports, call
    imports = ["from modelyard.automl.forecasters import StatsmodelsForecaster"]
    return imports, f"StatsmodelsForecaster(\n        {spec.kind!r},\n{settings}    )"


# -- the generated script ----------------------------------------------------------------------

_FORECAST = """


TIME = $time_literal
IDENTITY = $identity_literal  # the columns naming a row's series: one model per series
SKIPPED = $skipped_literal  # series of the data AutoML could not forecast: no model, and why
FREQUENCY = $frequency_literal
SEASON = $season  # points per seasonal cycle, used to scale MASE


def build_forecaster():
    return $forecaster


def smape(actual, predicted) -> float:
    denominator = np.abs(actual) + np.abs(predicted)
    ratio = np.divide(2 * np.abs(predicted - actual), denominator,
                      out=np.zeros_like(actual), where=denominator != 0)
    return float(100 * ratio.mean())


def mase(actual, predicted, history) -> float:
    history = np.asarray(history, dtype=float)  # periods without a value are NaN: skipped
    lag = SEASON if 1 < SEASON < len(history) else 1
    steps = np.abs(history[lag:] - history[:-lag]) if len(history) > lag else np.array([])
    scale = np.nanmean(steps) if np.isfinite(steps).any() else np.nan
    error = np.mean(np.abs(np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)))
    return float(error / scale) if scale and not np.isnan(scale) else float("nan")


def evaluate(actual, predicted, history) -> dict[str, float]:
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    keep = ~np.isnan(actual)  # a period without a value (filled in to fit) is never scored
    actual, predicted = actual[keep], predicted[keep]
    return {
        "smape": smape(actual, predicted),
        "mase": mase(actual, predicted, history),
        "mae": float(np.mean(np.abs(actual - predicted))),
        "rmse": float(np.sqrt(np.mean((actual - predicted) ** 2))),
    }


def series_frames(df: pd.DataFrame):
    # (key, rows) of each series: the whole frame when IDENTITY is empty.
    if not IDENTITY:
        return [((), df)]
    return [(series_key(key), rows) for key, rows in df.groupby(IDENTITY, sort=True)]


def over_series(scores, points) -> dict[str, float]:
    # Each metric over every series' scored points together: the series' values weighted by
    # their scored points in that split (RMSE: the root of the weighted mean square). A series
    # where a metric is undefined (MASE of a flat history) is left out of that metric.
    out = {}
    for key in scores[0]:
        split, name = key.split("_", 1)
        pairs = [
            (s[key], p[split])
            for s, p in zip(scores, points, strict=True)
            if p[split] and not np.isnan(s[key])
        ]
        total = sum(n for _, n in pairs)
        if not total:
            out[key] = float("nan")
        elif name == "rmse":
            out[key] = float(np.sqrt(sum(n * v**2 for v, n in pairs) / total))
        else:
            out[key] = float(sum(n * v for v, n in pairs) / total)
    return out


def train_and_evaluate(df: pd.DataFrame):
    # Each series' model, fitted on that series only; each metric over every series' scored
    # points (see over_series), and each series' own metrics (`per_series`).
    models, scores, points, per_series = {}, [], [], []
    for key, rows in series_frames(df):
        models[key], metrics, scored = train_and_evaluate_series(rows)
        scores.append(metrics)
        points.append(scored)
        counts = {f"{part}_points": n for part, n in scored.items()}
        ids = {c: plain_id(v) for c, v in zip(IDENTITY, key, strict=True)}
        per_series.append({**ids, **counts, **metrics})
    metrics = over_series(scores, points)
    dtypes = df[IDENTITY].dtypes.to_dict()
    model = MultiSeriesForecastModel(models, IDENTITY, dtypes, SKIPPED) if IDENTITY else models[()]
    return model, metrics, per_series


def train_and_evaluate_series(df: pd.DataFrame):
    series = df.set_index(TIME)[TARGET].asfreq(FREQUENCY)
    split = df.set_index(TIME)[SPLIT].reindex(series.index)
    train, val, test = (series[split == part] for part in ("train", "val", "test"))
    model = build_forecaster().fit(fill_gaps(train))
    metrics = {}
    fitted = model.fitted()
    # Skip the first cycle (no history for it yet), when the history is longer than one.
    k = min(len(fitted), len(train) - SEASON) if len(train) > SEASON else len(fitted)
    scores = evaluate(train.to_numpy()[-k:], fitted[-k:], train)
    metrics.update({f"train_{name}": v for name, v in scores.items()})
    scores = evaluate(val, model.forecast(len(val)), train)
    metrics.update({f"val_{name}": v for name, v in scores.items()})
    history = pd.concat([train, val])
    # The model to keep: trained up to the test period.
    model = build_forecaster().fit(fill_gaps(history))
    scores = evaluate(test, model.forecast(len(test)), history)
    metrics.update({f"test_{name}": v for name, v in scores.items()})
    # The points each split scored: periods with a value.
    scored = {
        "train": int(np.isfinite(train.to_numpy()[-k:]).sum()),
        "val": int(val.notna().sum()),
        "test": int(test.notna().sum()),
    }
    return ForecastModel(model, TIME, FREQUENCY, history.index[-1]), metrics, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-log", action="store_true", help="print the metrics, log nothing")
    args = parser.parse_args()
    model, metrics, per_series = train_and_evaluate(load_data())
    for name, value in sorted(metrics.items()):
        print(f"{name:24s} {value:.6g}")
    if args.no_log:
        return
    modelyard.set_tracking_uri(TRACKING_URI)
    tags = {"modelyard.automl.reproduces": $trial_run_id_literal}
    with modelyard.start_run(experiment_id=EXPERIMENT_ID, run_name=$run_name_literal, tags=tags):
        modelyard.log_param("model_family", $family_literal)
        modelyard.log_metrics(metrics)
        if IDENTITY:
            modelyard.log_dict({"series": per_series}, $per_series_literal)
        example = model.input_example()  # the first periods after the training data
        info = modelyard.sklearn.log_model(model, "model", input_example=example)
    print(f"logged run {info.run_id}; model {info.model_uri}")


if __name__ == "__main__":
    main()
"""


def script(
    origin: Origin,
    spec: ForecastSpec,
    family: str,
    schema: dataset.Schema,
    target_col: str,
    time_col: str,
    frequency: str,
    season: int,
    filename: str,
    identity: list[str],
    skipped: dict[tuple[Any, ...], str] | None = None,
) -> str:
    imports, call = source(spec)
    imports.append(
        "from modelyard.automl.forecasters import ForecastModel, MultiSeriesForecastModel, "
        "fill_gaps, plain_id, series_key"
    )
    title = f"AutoML trial {origin.trial_number}: {family} forecaster for {target_col}"
    values = codegen.common_values(origin, schema, target_col, title, filename, imports)
    values.update(
        time_literal=repr(time_col),
        identity_literal=repr(identity),
        skipped_literal=id_literal(skipped or {}),
        frequency_literal=repr(frequency),
        season=repr(season),
        forecaster=call,
        trial_run_id_literal=repr(origin.trial_run_id),
        run_name_literal=repr(f"reproduce-trial-{origin.trial_number}-{family}"),
        family_literal=repr(family),
        per_series_literal=repr(PER_SERIES_ARTIFACT),
    )
    return Template(codegen.HEADER + _FORECAST).substitute(values)


# -- the search --------------------------------------------------------------------------------


@dataclass
class ForecastSearch(search.Search):
    df: pd.DataFrame = field(default_factory=pd.DataFrame)
    schema: dataset.Schema | None = None
    target_col: str = ""
    time_col: str = ""
    frequency: str = "D"
    series: Series = Series(0, 1, True)
    identity_cols: list[str] = field(default_factory=list)
    skipped: dict[tuple[str, ...], str] = field(default_factory=dict)  # key -> why skipped

    def series_frames(self) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
        """Mirrors the generated script's series_frames."""
        if not self.identity_cols:
            return [((), self.df)]
        grouped = self.df.groupby(self.identity_cols, sort=True)
        return [(series_key(key), rows) for key, rows in grouped]

    def parts(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
        """Mirrors the generated script's train_and_evaluate_series."""
        series = df.set_index(self.time_col)[self.target_col].asfreq(self.frequency)
        split = df.set_index(self.time_col)[dataset.SPLIT_COL].reindex(series.index)
        train, val, test = (series[split == part] for part in ("train", "val", "test"))
        return train, val, test

    def evaluate(self, spec: ForecastSpec) -> tuple[Any, dict[str, float], pd.DataFrame]:
        """Mirrors the generated script's train_and_evaluate: a model per series, each metric
        over every series' scored points, each series' own metrics an artifact of the trial."""
        models, scores, points, per_series = {}, [], [], []
        for key, rows in self.series_frames():
            self.check_time()
            models[key], found, scored = self.evaluate_series(spec, rows)
            scores.append(found)
            points.append(scored)
            counts = {f"{part}_points": n for part, n in scored.items()}
            named = {c: plain_id(v) for c, v in zip(self.identity_cols, key, strict=True)}
            per_series.append({**named, **counts, **found})
        out = metrics.over_series(scores, points)
        if self.identity_cols:
            fluent.log_dict({"series": per_series}, PER_SERIES_ARTIFACT)
        ids = self.identity_cols
        dtypes = self.df[ids].dtypes.to_dict()
        final = MultiSeriesForecastModel(models, ids, dtypes, self.skipped) if ids else models[()]
        return final, out, final.input_example()

    def evaluate_series(
        self, spec: ForecastSpec, df: pd.DataFrame
    ) -> tuple[ForecastModel, dict[str, float], dict[str, int]]:
        train, val, test = self.parts(df)
        season = self.series.season
        model = build(spec, self.frequency).fit(fill_gaps(train))
        out: dict[str, float] = {}
        fitted = model.fitted()
        # -0: would score every point: fitted values and actuals of different lengths.
        k = min(len(fitted), len(train) - season) if len(train) > season else len(fitted)
        for name, scores in (
            ("train", metrics.forecasting(train.to_numpy()[-k:], fitted[-k:], train, season)),
            ("val", metrics.forecasting(val, model.forecast(len(val)), train, season)),
        ):
            out.update({f"{name}_{m}": v for m, v in scores.items()})
        history = pd.concat([train, val])
        model = build(spec, self.frequency).fit(fill_gaps(history))
        scores = metrics.forecasting(test, model.forecast(len(test)), history, season)
        out.update({f"test_{m}": v for m, v in scores.items()})
        scored = {
            "train": int(np.isfinite(train.to_numpy()[-k:]).sum()),
            "val": int(val.notna().sum()),
            "test": int(test.notna().sum()),
        }
        last = history.index[-1]
        return ForecastModel(model, self.time_col, self.frequency, last), out, scored

    def objective(self, trial: optuna.Trial) -> float:
        names = [f.name for f in self.families]
        family = self.families[names.index(trial.suggest_categorical("model_family", names))]
        spec = family.suggest(trial, self.series)

        def write(origin: Origin, filename: str) -> str:
            assert self.schema is not None
            return script(
                origin,
                spec,
                family.name,
                self.schema,
                self.target_col,
                self.time_col,
                self.frequency,
                self.series.season,
                filename,
                self.identity_cols,
                self.skipped,
            )

        estimator = spec.regressor.cls if spec.regressor else spec.kind
        return search.run_trial(
            self, trial, family, None, lambda: self.evaluate(spec), write, estimator=estimator
        )


# Databricks AutoML's frequency names, as pandas spells them. Month, quarter and year are
# anchored as the data's dates are (see `resolve_frequency`); "m" is a minute, "M" a month.
_FREQUENCY_NAMES = {
    **dict.fromkeys(("W", "week", "weeks"), "W"),
    **dict.fromkeys(("D", "d", "day", "days"), "D"),
    **dict.fromkeys(("h", "H", "hr", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "T", "min", "minute", "minutes"), "min"),
    **dict.fromkeys(("S", "s", "sec", "second", "seconds"), "s"),
    **dict.fromkeys(("M", "month", "months"), "M"),
    **dict.fromkeys(("Q", "quarter", "quarters"), "Q"),
    **dict.fromkeys(("Y", "y", "year", "years"), "Y"),
}
_DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def resolve_frequency(frequency: str, times: pd.Series) -> str:
    """A pandas frequency for `frequency`: a pandas alias as given, a Databricks name mapped.

    Weeks end on the data's weekday when every date shares one; months, quarters and years
    start or end as the data's dates do (pandas 3 has no bare "M"), so periods are labelled
    with the user's own dates."""
    name = _FREQUENCY_NAMES.get(frequency, _FREQUENCY_NAMES.get(frequency.lower(), frequency))
    if name == "W" and times.dt.day_of_week.nunique() == 1:
        name = f"W-{_DAYS[int(times.dt.day_of_week.iloc[0])]}"
    elif name in ("M", "Q", "Y"):
        starts = {"M": times.dt.is_month_start, "Q": times.dt.is_quarter_start}
        at_start = starts.get(name, times.dt.is_year_start) & (times == times.dt.normalize())
        name += "S" if bool(at_start.all()) else "E"
    try:
        pd.tseries.frequencies.to_offset(name)
    except ValueError:
        raise InvalidArgument(
            f"frequency {frequency!r} is neither a pandas frequency (D, h, W-MON, MS, 15min, ...) "
            f"nor a Databricks one ({', '.join(k for k in _FREQUENCY_NAMES if len(k) > 1)})",
            field="frequency",
        ) from None
    return name


def _refuse_several_series(raw: pd.DataFrame, times: pd.Series, time_col: str) -> None:
    """Repeated timestamps with a column that tells them apart are several series, not one
    series to average (two stores' sales averaged are neither store's)."""
    if not times.duplicated().any():
        return
    for c in raw.columns:
        col = raw[c]
        if c == time_col or pd.api.types.is_float_dtype(col):
            continue
        n = col.nunique()
        if 1 < n <= len(raw) // 2 and not pd.DataFrame({"t": times, "c": col}).duplicated().any():
            shown = [str(v) for v in col.drop_duplicates().head(3)]
            raise InvalidArgument(
                f"timestamps repeat, and column {c!r} tells {n} series apart ({shown}...): "
                f"pass identity_col={c!r} to forecast each series with its own model, or "
                "combine the series yourself (one row per timestamp)",
                field="data",
            )


def _check_identity(raw: pd.DataFrame, identity: list[str], target_col: str, time_col: str) -> None:
    roles = {"target_col": [target_col], "time_col": [time_col]}
    for c in identity:
        dataset.require_own_column(
            raw, c, "identity_col", roles, "an identity column names the series a row belongs to"
        )
        missing = int(raw[c].isna().sum())
        if missing:
            raise InvalidArgument(
                f"identity_col {c!r} is missing in {missing} row(s): each row must name its "
                "series; fill those values in or drop those rows",
                field="identity_col",
            )
        kinds = raw[c].map(lambda v: type(v).__name__)
        if _identity_dtype(raw[c]) == "str" and kinds.nunique() > 1:
            shown = ", ".join(repr(v) for v in raw[c].groupby(kinds.to_numpy()).first())
            raise InvalidArgument(
                f"identity_col {c!r} mixes types of id ({', '.join(sorted(kinds.unique()))}: "
                f"{shown}): is 1 the series '1'? Make every id one type, e.g. "
                f"df[{c!r}] = df[{c!r}].astype(str), and predict with ids of that type",
                field="identity_col",
            )
    dataset.require_once(identity, "identity_col")


def _identity_dtype(col: pd.Series) -> str:
    """An identity column's type in the training CSV: numbers, booleans and dates as they are
    (an id 17 stays 17, as the logged model's signature then takes it), anything else as text."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(col.cat.categories.dtype)
    if pd.api.types.is_datetime64_any_dtype(col):  # a date as text matched no Timestamp
        return "datetime64[ns]"
    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int64"
    if pd.api.types.is_float_dtype(col):
        return "float64"
    return "str"


def min_points(horizon: int) -> int:
    """Periods a series needs: `horizon` for validation, `horizon` for test, 10 to fit on."""
    return 2 * horizon + 10


class _Unfit(InvalidArgument):
    """A series AutoML cannot forecast (too short, too sparse for the frequency, or a held-out
    period with no value): refused alone, skipped among several, with `reason` for the list."""

    def __init__(self, message: str, field: str, reason: str, points: int, minimum: int) -> None:
        super().__init__(message, field=field)
        self.reason = reason
        self.points = points
        self.minimum = minimum


def _grid(
    frame: pd.DataFrame, target_col: str, time_col: str, frequency: str, horizon: int, name: str
) -> tuple[pd.DataFrame, list[str]]:
    """One series on its grid, split: each period the mean of its rows, periods without a row
    left missing (NaN in the CSV). Trials fill those in to fit, and never score on them.
    `name` says which series, in messages, when there are several ("" when one)."""
    of = f"series {name}: " if name else ""
    notes = []
    series = frame.set_index(time_col)[target_col].sort_index().resample(frequency).mean()
    points, minimum = len(series), min_points(horizon)
    if points < minimum:  # first: a short series is skipped, whatever else
        raise _Unfit(
            f"{of}{points} points leave too little history for 2 x horizon {horizon} held out",
            "horizon",
            f"{points} {frequency!r} periods, fewer than the {minimum} a series needs",
            points,
            minimum,
        )
    observed = int(series.notna().sum())
    if observed < len(frame):
        notes.append(
            f"{of}{len(frame)} rows fall in {observed} {frequency!r} periods: each period is the "
            "mean of its rows"
        )
    if observed < points / 2:
        raise _Unfit(
            f"{of}only {observed} of the {points} {frequency!r} periods from "
            f"{series.index[0]} to {series.index[-1]} have a value: the data is not recorded "
            f"every {frequency!r}. Pass the frequency it is recorded at, or a coarser one "
            "(each period is then the mean of its rows)",
            "frequency",
            f"too sparse for {frequency!r}: only {observed} of its {points} periods have a value",
            points,
            minimum,
        )
    gaps = points - observed
    if gaps:
        notes.append(
            f"{of}{gaps} of {points} {frequency!r} periods have no value: models are fitted "
            "with them interpolated, and scored only on periods with a value"
        )
    df = pd.DataFrame({time_col: series.index, target_col: series.to_numpy()})
    df[dataset.SPLIT_COL] = dataset.time_split(df[time_col], horizon).to_numpy()
    held = f"{horizon} {frequency!r} periods"
    spans = {"val": f"the {held} before its last {horizon}", "test": f"its last {held}"}
    for part, what in (("val", "validation"), ("test", "test")):
        if df.loc[df[dataset.SPLIT_COL] == part, target_col].isna().all():
            raise _Unfit(
                f"{of}the {what} period (the {horizon} {frequency!r} periods held out for it) "
                "has no value to score on: pass a longer horizon, or data without that gap",
                "horizon",
                f"its {what} period ({spans[part]}, from {_first(df, part, time_col)}) has no "
                "value to score on",
                points,
                minimum,
            )
    return df, notes


def _first(df: pd.DataFrame, part: str, time_col: str) -> str:
    """The first period of a split, as a date where the grid is daily or coarser."""
    first = pd.Timestamp(df.loc[df[dataset.SPLIT_COL] == part, time_col].min())
    return first.isoformat() if first != first.normalize() else first.date().isoformat()


def _prepare(
    data: Any,
    target_col: str,
    time_col: str,
    frequency: str,
    horizon: int,
    workdir: Path,
    identity: list[str] | None = None,
) -> tuple[pd.DataFrame, dataset.Schema, Path, str, list[str], list[SkippedSeries]]:
    """Each series (one, or one per value of the `identity` columns) on its own grid and split
    by its own last periods; the series' rows one after the other. Among several series, one
    that cannot be forecast (too short, too sparse, nothing held out to score on) is skipped
    (and returned, with its reason) rather than refusing the others."""
    identity = identity or []
    raw = dataset.load(data)
    dataset.require_column(raw, target_col, "target_col")
    dataset.require_column(raw, time_col, "time_col")
    if not (common.whole_number(horizon) and horizon >= 1):
        raise InvalidArgument(
            f"horizon must be a whole number of periods, at least 1, not {horizon!r}",
            field="horizon",
        )
    _check_identity(raw, identity, target_col, time_col)
    notes = []
    extra = [c for c in raw.columns if c not in (target_col, time_col, *identity)]
    if extra:
        notes.append(f"columns {extra} are not used: forecasting models the target's own history")
    times = dataset.timestamps(raw[time_col], time_col)
    if not identity:
        _refuse_several_series(raw, times, time_col)
    dtypes = {c: _identity_dtype(raw[c]) for c in identity}
    frame = pd.DataFrame(
        {
            **{
                c: dataset.timestamps(raw[c], c) if is_datetime(t) else raw[c].astype(t)
                for c, t in dtypes.items()
            },
            time_col: times,
            target_col: dataset.numeric(raw[target_col], target_col),
        }
    )
    untimed = int(frame[time_col].isna().sum())
    if untimed:  # e.g. empty cells in a CSV: such a row belongs to no period
        notes.append(f"{untimed} rows without a {time_col} were dropped")
        frame = frame.dropna(subset=[time_col])
    unvalued = int(frame[target_col].isna().sum())
    if unvalued:  # e.g. future rows without a value yet: they must not become test points
        notes.append(f"{unvalued} rows without a {target_col} value were dropped")
        frame = frame.dropna(subset=[target_col])
    if frame.empty:
        raise InvalidArgument(f"no row has both a {time_col} and a {target_col}", field="data")
    frequency = resolve_frequency(frequency, frame[time_col])
    groups = frame.groupby(identity, sort=True) if identity else [((), frame)]
    parts, skipped = [], []
    for key, rows in groups:
        name = describe(identity, series_key(key))
        try:
            df, found = _grid(rows, target_col, time_col, frequency, horizon, name)
        except _Unfit as unfit:
            if not identity:
                raise
            plain = dict(zip(identity, series_key(key), strict=True))
            skipped.append(SkippedSeries(plain, unfit.points, unfit.minimum, unfit.reason))
            continue
        for c, v in reversed(list(zip(identity, key, strict=True))):
            df.insert(0, c, pd.Series([v] * len(df), dtype=dtypes[c]))
        parts.append(df)
        notes += found
    if skipped:
        notes.insert(0, _skipped_note(skipped, len(skipped) + len(parts)))
    if not parts:
        _refuse_all_skipped(skipped, frequency, horizon)
    df = pd.concat(parts, ignore_index=True)
    dates = [c for c, t in dtypes.items() if is_datetime(t)]  # read_csv parses, never casts, them
    typed = {c: t for c, t in dtypes.items() if c not in dates}
    schema = dataset.Schema(
        {**typed, target_col: "float64", dataset.SPLIT_COL: "str"}, [time_col, *dates]
    )
    csv_path = workdir / "training_data.csv"
    df.to_csv(csv_path, index=False)
    return schema.read(csv_path), schema, csv_path, frequency, notes, skipped


SKIPPED_ARTIFACT = "data/skipped_series.json"
PER_SERIES_ARTIFACT = "per_series_metrics.json"  # on each trial's run
SERIES_METRICS = "each series weighted by its scored points"


def _require_mase_scale(
    train_rows: pd.DataFrame, target_col: str, identity: list[str], season: int
) -> None:
    """MASE as the primary metric needs one series whose training history is not flat: else
    every trial's value was NaN, every trial failed, and the run ended in "no AutoML trial
    finished"."""
    groups = train_rows.groupby(identity, sort=False) if identity else [((), train_rows)]
    for _, rows in groups:
        scale = metrics.mase_scale(rows[target_col], season)
        if scale and not math.isnan(scale):
            return
    which = "every series is" if identity else "the series is"
    raise InvalidArgument(
        f"primary_metric 'mase' is undefined here: {which} flat over its training periods, so "
        "the seasonal naive forecast it is scaled by makes no error; pick smape, mae or rmse",
        field="primary_metric",
    )


def _skipped_note(skipped: list[SkippedSeries], n: int) -> str:
    shown = "; ".join(f"{_named(s)} ({s.reason})" for s in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return (
        f"{len(skipped)} of {n} series skipped, AutoML cannot forecast them: {shown}{more}. "
        f"They have no model; the list, with each one's reason, is in {SKIPPED_ARTIFACT}"
    )


def _named(s: SkippedSeries) -> str:
    return describe(list(s.series), tuple(s.series.values()))


def _refuse_all_skipped(skipped: list[SkippedSeries], frequency: str, horizon: int) -> None:
    """No series left to forecast: all too short gets the advice for that; else each reason."""
    if all(s.points < s.minimum for s in skipped):
        longest = max(s.points for s in skipped)
        raise InvalidArgument(
            f"all {len(skipped)} series are too short: the longest has {longest} {frequency!r} "
            f"periods, and a series needs {min_points(horizon)} (2 x horizon {horizon} held "
            "out, 10 to fit on). Pass a shorter horizon, or a finer frequency",
            field="horizon",
        )
    shown = "; ".join(f"{_named(s)}: {s.reason}" for s in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    raise InvalidArgument(
        f"none of the {len(skipped)} series can be forecast ({shown}{more}). Pass a coarser "
        "frequency for sparse data, a horizon that suits every series, or data without the gaps",
        field="data",
    )


def run(
    data: Any,
    target_col: str,
    time_col: str,
    horizon: int,
    frequency: str = "D",
    *,
    primary_metric: str | None = None,
    timeout_minutes: float | None = None,
    max_trials: int | None = None,
    exclude_frameworks: Any = None,
    identity_col: str | list[str] | None = None,
    experiment_name: str | None = None,
    register_model: str | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    on_trial: Any = None,
    country_code: str | None = None,
) -> AutoMLResult:
    started = time.monotonic()
    primary = metrics.primary_metric(FORECASTING, primary_metric)
    check_country_code(country_code)
    excluded = common.excluded_frameworks(exclude_frameworks)
    common.check_seed(seed)
    common.registered_model_name(register_model)
    _, timeout = common.budget_seconds(timeout_minutes, max_trials)
    workdir = common.output_dir(output_dir)
    identity = common.names(identity_col)
    df, schema, csv_path, frequency, notes, skipped = _prepare(
        data, target_col, time_col, frequency, horizon, workdir, identity
    )
    season = season_length(frequency)
    train_rows = df[df[dataset.SPLIT_COL] == "train"]
    if primary == "mase":
        _require_mase_scale(train_rows, target_col, identity, season)
    n_train = int(train_rows.groupby(identity).size().min()) if identity else len(train_rows)
    positive = bool((df[target_col].dropna() > 0).all())
    series = Series(n_train, season, positive, country_code)
    candidates = [f for f in FAMILIES if f.framework not in excluded]
    if not candidates:
        raise InvalidArgument(
            f"exclude_frameworks {list(excluded)} leaves no forecasting model",
            field="exclude_frameworks",
        )
    types = {time_col: "datetime"}
    prof = profile.profile(
        df.drop(columns=[dataset.SPLIT_COL, *identity]), target_col, FORECASTING, types, time_col
    )
    exp_id = common.experiment_id(experiment_name)
    params = {
        "problem_type": FORECASTING,
        "target_col": target_col,
        "time_col": time_col,
        "identity_cols": ",".join(identity),
        "n_series": df.groupby(identity).ngroups if identity else 1,
        "n_series_skipped": len(skipped),
        "series_metrics": SERIES_METRICS if identity else "",
        "horizon": horizon,
        "frequency": frequency,
        "season_length": season,
        "country_code": country_code,
        "primary_metric": primary,
        "timeout_minutes": timeout_minutes,
        "max_trials": max_trials,
        "exclude_frameworks": ",".join(excluded),
        "model_families": ",".join(f.name for f in candidates),
        "seed": seed,
        "n_points": len(df),
    }
    with common.start_parent(FORECASTING, target_col, exp_id, params) as parent:
        name = Path(str(data)).stem if isinstance(data, str | Path) else "training_data"
        common.log_data(df, csv_path, name, target_col)
        if skipped:
            listed = {
                "skipped_series": [
                    {
                        **dataclasses.asdict(x),
                        "series": {c: plain_id(v) for c, v in x.series.items()},
                    }
                    for x in skipped
                ]
            }
            fluent.log_dict(listed, SKIPPED_ARTIFACT)
            fluent.set_tag("modelyard.automl.skipped_series", str(len(skipped)))
        report_uri = common.log_exploration(prof, f"Data exploration: {target_col} (forecasting)")
        s = ForecastSearch(
            problem=FORECASTING,
            primary=primary,
            maximize=metrics.maximize(FORECASTING, primary),
            families=candidates,
            ctx=families.Context(FORECASTING, len(df), seed=seed),
            origin=Origin(fluent.get_tracking_uri(), exp_id, parent.info.run_id, -1, ""),
            output_dir=workdir,
            seed=seed,
            df=df,
            schema=schema,
            target_col=target_col,
            time_col=time_col,
            frequency=frequency,
            series=series,
            identity_cols=identity,
            skipped={series_key(tuple(x.series.values())): x.reason for x in skipped},
        )
        remaining = None if timeout is None else max(1.0, timeout - (time.monotonic() - started))
        enqueue = [f.enqueued(series) for f in candidates]
        tuned = search.run(s, s.objective, remaining, max_trials, on_trial, enqueue)

        def log_model(model: Any, run_id: str, example: pd.DataFrame) -> tuple[str, int | None]:
            framework = s.records[s.best.number].framework
            info = modelyard.sklearn.log_model(
                model,
                "model",
                input_example=example,
                run_id=run_id,
                registered_model_name=register_model,
                pip_requirements=common.requirements(framework),
            )
            return info.model_uri, info.registered_model_version

        result = common.finish(
            s,
            tuned,
            log_model=log_model,
            explain_frame=None,
            score=None,
            report_uri=report_uri,
            warnings=notes + [w.message for w in prof.warnings],
        )
        return dataclasses.replace(result, skipped_series=skipped)
