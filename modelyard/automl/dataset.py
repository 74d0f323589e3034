"""Training data as AutoML stores it: normalized types, a split column, and a CSV round trip.

AutoML logs the data it trained on to the parent run (`data/training_data.csv`) with a split
column (`_automl_split`: train / val / test), and every trial, in process or in its generated
script, reads that same file with the same `pd.read_csv(..., dtype=..., parse_dates=...)`
call. So a script sees exactly the rows, types and split the trial saw.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from modelyard.errors import InvalidArgument
from modelyard.services.common import validation

SPLIT_COL = "_automl_split"
DATA_ARTIFACT = "data/training_data.csv"
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Schema:
    """How to read the CSV back: a dtype per column and the timestamp columns."""

    dtypes: dict[str, str]
    date_columns: list[str]

    def read(self, path: str | Path) -> pd.DataFrame:
        return pd.read_csv(path, dtype=self.dtypes, parse_dates=self.date_columns)


def load(data: Any) -> pd.DataFrame:
    """A DataFrame as given, or one read from a .csv / .parquet path."""
    if isinstance(data, pd.DataFrame):
        return _unique_names(data.copy())
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.exists():
            raise InvalidArgument(f"data file {path} does not exist", field="data")
        if path.suffix in (".parquet", ".pq"):
            return _unique_names(pd.read_parquet(path))
        return _unique_names(pd.read_csv(path))
    raise InvalidArgument(
        f"data must be a pandas DataFrame or a path to a CSV or Parquet file, not "
        f"{type(data).__name__}",
        field="data",
    )


def _unique_names(df: pd.DataFrame) -> pd.DataFrame:
    """Refuse columns whose names are the same as text (1 and "1", or a name twice): the
    training CSV and the scripts name columns by text, where one would hide the other."""
    names = [str(c) for c in df.columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgument(
            f"the data has more than one column named {twice[:5]} (as text, 1 and '1' are the "
            "same name): rename or drop the extra columns",
            field="data",
        )
    return df


def require_column(df: pd.DataFrame, column: str, name: str) -> None:
    """Refuse a column the data does not have, naming the closest ones (or all of them)."""
    if column in df.columns:
        return
    names = [str(c) for c in df.columns]
    close = [c for c in names if c.lower() == str(column).lower()]
    close += difflib.get_close_matches(str(column), names, n=3)
    if close:
        hint = f"did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?"
    else:
        hint = f"the columns are {names[:20]}{' ...' if len(names) > 20 else ''}"
    raise InvalidArgument(f"{name} {column!r} is not a column; {hint}", field=name)


def require_own_column(
    df: pd.DataFrame,
    column: str,
    name: str,
    roles: Mapping[str, Collection[str | None]],
    purpose: str,
) -> None:
    """Refuse a column the data does not have, or one that already has another of the run's
    `roles` (role -> the columns named for it), saying what `name`'s column is for."""
    require_column(df, column, name)
    for role, names in roles.items():
        if column in names:
            raise InvalidArgument(
                f"{name} {column!r} is also {role}: {purpose}; name it in one of them only",
                field=name,
            )


def require_once(names: list[str], name: str) -> None:
    """Refuse a column named twice for one role."""
    repeated = validation.named_twice(names)
    if repeated is not None:
        raise InvalidArgument(f"{name} names {repeated!r} twice; name each column once", field=name)


def numeric(col: pd.Series, name: str) -> pd.Series:
    """The column as float64; values that are not numbers are refused by name, never made NaN."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return finite(col.astype("float64"), name)
    converted = pd.to_numeric(col, errors="coerce")
    bad = col[converted.isna() & col.notna()]
    if len(bad):
        shown = [str(v) for v in dict.fromkeys(bad.tolist())][:5]
        raise InvalidArgument(
            f"column {name!r} holds {len(bad)} value(s) that are not numbers, e.g. {shown}: "
            "convert them to numbers (drop thousands separators and units; with read_csv, "
            "thousands=',') or to missing values (NaN), whose rows are dropped",
            field=name,
        )
    return finite(converted.astype("float64"), name)


def finite(col: pd.Series, name: str) -> pd.Series:
    """Refuse infinities by name: no model fits them (every trial would fail in its imputer), nor
    do the target's statistics."""
    infinite = int(np.isinf(col.to_numpy(dtype="float64", na_value=np.nan)).sum())
    if infinite:
        raise InvalidArgument(
            f"column {name!r} holds {infinite} infinite value(s) (inf or -inf): replace them with "
            "numbers, or with missing values (NaN), which AutoML imputes in a feature and drops "
            "with their rows in the target",
            field=name,
        )
    return col


