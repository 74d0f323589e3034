"""The few transformers AutoML needs beyond scikit-learn's, importable by generated trial code.

Trial scripts and logged models refer to these by import path, so a model AutoML logged loads
anywhere `modelyard` is installed. Each is a plain scikit-learn transformer you can read in a
minute and reuse in your own pipelines.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N803

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import LabelEncoder


def _frame(X: Any) -> pd.DataFrame:
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Timestamps to numbers: epoch days, year, and month / weekday / hour as sine and cosine.

    Strings are parsed with pandas; missing or unparseable timestamps give NaN features (impute
    after this step). Hour features are included only when a column has a time of day.
    """

    def fit(self, X: Any, y: Any = None) -> DatetimeFeatures:
        frame = _frame(X)
        self.columns_ = [str(c) for c in frame.columns]
        self.with_time_ = {}
        for c in frame.columns:
            parsed = self._parse(frame[c])
            self.with_time_[str(c)] = bool((parsed.dt.floor("D") != parsed).any())
        return self

    @staticmethod
    def _parse(column: pd.Series) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(column):
            parsed = column
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not infer format": handled below
                parsed = pd.to_datetime(column, errors="coerce")  # one format, vectorized
                if parsed.isna().sum() > column.isna().sum():  # several formats: slower path
                    parsed = pd.to_datetime(column, errors="coerce", format="mixed")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X)
        out = []
        for c in frame.columns:
            t = self._parse(frame[c])
            days = (t - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
            month = 2 * np.pi * (t.dt.month - 1) / 12
            weekday = 2 * np.pi * t.dt.day_of_week / 7
            features = [
                days,
                t.dt.year,
                np.sin(month),
                np.cos(month),
                np.sin(weekday),
                np.cos(weekday),
                (t.dt.day_of_week >= 5).astype(float).where(t.notna()),
            ]
            if self.with_time_.get(str(c)):
                hour = 2 * np.pi * (t.dt.hour + t.dt.minute / 60) / 24
                features += [np.sin(hour), np.cos(hour)]
            out += [np.asarray(f, dtype=float) for f in features]
        return np.column_stack(out) if out else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = []
        for c in self.columns_:
            parts = [
                "days",
                "year",
                "month_sin",
                "month_cos",
                "weekday_sin",
                "weekday_cos",
                "weekend",
            ]
            if self.with_time_.get(c):
                parts += ["hour_sin", "hour_cos"]
            names += [f"{c}_{p}" for p in parts]
        return np.asarray(names, dtype=object)


class HashingEncoder(TransformerMixin, BaseEstimator):
    """High-cardinality categories to `n_features` hashed columns ("column=value" is hashed)."""

    def __init__(self, n_features: int = 256) -> None:
        self.n_features = n_features

    def fit(self, X: Any, y: Any = None) -> HashingEncoder:
        self.columns_ = [str(c) for c in _frame(X).columns]
        return self

    def transform(self, X: Any) -> Any:
        frame = _frame(X)
        tokens = [
            [f"{c}={v}" for c, v in zip(self.columns_, row, strict=True)]
            for row in frame.astype(str).itertuples(index=False, name=None)
        ]
        return FeatureHasher(n_features=self.n_features, input_type="string").transform(tokens)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"hash_{i}" for i in range(self.n_features)], dtype=object)


class TextColumn(TransformerMixin, BaseEstimator):
    """One text column as the 1-D array of strings that TfidfVectorizer wants (missing -> "")."""

    def fit(self, X: Any, y: Any = None) -> TextColumn:
        return self

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X)
        return frame.iloc[:, 0].fillna("").astype(str).to_numpy()


class LabelEncodedClassifier(ClassifierMixin, BaseEstimator):
    """Fit a classifier on labels encoded as 0..k-1 (XGBoost needs them) and answer in the
    original labels."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelEncodedClassifier:
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(X, self.encoder_.transform(y), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self.encoder_.inverse_transform(np.asarray(self.estimator_.predict(X), dtype=int))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)
