"""Forecasters AutoML fits, importable by generated trial code and by logged models.

All of them fit one regular series (a pandas Series with a DatetimeIndex) and forecast the
`steps` points after its end:

- `StatsmodelsForecaster`: Holt-Winters exponential smoothing or (seasonal) ARIMA.
- `LagForecaster`: any scikit-learn style regressor on lag, rolling-mean and calendar features,
  forecasting recursively (each prediction becomes a lag of the next); optionally on differences,
  so tree models can follow a trend; with `country_code`, also on that country's public holidays
  in each period (Databricks AutoML's country_code, from the `holidays` package).
- `ForecastModel`: what gets logged: a fitted forecaster that answers `predict(df)` for the
  timestamps in `df[time_col]`.
- `MultiSeriesForecastModel`: one `ForecastModel` per series (`identity_cols`, as Databricks
  AutoML's identity_col), each fitted on its own series only; `predict(df)` answers each row
  with its series' model.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N803, N806

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from modelyard.automl.dataset import timestamps
from modelyard.errors import InvalidArgument


def season_length(frequency: str) -> int:
    """Points per seasonal cycle for a pandas frequency: hourly 24, daily 7, monthly 12, ..."""
    name = pd.tseries.frequencies.to_offset(frequency).rule_code.upper()
    for prefix, m in (
        ("MIN", 60),
        ("T", 60),
        ("S", 60),
        ("H", 24),
        ("B", 5),
        ("D", 7),
        ("W", 52),
        ("M", 12),
        ("Q", 4),
    ):
        if name.startswith(prefix):
            return m
    return 1


def fill_gaps(series: pd.Series) -> pd.Series:
    """Periods without a value, interpolated from their neighbours (held at the end), for the
    models to fit on a whole grid; such periods are never scored."""
    return series.interpolate().ffill()


def future_times(last: pd.Timestamp, steps: int, frequency: str) -> pd.DatetimeIndex:
    return pd.date_range(last, periods=steps + 1, freq=frequency)[1:]


LIST_COUNTRY_CODES = (
    'python -c "import holidays; print(sorted(holidays.list_supported_countries()))"'
)


def check_country_code(country_code: str | None) -> str | None:
    """`country_code` if the `holidays` package knows the country (ISO 3166-1 alpha-2, "US"),
    else InvalidArgument naming the field and how to list the codes it takes."""
    if country_code is None:
        return None
    if not isinstance(country_code, str) or country_code not in _country_codes():
        raise InvalidArgument(
            f"country_code {country_code!r} is no country with a holiday calendar: pass an ISO "
            f"3166-1 alpha-2 code in capitals, such as 'US', 'GB' or 'DE' ({LIST_COUNTRY_CODES} "
            "lists them), or leave it out for no holiday features",
            field="country_code",
        )
    return country_code


@functools.cache
def _country_codes() -> frozenset[str]:
    import holidays

    return frozenset(holidays.list_supported_countries())  # about a second: once


@functools.cache
def _calendar(country_code: str) -> Any:
    import holidays

    return holidays.country_holidays(country_code)


def holidays_in_period(country_code: str, when: pd.Timestamp, frequency: str) -> int:
    """How many of the country's public holidays fall in the period `when` labels on the
    `frequency` grid: the day itself for daily and shorter periods; for longer ones the days
    from the previous point (exclusive) to `when`, or from `when` to the next one for grids
    labelled by their start (MS, QS, YS)."""
    calendar = _calendar(country_code)
    offset = pd.tseries.frequencies.to_offset(frequency)
    day = when.normalize()
    one_day = isinstance(offset, pd.offsets.BusinessDay)  # Friday's next point is Monday
    if one_day or (day + offset).normalize() <= day + pd.Timedelta(days=1):
        return int(day.date() in calendar)
    if offset.rule_code.upper().split("-")[0].endswith("S"):
        days = pd.date_range(day, (when + offset).normalize(), freq="D", inclusive="left")
    else:
        days = pd.date_range((when - offset).normalize(), day, freq="D", inclusive="right")
    return sum(d.date() in calendar for d in days)


class StatsmodelsForecaster:
    """`kind` is "exponential_smoothing" or "arima"; `settings` go to the statsmodels model."""

    def __init__(self, kind: str, **settings: Any) -> None:
        self.kind = kind
        self.settings = settings

    def fit(self, series: pd.Series) -> StatsmodelsForecaster:
        import warnings

        values = np.asarray(series, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter
            if self.kind == "exponential_smoothing":
                from statsmodels.tsa.holtwinters import ExponentialSmoothing

                self.result_ = ExponentialSmoothing(values, **self.settings).fit()
            elif self.kind == "arima":
                from statsmodels.tsa.statespace.sarimax import SARIMAX

                self.result_ = SARIMAX(values, **self.settings).fit(disp=False, maxiter=200)
            else:
                raise InvalidArgument(f"unknown statsmodels forecaster {self.kind!r}")
        return self

    def forecast(self, steps: int) -> np.ndarray:
        return np.asarray(self.result_.forecast(steps), dtype=float)

    def fitted(self) -> np.ndarray:
        """In-sample one-step-ahead predictions, one per training point."""
        return np.asarray(self.result_.fittedvalues, dtype=float)


class LagForecaster:
    """A regressor on lags `lags`, a rolling mean over `window` points and calendar features;
    with `country_code`, also the number of that country's holidays in each period."""

    def __init__(
        self,
        estimator: Any,
        lags: list[int],
        window: int,
        frequency: str,
        difference: bool = False,
        country_code: str | None = None,
    ) -> None:
        self.estimator = estimator
        self.lags = lags
        self.window = window
        self.frequency = frequency
        self.difference = difference
        self.country_code = check_country_code(country_code)

    def _row(self, history: list[float], when: pd.Timestamp) -> list[float]:
        row = [history[-lag] for lag in self.lags]
        row.append(float(np.mean(history[-self.window :])))
        row += [when.day_of_week, when.month, when.day, when.hour, len(history)]
        code = getattr(self, "country_code", None)  # a model pickled before it had one: None
        if code:
            row.append(holidays_in_period(code, when, self.frequency))
        return row

    @property
    def warmup(self) -> int:
        return max(max(self.lags), self.window)

    def fit(self, series: pd.Series) -> LagForecaster:
        values = [float(v) for v in series]
        times = pd.DatetimeIndex(series.index)
        if len(values) <= self.warmup + 1:
            raise InvalidArgument(
                f"{len(values)} points are too few for lags up to {self.warmup}", field="data"
            )
        X = [self._row(values[:t], times[t]) for t in range(self.warmup, len(values))]
        y = np.asarray(values[self.warmup :])
        if self.difference:
            y = y - np.asarray(values[self.warmup - 1 : -1])
        self.estimator.fit(np.asarray(X), y)
        self.history_ = values
        self.last_ = times[-1]
        self.fitted_ = self._one_step(np.asarray(X), np.asarray(values[self.warmup - 1 : -1]))
        return self

    def _one_step(self, X: np.ndarray, previous: np.ndarray) -> np.ndarray:
        predicted = np.asarray(self.estimator.predict(X), dtype=float)
        return predicted + previous if self.difference else predicted

    def forecast(self, steps: int) -> np.ndarray:
        history = list(self.history_)
        out = []
        for when in future_times(self.last_, steps, self.frequency):
            x = np.asarray([self._row(history, when)])
            value = float(self._one_step(x, np.asarray([history[-1]]))[0])
            history.append(value)
            out.append(value)
        return np.asarray(out)

    def fitted(self) -> np.ndarray:
        """One-step predictions for every training point after the warm-up."""
        return self.fitted_