def timestamps(col: pd.Series, name: str) -> pd.Series:
    """The column as timestamps without a time zone: values with a UTC offset (even mixed ones,
    as across a DST change) are converted to UTC."""
    if not pd.api.types.is_datetime64_any_dtype(col):
        try:
            col = pd.to_datetime(col)
        except (ValueError, TypeError):
            try:  # offsets that differ row to row: pandas parses them only as UTC
                col = pd.to_datetime(col, utc=True)
            except (ValueError, TypeError, OverflowError):
                raise _no_timestamps(col, name) from None
    if getattr(col.dt, "tz", None) is not None:
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    return col


def _no_timestamps(col: pd.Series, name: str) -> InvalidArgument:
    """Why `col` is no timestamps: how many values read as none, and the first few as given
    (pandas names one, and advises on its own arguments); or, when each value reads alone,
    the two date formats the column mixes."""
    given = col.dropna()
    advice = "give dates or date-times such as 2024-01-31 or 2024-01-31T08:00:00+01:00"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # day-first guesses
        each = pd.to_datetime(given, errors="coerce", format="mixed", utc=True)
        bad = given[each.isna()]
        if len(bad):
            shown = ", ".join(repr(v) for v in bad.drop_duplicates().head(3))
            return InvalidArgument(
                f"column {name!r} holds {len(bad)} value(s) that are no timestamp, e.g. "
                f"{shown}; {advice}",
                field=name,
            )
        first = given.iloc[0]
        form = guess_datetime_format(str(first))
        other = given[pd.to_datetime(given, errors="coerce", format=form, utc=True).isna()]
    then = f" and {other.iloc[0]!r}" if form and len(other) else ""
    return InvalidArgument(
        f"column {name!r} mixes date formats ({first!r}{then}): give every value in one "
        "format, such as 2024-01-31 or 2024-01-31T08:00:00+01:00 (ISO 8601)",
        field=name,
    )


def normalize(
    df: pd.DataFrame,
    target_col: str,
    keep_target_numeric: bool,
    identity: Collection[str] = (),
) -> tuple[pd.DataFrame, Schema]:
    """Features as float64, text (str) or timestamps; the target and the `identity` columns
    keep their type (an id 17 stays 17, not 17.0)."""
    out = {}
    dtypes: dict[str, str] = {}
    dates: list[str] = []
    for c in df.columns:
        name = str(c)
        col = df[c]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[name] = timestamps(col, name)
            dates.append(name)
            continue
        if name == target_col or name in identity:
            if pd.api.types.is_bool_dtype(col):
                dtypes[name] = "bool"
            elif pd.api.types.is_integer_dtype(col):
                col, dtypes[name] = col.astype("int64"), "int64"
            elif pd.api.types.is_float_dtype(col) or (keep_target_numeric and name == target_col):
                col, dtypes[name] = numeric(col, name), "float64"
            else:
                col, dtypes[name] = col.astype(str), "str"
        elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            col, dtypes[name] = numeric(col, name), "float64"
        else:
            col = col.astype("object").where(col.notna(), None)
            col = col.map(lambda v: v if v is None else str(v))
            dtypes[name] = "str"
        out[name] = col
    return pd.DataFrame(out, index=df.index), Schema(dtypes, dates)


