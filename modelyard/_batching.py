"""Background batching of metric logging for the fluent API (opt-in, as in MLflow).

Metrics queue up and a daemon thread sends them with LogBatch (at most 1000 per call) every
`interval` seconds or as soon as a batch is full. A batch is all-or-nothing on the server, so when
it is refused as invalid the thread splits it in halves until the refused values are isolated:
one bad key never costs the good values queued with it. `add()` never raises (raising there would
lose the value, or stop the caller's loop at a point that depends on timing); `flush()` blocks
until everything queued so far is sent and raises what went wrong meanwhile, naming each refused
key (`flush(run_id)` raises only that run's failures and keeps the others for theirs), so
`end_run()` and interpreter exit lose nothing silently. `add()` returns a ticket, and
`wait(ticket)` blocks until that value is sent and raises only what went wrong with it (MLflow's
RunOperations.wait); an error raised there is not raised again by `flush()`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelyard.entities import Metric
from modelyard.errors import InvalidArgument

MAX_BATCH = 1000
_SHOWN_REFUSALS = 5  # keys an error message lists before summing up the rest

Sender = Callable[[str, Sequence[Metric]], object]


@dataclass(frozen=True)
class Refusal:
    run_id: str
    metric: Metric
    error: InvalidArgument


_FAILED_KEPT = 100_000  # per-value failures kept for wait(); past this many, the oldest go


class MetricBatcher:
    def __init__(self, send: Sender, interval: float = 0.5) -> None:
        self._send = send
        self._interval = interval
        self._pending: dict[str, list[Metric]] = defaultdict(list)
        self._tickets: dict[str, list[int]] = defaultdict(list)  # beside _pending, in order
        self._count = 0
        self._next_ticket = 0
        self._sent_below = 0  # every value with a lower ticket has been sent (or failed)
        self._failed: dict[int, BaseException] = {}  # ticket -> what went wrong with it
        # Errors wait() has raised, by id (held, so no id is reused): flush() skips them.
        self._waited: dict[int, BaseException] = {}
        self._cond = threading.Condition()
        self._in_flight = 0
        self._errors: list[tuple[str, BaseException]] = []  # (run id, what went wrong)
        self._refused: list[Refusal] = []
        self._closed = False
        self._flush_requested = False
        self._thread = threading.Thread(target=self._loop, name="modelyard-metrics", daemon=True)
        self._thread.start()

    def add(self, run_id: str, metric: Metric) -> int:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._pending[run_id].append(metric)
            self._tickets[run_id].append(ticket)
            self._count += 1
            if self._count >= MAX_BATCH:
                self._cond.notify_all()
            return ticket

    def wait(self, ticket: int) -> None:
        """Wait until the value `add` gave `ticket` is sent; raise what went wrong with it."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._sent_below > ticket or self._closed)
            error = self._failed.get(ticket)
            if error is not None:
                self._waited[id(error)] = error
                raise error

    def flush(self, run_id: str | None = None) -> None:
        """Wait until every metric added before this call is sent; raise what went wrong (with
        `run_id`, only for that run: ending one run must not raise another run's failures)."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: (not self._count and not self._in_flight) or self._closed)
            self._raise_pending_errors(run_id)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_pending_errors(self, run_id: str | None) -> None:
        """Raise the first failure of `run_id` (None: of any run) since the last flush (each is
        reported once, other runs' kept for theirs); refusals come as one InvalidArgument
        naming every refused key."""

        def ours(rid: str) -> bool:
            return run_id is None or rid == run_id

        errors = [e for rid, e in self._errors if ours(rid) and id(e) not in self._waited]
        refused = [r for r in self._refused if ours(r.run_id) and id(r.error) not in self._waited]
        self._errors = [(rid, e) for rid, e in self._errors if not ours(rid)]
        self._refused = [r for r in self._refused if not ours(r.run_id)]
        kept = {id(e) for _, e in self._errors} | {id(r.error) for r in self._refused}
        self._waited = {i: e for i, e in self._waited.items() if i in kept}
        if refused:
            errors.append(_refusals_error(refused))
        if not errors:
            return
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"also: {type(other).__name__}: {other}")
        raise first

    def _take(self) -> list[tuple[str, list[Metric], list[int]]]:
        batches = []
        for run_id, items in self._pending.items():
            tickets = self._tickets[run_id]
            for start in range(0, len(items), MAX_BATCH):
                end = start + MAX_BATCH
                batches.append((run_id, items[start:end], tickets[start:end]))
        self._pending.clear()
        self._tickets.clear()
        self._in_flight = self._count
        self._count = 0
        return batches

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._count >= MAX_BATCH or self._closed or self._flush_requested,
                    self._interval,
                )
                self._flush_requested = False
                if self._closed and not self._count:
                    return
                batches = self._take()
                taken_below = self._next_ticket
            try:
                for run_id, items, tickets in batches:
                    # One batch failing (a deleted run, say) does not stop the others.
                    try:
                        refused = self._send_isolating(run_id, items)
                    except BaseException as exc:  # surfaced to the caller by the next flush()
                        with self._cond:
                            self._errors.append((run_id, exc))
                            self._record(dict.fromkeys(tickets, exc))
                    else:
                        if refused:
                            by_value = {id(r.metric): r.error for r in refused}
                            with self._cond:
                                self._refused.extend(refused)
                                self._record(
                                    {
                                        t: by_value[id(m)]
                                        for t, m in zip(tickets, items, strict=True)
                                        if id(m) in by_value
                                    }
                                )
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._sent_below = taken_below
                    self._cond.notify_all()

    def _record(self, failed: dict[int, BaseException]) -> None:
        """Keep what went wrong with each value for wait(); called holding the lock."""
        self._failed.update(failed)
        while len(self._failed) > _FAILED_KEPT:
            del self._failed[next(iter(self._failed))]

    def _send_isolating(self, run_id: str, items: list[Metric]) -> list[Refusal]:
        """Send `items`; if the server refuses them as invalid, send each half apart, down to
        the single values it refuses, which are returned (everything else is logged)."""
        try:
            self._send(run_id, items)
        except InvalidArgument as exc:
            if len(items) == 1:
                return [Refusal(run_id, items[0], exc)]
            if not _about_the_values(exc):  # the run id, say: no split would get it through
                raise
            mid = len(items) // 2
            return self._send_isolating(run_id, items[:mid]) + self._send_isolating(
                run_id, items[mid:]
            )
        return []


def _about_the_values(error: InvalidArgument) -> bool:
    """Whether the refusal may concern some values only (so splitting the batch can help)."""
    return error.field is None or error.field.startswith("metrics")


def _refusals_error(refused: list[Refusal]) -> InvalidArgument:
    shown = "; ".join(
        f"{r.metric.key!r} (run {r.run_id}): {r.error.message}" for r in refused[:_SHOWN_REFUSALS]
    )
    more = f"; and {len(refused) - _SHOWN_REFUSALS} more" if len(refused) > _SHOWN_REFUSALS else ""
    return InvalidArgument(
        f"{len(refused)} metric value(s) logged in the background were refused and not stored "
        f"(every other value was): {shown}{more}",
        field=refused[0].error.field,
    )
