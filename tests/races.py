"""Concurrent calls for race tests: released together by a barrier, so they overlap on every
backend."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


def wait_until_blocking(holder: Any, what: str) -> None:
    """Wait until another PostgreSQL session waits on a lock that `holder` (a psycopg
    connection) holds: how a test pauses a write at a chosen point without sleeping."""
    deadline = time.monotonic() + 30
    while True:
        with holder.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            row = cur.fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, f"no {what} after 30 s"
        time.sleep(0.05)  # polling the database's own view of its backends