def assign_split(
    df: pd.DataFrame,
    target_col: str,
    stratify: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    split_col: str | None = None,
) -> pd.Series:
    """train / val / test per row: from the user's split column, or drawn at random."""
    if split_col is not None:
        if split_col not in df.columns:
            raise InvalidArgument(f"split_col {split_col!r} is not a column", field="split_col")
        names = df[split_col].astype(str).str.lower().map(_SPLIT_NAMES)
        if names.isna().any():
            bad = sorted(set(df[split_col][names.isna()].astype(str)))[:5]
            raise InvalidArgument(
                f"split_col {split_col!r} holds {bad}; use train, validate or test",
                field="split_col",
            )
        return names.rename(SPLIT_COL)
    check_fractions(val_fraction, test_fraction)
    from sklearn.model_selection import train_test_split

    index = np.arange(len(df))
    labels = df[target_col].to_numpy() if stratify else None
    if labels is not None and pd.Series(labels).value_counts().min() < 3:
        labels = None
    rest, test = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=labels
    )
    rest_labels = labels[rest] if labels is not None else None
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=rest_labels,
    )
    split = np.empty(len(df), dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    return pd.Series(split, index=df.index, name=SPLIT_COL)


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 < test_fraction < 1 or not 0 < val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InvalidArgument("split fractions must be in (0, 1) and sum below 1", field="split")


def chronological_split(
    df: pd.DataFrame, time_col: str, val_fraction: float, test_fraction: float
) -> pd.Series:
    """train / val / test by time (as Databricks AutoML's time_col): the earliest rows train,
    the latest `test_fraction` test, the `val_fraction` before them validate; rows of one time
    stay together, so no part holds a row from the time of a later one. Times are timestamps
    (or text that parses as such) or numbers."""
    check_fractions(val_fraction, test_fraction)
    col = df[time_col]
    if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
        try:
            col = timestamps(col, time_col)
        except InvalidArgument as exc:
            raise InvalidArgument(f"time_col: {exc.message}", field="time_col") from None
    missing = int(col.isna().sum())
    if missing:
        raise InvalidArgument(
            f"time_col {time_col!r} has {missing} row(s) without a time: give every row one, "
            "or drop those rows",
            field="time_col",
        )
    order = col.rank(method="min").to_numpy()  # rows of one time share their first place
    n = len(df)
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    test_from = np.sort(order)[n - n_test]
    val_from = np.sort(order)[n - n_test - n_val]
    split = np.where(order >= test_from, "test", np.where(order >= val_from, "val", "train"))
    present = set(split)
    if present != {"train", "val", "test"}:
        raise InvalidArgument(
            f"time_col {time_col!r} has too few distinct times to split by: "
            f"{col.nunique()} for train, validation and test; give finer times, or pass "
            "split_col",
            field="time_col",
        )
    return pd.Series(split.astype(object), index=df.index, name=SPLIT_COL)


def check_split(split: pd.Series, split_col: str, cv_folds: int | None) -> None:
    """Refuse a user's split that leaves a part every trial needs empty: without it each trial
    would fail alike and the whole budget go to nothing."""
    present = set(split)
    if "test" not in present:
        problem, fix = "no test rows to score the best model on", "mark some rows 'test'"
    elif cv_folds is None and "val" not in present:
        problem = "no validation rows to score trials on (cv_folds is None)"
        fix = "mark some rows 'validate', or pass cv_folds='auto' to cross-validate"
    elif (cv_folds is None and "train" not in present) or not present & {"train", "val"}:
        problem, fix = "no train rows", "mark some rows 'train'"
    else:
        return
    raise InvalidArgument(
        f"split_col {split_col!r} has {problem}: {fix} (its values: train, validate, test)",
        field="split_col",
    )


def time_split(times: pd.Series, horizon: int) -> pd.Series:
    """The last `horizon` points are test, the `horizon` before them validation."""
    n = len(times)
    split = np.full(n, "train", dtype=object)
    split[n - 2 * horizon : n - horizon] = "val"
    split[n - horizon :] = "test"
    return pd.Series(split, index=times.index, name=SPLIT_COL)
