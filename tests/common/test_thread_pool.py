"""The RPC thread pool: core threads take the calls, more join only when calls are stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from modelyard.services.common.thread_pool import ElasticThreadPool

WAIT = 10  # seconds: a bound on waits that succeed at once unless the pool is broken


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Calls that block until the test opens the gate (always opened at the end)."""
    event = threading.Event()
    yield event
    event.set()


def _pool_threads(name: str) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith(f"{name}-") and "watch" not in t.name
    ]


def test_calls_return_their_results_and_raise_their_errors() -> None:
    pool = ElasticThreadPool(2, 4, name="tp-results")
    try:
        assert pool.submit(pow, 2, 10).result(WAIT) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(WAIT)
        assert [f.result(WAIT) for f in [pool.submit(str, i) for i in range(50)]] == [
            str(i) for i in range(50)
        ]
    finally:
        pool.shutdown()


def test_calls_queue_for_busy_core_threads_rather_than_add_threads(gate) -> None:
    # The calls are busy, not stuck, for as long as the test looks: grow_after is out of reach.
    pool = ElasticThreadPool(2, 8, grow_after=3600, name="tp-queue")
    try:
        blocked = [pool.submit(gate.wait, WAIT) for _ in range(2)]
        queued = pool.submit(str, "queued")
        assert not queued.running() and not queued.done()  # both threads are taken
        assert pool.threads == 2
        gate.set()
        assert queued.result(WAIT) == "queued"
        assert all(f.result(WAIT) for f in blocked)
        assert pool.threads == 2
    finally:
        pool.shutdown()


def test_a_thread_is_added_when_every_thread_is_stuck(gate) -> None:
    pool = ElasticThreadPool(1, 4, grow_after=0.01, name="tp-grow")
    try:
        stuck = pool.submit(gate.wait, WAIT)
        answered = threading.Event()
        pool.submit(answered.set)
        assert answered.wait(WAIT), "a call starved behind a stuck thread"
        assert not stuck.done()
        assert pool.threads == 2
    finally:
        gate.set()
        pool.shutdown()


def test_threads_added_leave_after_idling_and_the_core_stays(gate) -> None:
    pool = ElasticThreadPool(1, 4, grow_after=0.01, idle_timeout=0.05, name="tp-idle")
    try:
        stuck = pool.submit(gate.wait, WAIT)
        pool.submit(int).result(WAIT)
        threads = _pool_threads("tp-idle")
        assert len(threads) == 2
        gate.set()
        stuck.result(WAIT)
        deadline = time.monotonic() + WAIT
        while all(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for t in threads:
                t.join(0.01)
        assert sum(t.is_alive() for t in threads) == 1  # one left, the core one stays
        assert pool.threads == 1
        assert pool.submit(str, "still served").result(WAIT) == "still served"
    finally:
        pool.shutdown()


def test_shutdown_runs_queued_calls_then_refuses_new_ones(gate) -> None:
    pool = ElasticThreadPool(1, 1, name="tp-shutdown")
    running = pool.submit(gate.wait, WAIT)
    queued = pool.submit(str, "ran")
    pool.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(int)
    gate.set()
    assert running.result(WAIT) and queued.result(WAIT) == "ran"
    pool.shutdown(wait=True)
    assert not _pool_threads("tp-shutdown")


def test_shutdown_can_cancel_queued_calls(gate) -> None:
    pool = ElasticThreadPool(1, 1, name="tp-cancel")
    running = pool.submit(gate.wait, WAIT)
    queued = pool.submit(str, "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.set()
    assert running.result(WAIT)
    pool.shutdown(wait=True)


def test_core_must_fit_under_the_maximum() -> None:
    with pytest.raises(ValueError, match="core"):
        ElasticThreadPool(5, 4)


def test_a_call_waiting_on_a_call_to_its_own_pool_lends_its_thread() -> None:
    """A server calling itself (under `modelyard up`, the registry calling tracking): with every
    thread of the pool waiting on a call queued behind them, that call ran only once some
    other call ended. Waiting inside `lending` lets the pool run one thread past its maximum."""
    pool = ElasticThreadPool(1, 1, grow_after=0.01, name="tp-lend")
    try:

        def outer() -> str:
            inner = pool.submit(str, "inner")
            with pool.lending():
                return inner.result(WAIT)

        assert pool.submit(outer).result(WAIT) == "inner"
    finally:
        pool.shutdown()
