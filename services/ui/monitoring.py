"""Model health from an endpoint's inference log: traffic, the prediction distribution over
time with anomalies, input drift against the training data's profile, predictions against
ground truth, and forecasts with their intervals.

Drift compares live inputs with the per-column bins a dataset profile records at training time
(`modelyard.data.profile`): PSI over those bins (< 0.1 stable, 0.1-0.25 moderate, > 0.25
drifted) and the Kolmogorov-Smirnov distance at the bin edges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

EPS = 1e-4
PSI_MODERATE, PSI_DRIFT = 0.1, 0.25
BUCKETS = 30
BAND_WINDOW, BAND_MIN, BAND_WIDTH = 8, 4, 3.0
RATE_SECONDS = 300  # the live cards' window: request rate, latency and errors
FORECAST_KEYS = (("yhat", "yhat_lower", "yhat_upper"), ("forecast", "lower", "upper"))


# -- decoding the log --------------------------------------------------------------------------


def _flat_columns(payload: dict[str, Any], names: Sequence[str] = ()) -> dict[str, list[Any]]:
    """Columns of one request: 1-D tensors as they are, 2-D ones split per column (named by
    `names` when the widths match, as a tabular model's signature orders them)."""
    out: dict[str, list[Any]] = {}
    for key, values in payload.items():
        if not isinstance(values, list):
            continue
        if values and isinstance(values[0], list):
            width = len(values[0])
            labels = list(names) if len(names) == width else [f"{key}[{j}]" for j in range(width)]
            for j, label in enumerate(labels):
                out[label] = [
                    row[j] if isinstance(row, list) and j < len(row) else None for row in values
                ]
        else:
            out[key] = values
    return out


def decode(log: pd.DataFrame, names: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inputs, predictions) with one row per predicted row, each with its request's time."""
    inputs, outputs = [], []
    for record in log.itertuples(index=False):
        if record.status != "OK":
            continue
        try:
            ins = _flat_columns(json.loads(record.inputs_json), names)
            outs = _flat_columns(json.loads(record.outputs_json))
        except (ValueError, TypeError):
            continue
        rows = max((len(v) for v in outs.values()), default=0)
        truth = _truth(record.ground_truth_json, rows)
        for i in range(rows):
            inputs.append(
                {k: v[i] for k, v in ins.items() if i < len(v)} | {"__time": record.request_time}
            )
            outputs.append(
                {k: v[i] for k, v in outs.items() if i < len(v)}
                | {
                    "__time": record.request_time,
                    "__truth": truth[i],
                    "__request": record.request_id,
                }
            )
    return pd.DataFrame(inputs), pd.DataFrame(outputs)


def _truth(text: str, rows: int) -> list[Any]:
    if not text:
        return [None] * rows
    try:
        value = json.loads(text)
    except ValueError:
        return [None] * rows
    if isinstance(value, list):
        return (value + [None] * rows)[:rows]
    return [value] * rows


def prediction_column(predictions: pd.DataFrame) -> str | None:
    candidates = [c for c in predictions.columns if not c.startswith("__")]
    if "predictions" in candidates:
        return "predictions"
    numeric = [c for c in candidates if pd.api.types.is_numeric_dtype(predictions[c])]
    return (numeric or candidates or [None])[0]


# -- traffic -----------------------------------------------------------------------------------


@dataclass
class Traffic:
    minutes: list[str]
    requests: list[int]
    p50: list[float]
    p95: list[float]
    rate_per_s: float
    latency_p50: float | None
    latency_p95: float | None
    errors: int  # failed requests served over the rate's 5 minutes (estimated as the rate is)
    error_percent: float | None  # of the requests logged over those 5 minutes
    total: int
    covered_from: int | None = None  # ms of the oldest row read, when the read was cut


def traffic(
    log: pd.DataFrame,
    now: pd.Timestamp,
    window_minutes: int = 60,
    sampling_rate: float = 1.0,
    cut: bool = False,
) -> Traffic:
    """Requests and latency per minute over the last hour; the rate over the last 5 minutes.

    The log holds a sample of the requests (`sampling_rate` of them), so request and error
    counts and the rate stand each logged request for 1 / sampling_rate served ones; and when
    it was cut to its latest rows (`cut`), the rate is over the time those rows span: over 5
    minutes they do not fill, a busy endpoint's rate stopped at rows / 300 s, and the minute
    of its oldest row is left out of the per-minute charts (it holds only that minute's last
    requests: a dip that was never there). Errors are those of the same 5 minutes (at the same
    rate), not of whatever the log's rows span."""
    if log.empty:
        return Traffic([], [], [], [], 0.0, None, None, 0, None, 0)
    scale = 1 / (sampling_rate or 1.0)  # served requests per logged one
    times = pd.to_datetime(log["request_time"], utc=True)
    start = now - pd.Timedelta(minutes=window_minutes)
    if cut:  # the rows of the oldest minute read are only its last ones: a bar of a few
        start = max(start, times.min().ceil("min"))
    recent = log[times >= start].assign(minute=times.dt.floor("min"))
    grouped = recent.groupby("minute")["latency_ms"]
    since = now - pd.Timedelta(seconds=RATE_SECONDS)
    if cut:
        since = max(since, times.min())
    last5 = log[times >= since]
    seconds = max((now - since).total_seconds(), 1.0)
    failed = int((last5["status"] != "OK").sum())
    return Traffic(
        minutes=[m.isoformat() for m in grouped.size().index],
        requests=[round(v * scale) for v in grouped.size()],
        p50=[round(float(v), 3) for v in grouped.quantile(0.5)],
        p95=[round(float(v), 3) for v in grouped.quantile(0.95)],
        rate_per_s=round(len(last5) * scale / seconds, 3),
        latency_p50=round(float(last5["latency_ms"].quantile(0.5)), 3) if len(last5) else None,
        latency_p95=round(float(last5["latency_ms"].quantile(0.95)), 3) if len(last5) else None,
        errors=round(failed * scale * RATE_SECONDS / seconds),
        error_percent=round(100 * failed / len(last5), 1) if len(last5) else None,
        total=len(log),
        covered_from=times.min().value // 1_000_000 if cut else None,
    )


# -- predictions over time and anomalies ---------------------------------------------------------


@dataclass
class Distribution:
    times: list[str]
    p10: list[float]
    p50: list[float]
    p90: list[float]
    mean: list[float]
    lower: list[float | None]
    upper: list[float | None]
    anomalies: list[int]  # indexes of buckets whose mean left the rolling band


def distribution(predictions: pd.DataFrame, column: str) -> Distribution | None:
    values = pd.to_numeric(predictions[column], errors="coerce")
    frame = pd.DataFrame(
        {"t": pd.to_datetime(predictions["__time"], utc=True), "v": values}
    ).dropna()
    if frame.empty:
        return None
    span = (frame["t"].max() - frame["t"].min()) or pd.Timedelta(seconds=1)
    width = max(span / BUCKETS, pd.Timedelta(milliseconds=10))
    frame["bucket"] = frame["t"].dt.floor(_freq(width))
    grouped = frame.groupby("bucket")["v"]
    mean = grouped.mean()
    # The band for each bucket comes from the buckets before it, never from itself.
    history = mean.shift(1).rolling(BAND_WINDOW, min_periods=BAND_MIN)
    center, spread = history.mean(), history.std()
    lower, upper = center - BAND_WIDTH * spread, center + BAND_WIDTH * spread
    outside = ((mean < lower) | (mean > upper)) & spread.notna()
    return Distribution(
        times=[t.isoformat() for t in mean.index],
        p10=_floats(grouped.quantile(0.1)),
        p50=_floats(grouped.quantile(0.5)),
        p90=_floats(grouped.quantile(0.9)),
        mean=_floats(mean),
        lower=_floats(lower),
        upper=_floats(upper),
        anomalies=[i for i, flag in enumerate(outside) if flag],
    )


def _freq(width: pd.Timedelta) -> str:
    """A pandas frequency of about `width`, in whole units of a readable size."""
    seconds = width.total_seconds()
    for limit, freq, unit in (
        (1, "ms", 0.001),
        (60, "s", 1),
        (3600, "min", 60),
        (86400, "h", 3600),
    ):
        if seconds < limit:
            return f"{max(1, math.ceil(seconds / unit))}{freq}"
    return f"{math.ceil(seconds / 86400)}D"


def _floats(series: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else round(float(v), 6) for v in series]


# -- drift ---------------------------------------------------------------------------------------


@dataclass
class Drift:
    feature: str
    psi: float
    ks: float | None
    status: str  # stable, moderate, drifted
    live_rows: int


def _psi(expected: ArrayLike, actual: ArrayLike) -> float:
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _status(psi: float) -> str:
    return "drifted" if psi > PSI_DRIFT else "moderate" if psi > PSI_MODERATE else "stable"


def profile_of(text: str) -> dict[str, Any]:
    """A dataset's profile as a mapping; {} for one that is not a JSON object. A profile is
    free-form JSON (MLflow's too), whatever logged the dataset wrote: not always ours."""
    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def drift(inputs: pd.DataFrame, reference: dict[str, Any]) -> list[Drift]:
    """Per profiled column present in the live inputs: PSI (and KS for numbers), worst first.
    Columns whose profile is not as modelyard.data.profile writes it are left out."""
    columns = reference.get("columns")
    results = []
    for name, ref in columns.items() if isinstance(columns, dict) else ():
        if name not in inputs.columns or not isinstance(ref, dict):
            continue
        live = inputs[name].dropna()
        if live.empty:
            continue
        try:
            found = _column_drift(name, live, ref)
        except (TypeError, ValueError):  # bins or shares that are not numbers, or do not match
            continue
        if found is not None:
            results.append(found)
    return sorted(results, key=lambda d: -d.psi)


def _column_drift(name: str, live: pd.Series, ref: dict[str, Any]) -> Drift | None:
    bins = ref.get("edges")
    if ref.get("kind") == "numeric" and isinstance(bins, list) and len(bins) > 1:
        values = pd.to_numeric(live, errors="coerce").dropna().to_numpy(dtype=float)
        if not len(values):
            return None
        edges = np.asarray(bins, dtype=float)
        expected = np.asarray(ref.get("fractions"), dtype=float)
        if expected.shape != (len(edges) - 1,):
            raise ValueError("one fraction per bin")
        inner = np.concatenate(([-np.inf], edges[1:-1], [np.inf]))
        counts = np.histogram(values, bins=inner)[0] / len(values)
        psi = _psi(expected, counts)
        ref_cdf = np.cumsum(expected)[:-1]
        live_cdf = np.searchsorted(np.sort(values), edges[1:-1], side="right") / len(values)
        ks = float(np.max(np.abs(ref_cdf - live_cdf))) if len(ref_cdf) else 0.0
        return Drift(name, round(psi, 4), round(ks, 4), _status(psi), len(values))
    known = ref.get("values")
    if ref.get("kind") == "categorical" and isinstance(known, dict):
        shares = live.astype(str).value_counts(normalize=True)
        actual = [float(shares.get(k, 0.0)) for k in known]
        actual.append(float(1 - sum(actual)))
        psi = _psi([*known.values(), ref.get("other", 0.0)], actual)
        return Drift(name, round(psi, 4), None, _status(psi), len(live))
    return None


# -- ground truth and forecasts ------------------------------------------------------------------


@dataclass
class Accuracy:
    kind: str  # regression or classification
    pairs: int
    predicted: list[Any]
    actual: list[Any]
    mae: float | None = None
    rmse: float | None = None
    accuracy: float | None = None


def against_truth(predictions: pd.DataFrame, column: str) -> Accuracy | None:
    known = predictions[predictions["__truth"].notna()] if "__truth" in predictions else None
    if known is None or known.empty:
        return None
    predicted, actual = known[column], known["__truth"]
    numeric_p = pd.to_numeric(predicted, errors="coerce")
    numeric_a = pd.to_numeric(actual, errors="coerce")
    is_classes = (
        all(float(v).is_integer() for v in numeric_p.dropna()) and numeric_p.nunique() <= 20
    )
    if numeric_p.notna().all() and numeric_a.notna().all() and not is_classes:
        error = numeric_p - numeric_a
        return Accuracy(
            "regression", len(known), _floats(numeric_p), _floats(numeric_a),
            mae=round(float(error.abs().mean()), 6), rmse=round(float((error**2).mean() ** 0.5), 6),
        )  # fmt: skip
    hits = (predicted.astype(str) == actual.astype(str)).mean()
    return Accuracy(
        "classification", len(known), list(predicted.astype(str)), list(actual.astype(str)),
        accuracy=round(float(hits), 4),
    )  # fmt: skip


@dataclass
class Forecast:
    steps: list[Any]
    value: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    request_id: str


def latest_forecast(log: pd.DataFrame) -> Forecast | None:
    """The newest successful request whose outputs carry a forecast with an interval."""
    for record in log.sort_values("record_id", ascending=False).itertuples(index=False):
        if record.status != "OK":
            continue
        try:
            outputs = json.loads(record.outputs_json)
            inputs = json.loads(record.inputs_json)
        except ValueError:
            continue
        for value, lower, upper in FORECAST_KEYS:
            if all(isinstance(outputs.get(k), list) for k in (value, lower, upper)):
                n = len(outputs[value])
                steps = next(
                    (v for v in inputs.values() if isinstance(v, list) and len(v) == n),
                    list(range(1, n + 1)),
                )
                return Forecast(
                    steps,
                    _plain(outputs[value]),
                    _plain(outputs[lower]),
                    _plain(outputs[upper]),
                    record.request_id,
                )
    return None


def _plain(values: list[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        try:
            out.append(float(v[0] if isinstance(v, list) else v))
        except (TypeError, ValueError, IndexError):
            out.append(None)
    return out