def forecast_times(data: pd.DataFrame, time_col: str) -> pd.Series:
    """The input's `time_col` as timestamps. A value that is no timestamp, or none, is refused
    (naming how many and which), not forecast as NaN nor left out: a forecast is one value per
    input row, as MLflow's pyfunc refuses input its schema cannot read rather than skip it."""
    if time_col not in data.columns:
        raise InvalidArgument(f"input needs a {time_col!r} column", field=time_col)
    times = timestamps(data[time_col], time_col)
    missing = times.isna().to_numpy()
    if missing.any():
        at = np.flatnonzero(missing)[:5].tolist()
        more = "..." if missing.sum() > 5 else ""
        raise InvalidArgument(
            f"column {time_col!r} is missing in {int(missing.sum())} input row(s) (at "
            f"positions {at}{more}): each row needs the time to forecast",
            field=time_col,
        )
    return times


class ForecastModel:
    """A fitted forecaster for the points after `last_time`: `predict(df)` reads `df[time_col]`."""

    def __init__(self, forecaster: Any, time_col: str, frequency: str, last_time: pd.Timestamp):
        self.forecaster = forecaster
        self.time_col = time_col
        self.frequency = frequency
        self.last_time = pd.Timestamp(last_time)
        # Named input columns: the pyfunc loader passes a DataFrame through as is.
        self.feature_names_in_ = np.asarray([time_col], dtype=object)

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        times = forecast_times(data, self.time_col)
        if (times <= self.last_time).any():
            raise InvalidArgument(
                f"{self.time_col} must be after the end of the training data ({self.last_time})",
                field=self.time_col,
            )
        grid = pd.date_range(self.last_time, times.max(), freq=self.frequency)[1:]
        positions = grid.get_indexer(pd.DatetimeIndex(times))
        if (positions < 0).any():
            raise InvalidArgument(
                f"{self.time_col} values must fall on the {self.frequency!r} grid after "
                f"{self.last_time}",
                field=self.time_col,
            )
        return self.forecaster.forecast(len(grid))[positions]

    def input_example(self, steps: int = 5) -> pd.DataFrame:
        """The first `steps` timestamps after the training data, as `predict` takes them."""
        return pd.DataFrame({self.time_col: future_times(self.last_time, steps, self.frequency)})


