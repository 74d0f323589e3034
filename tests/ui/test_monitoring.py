"""The dashboard's numbers on logs built by hand, where the right answer is known."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from modelyard.data import profile
from modelyard.services.ui import monitoring


def _log(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = pd.Timestamp("2026-11-23T12:00:00Z")
    records = []
    for i, row in enumerate(rows):
        records.append(
            {
                "record_id": i + 1,
                "request_id": row.get("id", f"r{i}"),
                "request_time": base + pd.Timedelta(seconds=row.get("t", i)),
                "latency_ms": row.get("latency", 1.0),
                "inputs_json": json.dumps(row["inputs"]),
                "outputs_json": json.dumps(row["outputs"]),
                "status": row.get("status", "OK"),
                "ground_truth_json": json.dumps(row["truth"]) if "truth" in row else "",
            }
        )
    return pd.DataFrame(records)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = profile(
        pd.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b"], 20_000)})
    )
    same = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b"], 20_000)})
    shifted = pd.DataFrame({"x": rng.normal(1.5, 1, 20_000), "c": ["a"] * 20_000})
    stable = {d.feature: d for d in monitoring.drift(same, reference)}
    assert stable["x"].psi < 0.01 and stable["x"].ks < 0.02 and stable["x"].status == "stable"
    assert stable["c"].psi < 0.01
    moved = {d.feature: d for d in monitoring.drift(shifted, reference)}
    assert moved["x"].status == "drifted" and moved["x"].ks > 0.4
    # All of one category where there were two halves: PSI = 0.5 ln(0.5/1e-4) + 0.5 ln(2) ≈ 4.6.
    assert abs(moved["c"].psi - (0.5 * np.log(0.5 / 1e-4) + 0.5 * np.log(2))) < 0.05
    assert next(d.feature for d in monitoring.drift(shifted, reference)) == "c"  # worst first


def test_a_level_shift_is_flagged_against_the_rolling_band() -> None:
    rows = [{"inputs": {"x": [1]}, "outputs": {"predictions": [10 + (i % 3) * 0.1]}, "t": i}
            for i in range(40)]  # fmt: skip
    rows += [
        {"inputs": {"x": [1]}, "outputs": {"predictions": [25.0]}, "t": 40 + i} for i in range(3)
    ]
    _inputs, predictions = monitoring.decode(_log(rows))
    dist = monitoring.distribution(predictions, "predictions")
    assert dist is not None
    flagged = [dist.times[i] for i in dist.anomalies]
    assert flagged and all(pd.Timestamp(t) >= pd.Timestamp("2026-11-23T12:00:38Z") for t in flagged)
    steady = monitoring.distribution(monitoring.decode(_log(rows[:40]))[1], "predictions")
    assert steady is not None and steady.anomalies == []


def test_two_dimensional_inputs_take_the_signature_names() -> None:
    log = _log([{"inputs": {"input": [[1, 2], [3, 4]]}, "outputs": {"predictions": [0, 1]}}])
    inputs, predictions = monitoring.decode(log, ["a", "b"])
    assert inputs[["a", "b"]].to_numpy().tolist() == [[1, 2], [3, 4]]
    assert list(predictions["predictions"]) == [0, 1]
    unnamed, _ = monitoring.decode(log)
    assert "input[1]" in unnamed.columns


def test_ground_truth_accuracy_and_errors() -> None:
    rows: list[dict[str, Any]] = [
        {"inputs": {"x": [1, 2]}, "outputs": {"predictions": [1.5, 2.5]}, "truth": [1.0, 3.0]},
        {"inputs": {"x": [3]}, "outputs": {"predictions": [4.0]}},  # no ground truth yet
        {"inputs": {"x": [3]}, "outputs": {}, "status": "INVALID_ARGUMENT"},
    ]
    _inputs, predictions = monitoring.decode(_log(rows))
    result = monitoring.against_truth(predictions, "predictions")
    assert result is not None and result.kind == "regression"
    assert result.pairs == 2 and result.mae == 0.5 and result.rmse == 0.5
    classes = [
        {"inputs": {"x": [1]}, "outputs": {"predictions": [k % 2]}, "truth": 1} for k in range(4)
    ]
    accuracy = monitoring.against_truth(monitoring.decode(_log(classes))[1], "predictions")
    assert accuracy is not None and accuracy.kind == "classification" and accuracy.accuracy == 0.5


def test_traffic_counts_recent_requests_and_errors() -> None:
    rows = [{"inputs": {}, "outputs": {}, "t": i * 30, "latency": float(i)} for i in range(20)]
    rows[15]["status"] = "INTERNAL"
    log = _log(rows)
    now = log["request_time"].max() + pd.Timedelta(seconds=1)
    t = monitoring.traffic(log, now)
    assert t.total == 20 and t.errors == 1 and t.error_percent == 10.0
    assert sum(t.requests) == 20 and len(t.minutes) == 10  # two requests a minute
    assert t.rate_per_s == round(10 / 300, 3)  # the last five minutes hold 10 requests


def test_forecasts_with_intervals_are_found() -> None:
    rows: list[dict[str, Any]] = [
        {"inputs": {"step": [1, 2, 3]}, "outputs": {"yhat": [1, 2, 3], "yhat_lower": [0, 1, 2],
                                                     "yhat_upper": [2, 3, 4]}, "id": "f1"},
        {"inputs": {"x": [1]}, "outputs": {"predictions": [5]}},
    ]  # fmt: skip
    forecast = monitoring.latest_forecast(_log(rows))
    assert forecast is not None and forecast.request_id == "f1"
    assert forecast.steps == [1, 2, 3] and forecast.upper == [2.0, 3.0, 4.0]
    assert monitoring.latest_forecast(_log(rows[1:])) is None


def test_drift_leaves_out_columns_whose_profile_is_not_ours() -> None:
    """A profile is whatever logged the dataset wrote: bins that were not numbers, or fewer
    fractions than bins, made the endpoint's dashboard a 500."""
    reference = profile(pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50}))
    odd = {
        "columns": {
            **reference["columns"],
            "letters": {"kind": "numeric", "edges": ["a", "b", "c"], "fractions": [0.5, 0.5]},
            "short": {"kind": "numeric", "edges": [0, 1, 2], "fractions": [1.0]},
            "none": {"kind": "numeric", "edges": [0, 1]},
            "listed": {"kind": "categorical", "values": ["a", "b"]},
            "text": "numeric",
        }
    }
    live = pd.DataFrame(
        {name: np.arange(10.0) for name in ("letters", "short", "none", "listed", "text")}
    )
    live["x"], live["c"] = np.arange(10.0), ["a"] * 10
    assert sorted(d.feature for d in monitoring.drift(live, odd)) == ["c", "x"]
    assert monitoring.drift(live, {"columns": ["x", "c"]}) == []
    assert [monitoring.profile_of(text) for text in ("[1]", "null", "{x", "")] == [{}] * 4


