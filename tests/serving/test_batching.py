"""Dynamic batching keeps each caller's answer its own, and lets callers that gave up go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import DeadlineExceeded
from modelyard.services.serving.batching import DynamicBatcher


class _HeldModel:
    """Its first call waits until released, so the requests behind it queue into one batch."""

    def __init__(self, predict: Callable[[np.ndarray], dict[str, Any]]) -> None:
        self.predict = predict
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []  # rows per call

    def __call__(self, X: np.ndarray) -> dict[str, Any]:
        self.batches.append(len(X))
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return self.predict(X)


def _queued(batcher: DynamicBatcher, count: int) -> None:
    with batcher._cond:
        assert batcher._cond.wait_for(lambda: len(batcher._queue) == count, timeout=60)


def _drops_nan_rows(X: np.ndarray) -> dict[str, Any]:
    """Column 0 of each row without a NaN: fewer rows out than in, as a dropna() would give."""
    return {"y": X[~np.isnan(X).any(axis=1), 0]}


def test_a_model_that_drops_rows_never_hands_one_caller_anothers_rows() -> None:
    model = _HeldModel(_drops_nan_rows)
    batcher = DynamicBatcher(model, max_batch_size=64)
    results: dict[int, list[float]] = {}

    def call(i: int) -> None:
        rows = np.array([[100.0 * i + j, 0.0] for j in range(3)])
        if i == 1:
            rows[0, 1] = np.nan  # caller 1's first row is dropped by the model
        results[i] = batcher(rows)["y"].tolist()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    threads[0].start()
    assert model.entered.wait(60)
    for t in threads[1:]:
        t.start()
    _queued(batcher, 4)  # callers 1-4 wait behind caller 0: the next call merges them
    model.release.set()
    for t in threads:
        t.join(60)
    assert results == {
        0: [0.0, 1.0, 2.0],
        1: [101.0, 102.0],
        2: [200.0, 201.0, 202.0],
        3: [300.0, 301.0, 302.0],
        4: [400.0, 401.0, 402.0],
    }
    # The merged call (12 rows) gave 11 rows: rerun one by one, and never merged again.
    assert model.batches == [3, 12, 3, 3, 3, 3]
    model.entered.clear()
    model.release.clear()
    later = [threading.Thread(target=call, args=(i,)) for i in (5, 6, 7)]
    later[0].start()
    assert model.entered.wait(60)
    for t in later[1:]:
        t.start()
    _queued(batcher, 2)
    model.release.set()
    for t in later:
        t.join(60)
    assert len(results) == 8 and model.batches[6:] == [3, 3, 3]
    # ModelStatistics count every model call, the merged one whose answer was thrown away too.
    stats = batcher.stats.snapshot()
    assert stats.execution_count == len(model.batches) == 9
    assert {size: b.compute_infer.count for size, b in stats.batches.items()} == {3: 8, 12: 1}


def test_a_caller_whose_deadline_passes_leaves_the_queue_uncomputed() -> None:
    model = _HeldModel(lambda X: {"y": X[:, 0]})
    batcher = DynamicBatcher(model, max_batch_size=64)
    first = threading.Thread(target=batcher, args=(np.zeros((1, 2)),))
    first.start()
    assert model.entered.wait(60)
    with pytest.raises(DeadlineExceeded):
        batcher(np.ones((1, 2)), deadline=time.monotonic() + 0.05)
    assert batcher._queue == []
    model.release.set()
    first.join(60)
    assert model.batches == [1]  # the request that gave up was never run


def test_a_caller_without_a_deadline_waits_however_far_off_grpc_puts_it() -> None:
    """A gRPC call without a deadline has ~9.2e18 s remaining, past what Condition.wait takes:
    a caller waiting behind a running batch got OverflowError (INTERNAL) instead of its answer."""
    model = _HeldModel(lambda X: {"y": X[:, 0]})
    batcher = DynamicBatcher(model, max_batch_size=64)
    first = threading.Thread(target=batcher, args=(np.zeros((1, 2)),))
    first.start()
    assert model.entered.wait(60)
    answer: dict[str, Any] = {}

    def waiting() -> None:
        try:
            answer["y"] = batcher(np.ones((1, 2)), deadline=time.monotonic() + 9.2e18)["y"]
        except BaseException as exc:
            answer["error"] = exc

    second = threading.Thread(target=waiting)
    second.start()
    _queued(batcher, 1)
    model.release.set()
    first.join(60)
    second.join(60)
    assert "error" not in answer, answer
    assert answer["y"].tolist() == [1.0]


def _answers_by_b(frame: pd.DataFrame) -> dict[str, Any]:
    """b where a row has it; -1 where it is NaN; -2 for a frame without b (a model that treats
    a left-out optional column otherwise than a missing value, as many do)."""
    if "b" not in frame.columns:
        return {"y": np.full(len(frame), -2.0)}
    return {"y": frame["b"].fillna(-1.0).to_numpy()}


def test_a_request_gets_the_same_answer_whatever_it_is_batched_with() -> None:
    """Requests with other columns (an optional one left out) are not merged: merged, the one
    without b reached the model with b as NaN and got -1 instead of its -2."""
    model = _HeldModel(_answers_by_b)
    batcher = DynamicBatcher(model, max_batch_size=64)
    requests = {
        "first": pd.DataFrame({"a": [0.0], "b": [0.0]}),
        "with b": pd.DataFrame({"a": [1.0], "b": [5.0]}),
        "without b": pd.DataFrame({"a": [1.0]}),
        "with b again": pd.DataFrame({"a": [2.0], "b": [7.0]}),
        "b as integers": pd.DataFrame({"a": [3.0], "b": [9]}),
    }
    results: dict[str, list[float]] = {}

    def call(key: str) -> None:
        results[key] = batcher(requests[key])["y"].tolist()

    threads = {key: threading.Thread(target=call, args=(key,)) for key in requests}
    threads["first"].start()
    assert model.entered.wait(60)
    for n, key in enumerate(list(requests)[1:], start=1):
        threads[key].start()
        _queued(batcher, n)  # queued in this order behind the first
    model.release.set()
    for t in threads.values():
        t.join(60)
    assert results == {
        "first": [0.0],
        "with b": [5.0],
        "without b": [-2.0],
        "with b again": [7.0],
        "b as integers": [9.0],
    }
    # The two requests with the same columns and types still ran as one call.
    assert model.batches == [1, 2, 1, 1]