def series_key(values: Any) -> tuple[Any, ...]:
    """A series' key: its identity values as plain Python values of the training data's type
    (numpy's int64 17 is 17), compared by value, never as text: as text, 1 and "1" were one
    series in training, and 1.0 was no series at predict time."""
    values = values if isinstance(values, tuple) else (values,)
    return tuple(
        pd.Timestamp(v)
        if isinstance(v, np.datetime64)
        else v.item()
        if isinstance(v, np.generic)
        else v
        for v in values
    )


def plain_id(value: Any) -> Any:
    """An id as JSON takes it (a date/time id as ISO text), for the logged series lists."""
    return value.isoformat() if isinstance(value, pd.Timestamp) else value


def id_literal(value: Any) -> str:
    """An id, keys of them, or a dict keyed by them, as Python source for the generated script
    (a date/time id as pd.Timestamp("..."): the repr of a Timestamp names no module)."""
    if isinstance(value, pd.Timestamp):
        return f"pd.Timestamp({value.isoformat()!r})"
    if isinstance(value, tuple):
        return "(" + "".join(f"{id_literal(v)}, " for v in value) + ")"
    if isinstance(value, dict):
        items = ", ".join(f"{id_literal(k)}: {id_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    return repr(value)


def is_datetime(dtype: str) -> bool:
    return dtype.startswith("datetime64")


def describe(identity_cols: list[str], key: tuple[Any, ...]) -> str:
    """A series named for people: store='a', region=3."""
    return ", ".join(f"{c}={v!r}" for c, v in zip(identity_cols, key, strict=True))


_TYPE_NAMES = {"bool": "true/false", "int64": "whole-number", "float64": "number", "str": "text"}
_TYPE_NAMES |= {f"datetime64[{u}]": "date/time" for u in ("s", "ms", "us", "ns")}


def as_training_type(column: pd.Series, dtype: str, name: str) -> pd.Series:
    """The ids in `column` as the training data's type `dtype`, matched by value: for an
    integer id column 17, 17.0 and "17" are all the series 17; for a date/time id column a
    Timestamp and its ISO text are the same series; text ids take text only (is 1 the id "1"
    or "001"?). InvalidArgument naming the column and the values that do not match."""

    def each(kind: type | tuple[type, ...]) -> pd.Series:  # only for a column of objects
        return column.map(lambda v: isinstance(v, kind)).astype(bool)

    flags = pd.Series(True, index=column.index) if pd.api.types.is_bool_dtype(column) else None
    converted = column
    if is_datetime(dtype):  # a date: Timestamps and ISO text alike, by value
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            bad = pd.Series(True, index=column.index)  # 17 is no date (nor 17 ns after 1970)
        else:
            converted = timestamps(column, name)
            bad = converted.isna()
    elif dtype == "bool":
        bad = column.isna() if flags is not None else ~each((bool, np.bool_))
    elif dtype in ("int64", "float64"):
        if flags is None:
            numbers = pd.api.types.is_numeric_dtype(column)
            flags = pd.Series(False, index=column.index) if numbers else each((bool, np.bool_))
        converted = pd.to_numeric(column.where(~flags), errors="coerce")
        bad = converted.isna() | ~np.isfinite(converted.fillna(0))
        if dtype == "int64":
            bad |= converted.fillna(0) % 1 != 0
    else:
        bad = column.isna() if isinstance(column.dtype, pd.StringDtype) else ~each(str)
    if bad.any():
        shown = ", ".join(f"{v!r} ({type(v).__name__})" for v in column[bad].drop_duplicates()[:3])
        raise InvalidArgument(
            f"identity column {name!r} holds {_TYPE_NAMES.get(dtype, dtype)} ids in the training "
            f"data, and {int(bad.sum())} input row(s) hold ids that are none: {shown}; pass "
            f"each series' id as in the training data",
            field=name,
        )
    return converted.astype(dtype)


_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int64": int,
    "float64": float,
    "bool": lambda text: text == "True",
}


