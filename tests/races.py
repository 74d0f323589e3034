"""Concurrent calls for race tests: released together by a barrier, so they overlap on every
backend."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from modelyard.errors import ModelyardError


def race(calls: list[Callable[[], object]]) -> Counter[str]:
    """Run `calls` at once; the outcome of each: "OK", or "<CODE>: <message>"."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> str:
        barrier.wait()
        try:
            call()
        except ModelyardError as err:
            return f"{err.code.name}: {err.message}"
        return "OK"

    with ThreadPoolExecutor(len(calls)) as pool:
        return Counter(pool.map(run, calls))


def codes(outcomes: Counter[str]) -> Counter[str]:
    """The outcomes by status code alone."""
    found: Counter[str] = Counter()
    for outcome, n in outcomes.items():
        found[outcome.split(":", 1)[0]] += n
    return found
