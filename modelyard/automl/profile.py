"""Look at the data before modeling: semantic types, statistics, and what looks wrong.

`detect_types` decides how each column is treated (`numeric`, `categorical`, `high_cardinality`,
`datetime`, `text`, or dropped as `id`, `constant`, `empty`). `profile` adds per-column statistics,
the target distribution, correlations and warnings (constant or empty columns, identifiers, heavy
missingness, high cardinality, features that predict the target almost perfectly and so probably
leak it, duplicate rows, class imbalance, strongly correlated feature pairs). The exploration
report (`report.py`) renders the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = "numeric"
CATEGORICAL = "categorical"
HIGH_CARDINALITY = "high_cardinality"
DATETIME = "datetime"
TEXT = "text"
DROPPED = ("id", "constant", "empty")

MAX_ONE_HOT = 50  # more distinct values than this are hashed instead of one-hot encoded
_SAMPLE = 5000


@dataclass
class ColumnProfile:
    name: str
    dtype: str
    semantic_type: str
    missing: int
    missing_fraction: float
    distinct: int
    examples: list[str]
    stats: dict[str, float] = field(default_factory=dict)
    top_values: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Finding:
    kind: str
    column: str | None
    message: str


@dataclass
class DataProfile:
    n_rows: int
    n_columns: int
    problem_type: str
    target_col: str
    columns: list[ColumnProfile]
    warnings: list[Finding]
    target: dict[str, Any]
    target_correlations: dict[str, float]
    correlated_pairs: list[tuple[str, str, float]]
    duplicate_rows: int
    time_col: str | None = None
    time_range: tuple[str, str] | None = None

    def semantic_types(self) -> dict[str, str]:
        return {c.name: c.semantic_type for c in self.columns}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "problem_type": self.problem_type,
            "target_col": self.target_col,
            "time_col": self.time_col,
            "time_range": self.time_range,
            "duplicate_rows": self.duplicate_rows,
            "columns": [c.__dict__ for c in self.columns],
            "warnings": [w.__dict__ for w in self.warnings],
            "target": self.target,
            "target_correlations": self.target_correlations,
            "correlated_pairs": [list(p) for p in self.correlated_pairs],
        }


# -- semantic types ------------------------------------------------------------------------------


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.astype(str).head(200)
    if not sample.str.contains(r"\d", regex=True).all():
        return False
    if not sample.str.contains(r"[-/:]", regex=True).mean() >= 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def _is_text(values: pd.Series) -> bool:
    sample = values.astype(str).head(_SAMPLE)
    words = sample.str.split().str.len()
    return bool(words.mean() >= 4 and sample.nunique() >= 0.5 * len(sample))


def semantic_type(column: pd.Series) -> str:
    values = column.dropna()
    if values.empty:
        return "empty"
    distinct = values.nunique()
    if distinct <= 1:
        return "constant"
    if pd.api.types.is_bool_dtype(column):
        return CATEGORICAL
    if pd.api.types.is_datetime64_any_dtype(column):
        return DATETIME
    if pd.api.types.is_numeric_dtype(column):
        is_int = pd.api.types.is_integer_dtype(column) or bool((values % 1 == 0).all())
        if is_int and distinct == len(column) and len(column) > 50:
            steps = np.diff(np.sort(values.to_numpy()))
            if (steps == 1).all():
                return "id"  # a row number
        return NUMERIC
    if distinct <= MAX_ONE_HOT:
        return CATEGORICAL
    if _looks_like_dates(values):
        return DATETIME
    if _is_text(values):
        return TEXT
    if distinct >= 0.95 * len(values):
        return "id"
    return HIGH_CARDINALITY


def detect_types(df: pd.DataFrame, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(c): semantic_type(df[c]) for c in df.columns if c not in exclude}


# -- statistics ----------------------------------------------------------------------------------


def _column_profile(name: str, column: pd.Series, kind: str) -> ColumnProfile:
    values = column.dropna()
    profile = ColumnProfile(
        name=name,
        dtype=str(column.dtype),
        semantic_type=kind,
        missing=int(column.isna().sum()),
        missing_fraction=float(column.isna().mean()) if len(column) else 0.0,
        distinct=int(values.nunique()),
        examples=[str(v)[:60] for v in values.head(3)],
    )
    if kind == NUMERIC and not values.empty:
        numbers = pd.to_numeric(values, errors="coerce").dropna().astype(float)
        profile.stats = {
            "mean": float(numbers.mean()),
            "std": float(numbers.std()) if len(numbers) > 1 else 0.0,
            "min": float(numbers.min()),
            "p25": float(numbers.quantile(0.25)),
            "median": float(numbers.median()),
            "p75": float(numbers.quantile(0.75)),
            "max": float(numbers.max()),
        }
    elif kind in (CATEGORICAL, HIGH_CARDINALITY):
        counts = values.astype(str).value_counts().head(5)
        profile.top_values = [(str(k), int(v)) for k, v in counts.items()]
    elif kind == TEXT:
        lengths = values.astype(str).str.len()
        profile.stats = {"mean_length": float(lengths.mean()), "max_length": float(lengths.max())}
    return profile


def _target_summary(y: pd.Series, problem_type: str) -> dict[str, Any]:
    y = y.dropna()
    if problem_type == "classification":
        counts = y.value_counts()
        return {
            "classes": {str(k): int(v) for k, v in counts.items()},
            "minority_fraction": float(counts.min() / counts.sum()) if len(counts) else 0.0,
        }
    numbers = pd.to_numeric(y, errors="coerce").dropna().astype(float)
    hist, edges = np.histogram(numbers, bins=min(20, max(1, numbers.nunique())))
    return {
        "mean": float(numbers.mean()),
        "std": float(numbers.std()),
        "min": float(numbers.min()),
        "median": float(numbers.median()),
        "max": float(numbers.max()),
        "histogram": {"counts": hist.tolist(), "edges": [float(e) for e in edges]},
    }


def _far_outliers(y: pd.Series, name: str) -> str | None:
    """Why a regression target's far-out values (beyond Tukey's far fences, 3 x IQR past the
    quartiles) matter: squared errors make them most of rmse and r2, so every trial looked
    bad, and the best was the one fitting them, without a word on why."""
    numbers = pd.to_numeric(y, errors="coerce").dropna().astype(float)
    q1, q3 = numbers.quantile([0.25, 0.75])
    iqr = q3 - q1
    if len(numbers) < 20 or not iqr > 0:
        return None
    lo, hi = q1 - 3 * iqr, q3 + 3 * iqr
    far = numbers[(numbers < lo) | (numbers > hi)]
    if far.empty:
        return None
    shown = ", ".join(f"{v:.4g}" for v in far.drop_duplicates().head(3))
    return (
        f"{len(far)} of {len(numbers)} {name} values lie far outside the rest (beyond "
        f"{lo:.4g} .. {hi:.4g}, 3 x IQR past the quartiles), e.g. {shown}: rmse and r2 square "
        "the errors, so these rows dominate them. Check they are real values (not a unit or "
        "entry error), or rank trials by mae (primary_metric='mae', --metric mae)"
    )


def _numeric_target(y: pd.Series, problem_type: str) -> pd.Series | None:
    if problem_type != "classification":
        return pd.to_numeric(y, errors="coerce").astype(float)
    classes = y.dropna().unique()
    if len(classes) == 2:
        return (y == sorted(classes, key=str)[-1]).astype(float)
    return None


def _leaks(x: pd.Series, y: pd.Series, kind: str, problem_type: str) -> bool:
    """Does this one feature predict the target almost perfectly?"""
    frame = pd.DataFrame({"x": x, "y": y}).dropna()
    if len(frame) < 30:
        return False
    if problem_type != "classification":
        if kind != NUMERIC:
            return False
        xs, ys = frame["x"].astype(float), frame["y"].astype(float)
        if xs.std() == 0 or ys.std() == 0:
            return False
        return bool(abs(np.corrcoef(xs, ys)[0, 1]) >= 0.99)
    majority = frame["y"].value_counts(normalize=True).iloc[0]
    if majority >= 0.95:
        return False
    if kind == NUMERIC:
        from sklearn.model_selection import cross_val_score
        from sklearn.tree import DecisionTreeClassifier

        tree = DecisionTreeClassifier(max_depth=2, random_state=0)
        folds = min(3, int(frame["y"].value_counts().min()))
        if folds < 2:
            return False
        score = cross_val_score(tree, frame[["x"]].astype(float), frame["y"].astype(str), cv=folds)
        return bool(score.mean() >= 0.995)
    if kind == CATEGORICAL:
        groups = frame.groupby(frame["x"].astype(str))["y"]
        purity = groups.agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame)
        return bool(purity >= 0.995)
    return False


def profile(
    df: pd.DataFrame,
    target_col: str,
    problem_type: str,
    types: dict[str, str],
    time_col: str | None = None,
) -> DataProfile:
    sample = df.sample(_SAMPLE, random_state=0) if len(df) > _SAMPLE else df
    y = sample[target_col]
    columns = [_column_profile(str(c), df[c], types.get(str(c), "target")) for c in df.columns]
    notes: list[Finding] = []
    for c in columns:
        if c.name in (target_col, time_col):
            continue
        if c.semantic_type == "constant":
            notes.append(Finding("constant", c.name, f"{c.name} has a single value; dropped"))
        elif c.semantic_type == "empty":
            notes.append(Finding("empty", c.name, f"{c.name} is always missing; dropped"))
        elif c.semantic_type == "id":
            notes.append(Finding("id", c.name, f"{c.name} looks like an identifier; dropped"))
        elif c.semantic_type == HIGH_CARDINALITY:
            notes.append(
                Finding(
                    "high_cardinality",
                    c.name,
                    f"{c.name} has {c.distinct} distinct values; hashed instead of one-hot",
                )
            )
        if c.missing_fraction >= 0.5 and c.semantic_type not in DROPPED:
            notes.append(
                Finding(
                    "missing", c.name, f"{c.name} is missing in {c.missing_fraction:.0%} of rows"
                )
            )
        kind = types.get(c.name)
        if kind in (NUMERIC, CATEGORICAL) and _leaks(sample[c.name], y, kind, problem_type):
            notes.append(
                Finding(
                    "leakage",
                    c.name,
                    f"{c.name} alone predicts {target_col} almost perfectly: check that it is "
                    "known at prediction time (exclude it with exclude_cols otherwise)",
                )
            )
    target = _target_summary(df[target_col], problem_type)
    if problem_type == "classification" and target["minority_fraction"] < 0.1:
        notes.append(
            Finding(
                "imbalance",
                target_col,
                f"the rarest class is {target['minority_fraction']:.1%} of rows; class weights "
                "are searched",
            )
        )
    far = _far_outliers(df[target_col], target_col) if problem_type == "regression" else None
    if far:
        notes.append(Finding("outliers", target_col, far))
    numeric = [c for c, k in types.items() if k == NUMERIC and c != time_col]
    ny = _numeric_target(y, problem_type)
    target_corr: dict[str, float] = {}
    if ny is not None:
        for name in numeric:
            x = pd.to_numeric(sample[name], errors="coerce").astype(float)
            ok = x.notna() & ny.notna()
            if ok.sum() > 2 and x[ok].std() > 0 and ny[ok].std() > 0:
                target_corr[name] = float(np.corrcoef(x[ok], ny[ok])[0, 1])
    target_corr = dict(sorted(target_corr.items(), key=lambda kv: -abs(kv[1])))
    pairs: list[tuple[str, str, float]] = []
    if 1 < len(numeric) <= 200:
        corr = sample[numeric].apply(pd.to_numeric, errors="coerce").astype(float).corr()
        for i, a in enumerate(numeric):
            for b in numeric[i + 1 :]:
                r = corr.loc[a, b]
                if not math.isnan(r) and abs(r) >= 0.95:
                    pairs.append((a, b, float(r)))
        for a, b, r in pairs[:20]:
            notes.append(
                Finding("correlated", a, f"{a} and {b} are strongly correlated (r={r:.3f})")
            )
    duplicates = int(df.duplicated().sum())
    if duplicates:
        notes.append(Finding("duplicates", None, f"{duplicates} rows are exact duplicates"))
    time_range = None
    if time_col is not None:
        times = pd.to_datetime(df[time_col])
        time_range = (str(times.min()), str(times.max()))
    return DataProfile(
        n_rows=len(df),
        n_columns=df.shape[1],
        problem_type=problem_type,
        target_col=target_col,
        columns=columns,
        warnings=notes,
        target=target,
        target_correlations=target_corr,
        correlated_pairs=pairs,
        duplicate_rows=duplicates,
        time_col=time_col,
        time_range=time_range,
    )
