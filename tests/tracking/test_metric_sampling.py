"""GetMetricHistory with max_points: a chart's sample of a long history, taken by the server."""

from __future__ import annotations

import itertools
import math

import pytest

from modelyard import Client
from modelyard.entities import Metric
from modelyard.errors import InvalidArgument, NotFound


def _history(stack: Client, values: list[float]) -> str:
    rid = stack.create_run("0").info.run_id
    stack.log_batch(rid, [Metric("m", v, 1000 + i, i) for i, v in enumerate(values)])
    return rid


def test_a_sample_spreads_evenly_from_the_first_point_to_the_last(stack: Client) -> None:
    rid = _history(stack, [float(i) for i in range(1000)])
    sample = stack.sample_metric_history(rid, "m", 10)
    steps = [m.step for m in sample]
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) == 10
    assert all(b - a <= 250 for a, b in itertools.pairwise(steps)), steps
    assert [m.value for m in sample] == [float(s) for s in steps]
    assert [m.timestamp for m in sample] == [1000 + s for s in steps]
    assert 998 <= len(stack.sample_metric_history(rid, "m", 999)) <= 999
    assert [m.step for m in stack.sample_metric_history(rid, "m", 1000)] == list(range(1000))


def test_a_sample_keeps_a_single_spike_and_a_single_dip(stack: Client) -> None:
    values = [1.0 + (i % 7) / 100 for i in range(10_000)]
    values[4321], values[8765], values[2000] = 1e6, -1e6, math.nan
    rid = _history(stack, values)
    for points in (100, 11, 4):
        sample = stack.sample_metric_history(rid, "m", points)
        by_step = {m.step: m.value for m in sample}
        assert len(sample) <= points
        assert by_step[4321] == 1e6 and by_step[8765] == -1e6, (points, sorted(by_step))
        assert by_step[0] == 1.0 and 9999 in by_step
        assert not any(math.isnan(v) for v in by_step.values())
    assert [m.step for m in stack.sample_metric_history(rid, "m", 3)] == [0, 9999]


def test_short_histories_come_whole_and_nan_stays_nan(stack: Client) -> None:
    rid = _history(stack, [1.0, math.nan, 3.0])
    sample = stack.sample_metric_history(rid, "m", 2000)
    assert [m.step for m in sample] == [0, 1, 2] and math.isnan(sample[1].value)
    one = _history(stack, [7.0])
    assert [m.value for m in stack.sample_metric_history(one, "m", 2)] == [7.0]
    assert stack.sample_metric_history(one, "other", 2) == []


def test_bad_samples_are_refused_naming_the_field(stack: Client) -> None:
    rid = _history(stack, [1.0, 2.0])
    for points in (1, -5, 100_001):
        with pytest.raises(InvalidArgument) as err:
            stack.sample_metric_history(rid, "m", points)
        assert err.value.field == "max_points"
    with pytest.raises(NotFound):
        stack.sample_metric_history("f" * 32, "m", 10)


def test_a_sample_is_one_response_without_paging(stack: Client) -> None:
    from modelyard._gen.tracking.v1 import tracking_pb2 as pb

    rid = _history(stack, [1.0, 2.0])
    for extra in ({"max_results": 5}, {"page_token": "abc"}):
        request = pb.GetMetricHistoryRequest(run_id=rid, metric_key="m", max_points=10, **extra)
        with pytest.raises(InvalidArgument) as err:
            stack._t.call(stack._tracking.GetMetricHistory, request)
        assert err.value.field == next(iter(extra))