def _typed_key(key: tuple[Any, ...], cols: list[str], dtypes: dict[str, str]) -> tuple[Any, ...]:
    """An older model's key, each id written as str() of the training data's value, as
    that value again ("17" -> 17 in an int64 column); typed keys are returned as they are."""
    return series_key(
        tuple(
            _FROM_TEXT[dtypes[c]](v) if isinstance(v, str) and dtypes.get(c) in _FROM_TEXT else v
            for c, v in zip(cols, key, strict=True)
        )
    )


class MultiSeriesForecastModel:
    """One fitted `ForecastModel` per series, keyed by the values of `identity_cols` (see
    `series_key`); `dtypes` are those columns' types in the training data (an id 17 is a
    number there, and so in the input example and signature, and input ids are matched as
    that type); `skipped`, the series of the data left without a model, and why, so a forecast
    for one says so rather than that it was never seen."""

    def __init__(
        self,
        models: dict[tuple[Any, ...], ForecastModel],
        identity_cols: list[str],
        dtypes: dict[str, Any] | None = None,
        skipped: dict[tuple[Any, ...], str] | None = None,
    ):
        self.models = models
        self.skipped = dict(skipped or {})
        self.identity_cols = list(identity_cols)
        self.dtypes = {c: str(t) for c, t in (dtypes or {}).items()}
        self.time_col = next(iter(models.values())).time_col
        self.feature_names_in_ = np.asarray([*self.identity_cols, self.time_col], dtype=object)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loads a model pickled by an older Modelyard as this one: series keyed by their text
        (str(17) is "17") become keys of the training data's type, which the model recorded
        (`dtypes`), so typed ids match them as they match a new model's, with no cost per
        predict. A model older still recorded no types and took text ids only: it keeps its
        text keys, and its ids are matched as text ("17" only), as it was trained."""
        state = dict(state)
        cols = state["identity_cols"]
        dtypes = state.get("dtypes") or dict.fromkeys(cols, "str")
        state["dtypes"] = dtypes
        state["models"] = {_typed_key(k, cols, dtypes): m for k, m in state["models"].items()}
        skipped = state.get("skipped", {})
        state["skipped"] = {_typed_key(k, cols, dtypes): why for k, why in skipped.items()}
        self.__dict__.update(state)

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.identity_cols if c not in data.columns]
        if missing:
            raise InvalidArgument(
                f"input needs the series' identity column(s) {missing}, and {self.time_col!r}",
                field=missing[0],
            )
        out = np.full(len(data), np.nan)
        rows = data.reset_index(drop=True)
        rows[self.time_col] = forecast_times(rows, self.time_col)  # positions of the whole input
        for c in self.identity_cols:
            if c in self.dtypes:
                rows[c] = as_training_type(rows[c], self.dtypes[c], c)
        for key, group in rows.groupby(self.identity_cols, sort=False, dropna=False):
            key = series_key(key)
            model = self.models.get(key)
            why = self.skipped.get(key)
            if model is None and why is not None:
                raise InvalidArgument(
                    f"series {describe(self.identity_cols, key)} was skipped in training "
                    f"({why}): it has no model",
                    field=self.identity_cols[0],
                )
            if model is None:
                known = [describe(self.identity_cols, k) for k in list(self.models)[:5]]
                raise InvalidArgument(
                    f"no series {describe(self.identity_cols, key)} in the training data: "
                    f"forecasts are for the series trained on, e.g. {'; '.join(known)}",
                    field=self.identity_cols[0],
                )
            out[group.index.to_numpy()] = model.predict(group)
        return out

    def input_example(self, steps: int = 5) -> pd.DataFrame:
        """The first `steps` timestamps after each of (at most) two series' training data."""
        frames = []
        for key, model in list(self.models.items())[:2]:
            frame = model.input_example(steps)
            for c, v in zip(self.identity_cols, key, strict=True):
                column = pd.Series([v] * len(frame), dtype=self.dtypes.get(c, "object"))
                frame.insert(len(frame.columns) - 1, c, column)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
