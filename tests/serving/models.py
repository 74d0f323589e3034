"""Models that misbehave the ways user code does, for the serving tests (importable, so the
in-process server unpickles them by reference)."""

from __future__ import annotations

import sys
import threading
import weakref

import numpy as np
import pandas as pd
import scipy.linalg
from sklearn.base import BaseEstimator, RegressorMixin

# Held shut by a test: the Gated model's predict waits on it.
GATE = threading.Event()
ENTERED = threading.Event()
SEEN: list[list[float]] = []  # column 0 of every row the Gated model was given


class Gated(RegressorMixin, BaseEstimator):
    """Answers column 0; given a negative value there, only once GATE opens: a model as slow as
    a test wants (loading, which predicts on the input example, passes straight through)."""

    def fit(self, X, y=None) -> Gated:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        SEEN.append(X[:, 0].tolist())
        if (X[:, 0] < 0).any():
            ENTERED.set()
            GATE.wait(120)
        return X[:, 0]


class Exits(RegressorMixin, BaseEstimator):
    """Given a negative value in column 0, calls sys.exit, as argparse or click code inside a
    preprocessing step does; answers column 0 otherwise."""

    def fit(self, X, y=None) -> Exits:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if (X[:, 0] < 0).any():
            sys.exit(3)
        return X[:, 0]


class Kinds(RegressorMixin, BaseEstimator):
    """Answers, per row, what its columns arrived as: the Python type of `blob`'s value and the
    year of `when`, as text."""

    def fit(self, X, y=None) -> Kinds:
        self.feature_names_in_ = np.array(X.columns)  # so it is given DataFrames
        return self

    def predict(self, X) -> np.ndarray:
        return np.array(
            [f"{type(b).__name__}/{w.year}" for b, w in zip(X["blob"], X["when"], strict=True)],
            dtype=object,
        )


class Answers(RegressorMixin, BaseEstimator):
    """Answers in an odd shape, picked by `kind`: times, a dict keyed by numbers, ragged lists."""

    def __init__(self, kind: str = "times") -> None:
        self.kind = kind

    def fit(self, X, y=None) -> Answers:
        return self

    def predict(self, X):
        n = len(X)
        if self.kind == "times":
            return np.array(["2026-12-06T17:30:00"] * n, dtype="datetime64[s]")
        if self.kind == "numbered":
            return {0: np.zeros(n), 1: np.ones(n)}
        return [[1.0] * (i + 1) for i in range(n)]  # ragged


# Held shut by a test: loading (unpickling) a SlowToLoad model waits on it.
LOAD_GATE = threading.Event()
LOAD_GATE.set()
LOADING = threading.Event()
# Every SlowToLoad alive: what a test checks to see a discarded load's model released.
ALIVE: weakref.WeakSet[SlowToLoad] = weakref.WeakSet()


class SlowToLoad(RegressorMixin, BaseEstimator):
    """Answers `value` for every row; unpickled (loaded by serving) only once LOAD_GATE opens:
    a load as slow as a test wants."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def fit(self, X, y=None) -> SlowToLoad:
        return self

    def predict(self, X) -> np.ndarray:
        return np.full(len(X), self.value)

    def __setstate__(self, state: dict) -> None:
        LOADING.set()
        LOAD_GATE.wait(120)
        super().__setstate__(state)
        ALIVE.add(self)


class Wide(RegressorMixin, BaseEstimator):
    """Answers column 0 repeated `columns` times per row: an answer far larger than its request."""

    def __init__(self, columns: int = 1000) -> None:
        self.columns = columns

    def fit(self, X, y=None) -> Wide:
        return self

    def predict(self, X) -> np.ndarray:
        return np.repeat(np.asarray(X, dtype=float)[:, :1], self.columns, axis=1)


class Running(RegressorMixin, BaseEstimator):
    """A running total of column 0 down the rows: each row's answer depends on the rows above
    it, as a sequence model's does. Given a negative value there, answers only once GATE
    opens."""

    def fit(self, X, y=None) -> Running:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if (X[:, 0] < 0).any():
            ENTERED.set()
            GATE.wait(120)
        return np.cumsum(X[:, 0])


class Scores(RegressorMixin, BaseEstimator):
    """Answers its input: each row's values are its class scores."""

    def fit(self, X, y=None) -> Scores:
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float)


class Faulty(RegressorMixin, BaseEstimator):
    """A bug of its own: given a negative value in column 0, raises a ValueError saying
    `message`, nothing of the request's values (as a model's own code does); answers column 0
    otherwise."""

    def __init__(
        self, message: str = "operands could not be broadcast together with shapes (3,) (2,)"
    ) -> None:
        self.message = message

    def fit(self, X, y=None) -> Faulty:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if (X[:, 0] < 0).any():
            raise ValueError(self.message)
        return X[:, 0]


class Boosted(RegressorMixin, BaseEstimator):
    """An xgboost booster predicting through a DMatrix, which refuses infinity with an
    XGBoostError (a ValueError) in its own words, after a timestamp and a C++ file name."""

    def fit(self, X, y=None) -> Boosted:
        import xgboost  # only where used

        data = xgboost.DMatrix(np.asarray(X, dtype=float), label=np.asarray(y, dtype=float))
        self.booster_ = xgboost.train({"max_depth": 2}, data, num_boost_round=2)
        return self

    def predict(self, X) -> np.ndarray:
        import xgboost

        return self.booster_.predict(xgboost.DMatrix(np.asarray(X, dtype=float)))


class Solves(RegressorMixin, BaseEstimator):
    """Solves a linear system per row with scipy, which refuses NaN in its own words ("array
    must not contain infs or NaNs"); answers the rows as they are otherwise."""

    def fit(self, X, y=None) -> Solves:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        return scipy.linalg.solve(np.eye(X.shape[1]), X.T).T[:, 0]


class Counts(RegressorMixin, BaseEstimator):
    """Takes column 0 as counts: pandas' cast to int64 raises IntCastingNaNError for NaN, and
    its cast to nullable Int64 an OverflowError for infinity."""

    def __init__(self, nullable: bool = False) -> None:
        self.nullable = nullable

    def fit(self, X, y=None) -> Counts:
        return self

    def predict(self, X) -> np.ndarray:
        counts = pd.DataFrame(np.asarray(X, dtype=float)).iloc[:, 0]
        return counts.astype("Int64" if self.nullable else "int64").to_numpy(dtype=float)


class Forecasts(RegressorMixin, BaseEstimator):
    """A statsmodels ARIMA with an exogenous regressor (column 0): forecasts one step per row,
    and statsmodels refuses NaN there with MissingDataError, which is no ValueError."""

    def fit(self, X, y=None) -> Forecasts:
        from statsmodels.tsa.arima.model import ARIMA  # a second to import: only where used

        exog = np.asarray(X, dtype=float)[:, :1]
        self.result_ = ARIMA(np.asarray(y, dtype=float), exog=exog, order=(1, 0, 0)).fit()
        return self

    def predict(self, X) -> np.ndarray:
        exog = np.asarray(X, dtype=float)[:, :1]
        return np.asarray(self.result_.forecast(len(exog), exog=exog))