def test_the_request_rate_counts_what_the_log_left_out() -> None:
    """The rate was logged rows / 300 s: a tenth of the traffic with a 10% log sample, and
    never above 5000 / 300 (the latest rows the dashboard reads) however busy the endpoint."""
    sampled = _log([{"inputs": {}, "outputs": {}, "t": i * 0.5} for i in range(600)])
    now = sampled["request_time"].max() + pd.Timedelta(seconds=0.5)  # 600 rows in 300 s
    t = monitoring.traffic(sampled, now, sampling_rate=0.1)
    assert t.rate_per_s == 20.0 and sum(t.requests) == 6000
    assert t.total == 600  # what the log holds
    busy = _log([{"inputs": {}, "outputs": {}, "t": i * 0.01} for i in range(5000)])
    now = busy["request_time"].max() + pd.Timedelta(seconds=0.01)  # the latest 50 s only
    assert monitoring.traffic(busy, now, cut=True).rate_per_s == 100.0
    assert monitoring.traffic(busy, now).rate_per_s == round(5000 / 300, 3)  # the whole log


def test_errors_are_the_last_five_minutes_as_served() -> None:
    """The Errors card counted failed rows among the latest 5000 logged, however old (an
    outage of last week stayed on it), and as logged: a tenth of them with a 10% sample."""
    old = [{"inputs": {}, "outputs": {}, "t": i, "status": "UNAVAILABLE"} for i in range(50)]
    recent = [{"inputs": {}, "outputs": {}, "t": 3600 + i * 0.5} for i in range(600)]
    for row in recent[::100]:
        row["status"] = "INTERNAL"
    log = _log(old + recent)
    now = log["request_time"].max() + pd.Timedelta(seconds=0.5)  # 600 rows in the last 300 s
    t = monitoring.traffic(log, now, sampling_rate=0.1)
    assert t.errors == 60 and t.error_percent == 1.0  # 6 logged of 600: 60 of 6000 served
    busy = _log([{"inputs": {}, "outputs": {}, "t": i * 0.01} for i in range(5000)])
    busy.loc[::50, "status"] = "INTERNAL"  # 100 failures in the 50 s the rows span
    now = busy["request_time"].max() + pd.Timedelta(seconds=0.01)
    cut = monitoring.traffic(busy, now, cut=True)
    assert cut.errors == 600 and cut.rate_per_s == 100.0  # 2/s over 5 minutes


def test_a_cut_read_charts_only_the_minutes_it_holds_whole() -> None:
    """With the read cut to its latest rows, the oldest minute they reach held only its last
    requests: its bar showed a drop in traffic that was never there."""
    steady = _log([{"inputs": {}, "outputs": {}, "t": 30 + i * 0.1} for i in range(1500)])
    now = steady["request_time"].max() + pd.Timedelta(seconds=0.1)  # 12:00:30 to 12:03:00
    t = monitoring.traffic(steady, now, cut=True)
    assert t.requests == [600, 600] and t.minutes[0] == "2026-11-23T12:01:00+00:00"
    assert t.covered_from == pd.Timestamp("2026-11-23T12:00:30Z").value // 1_000_000
    whole = monitoring.traffic(steady, now)
    assert whole.requests == [300, 600, 600] and whole.covered_from is None
