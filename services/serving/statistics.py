"""Per-version inference counters, as Triton's ModelStatistics reports them.

One `InferenceStats` belongs to one loaded version behind one served model (it lives with that
version's batcher, so a reload starts it afresh as Triton does). Requests record their outcome and
the time each phase took; the batcher records each model call, by batch size.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields


@dataclass
class Timing:
    """One request on its way: the counters of the version that took it, its rows, and where
    its time went (ns); filled in by the served model and its batcher."""

    stats: InferenceStats | None = None
    version: int = 0  # of the model that took it, answered or not (0: none did)
    rows: int = 0
    input_ns: int = 0  # tensors -> model input (signature checks, feature joins)
    queue_ns: int = 0  # waiting for its batch to start
    infer_ns: int = 0  # the model call that answered it
    output_ns: int = 0  # taking its rows out of the batch's outputs


@dataclass(frozen=True)
class Duration:
    count: int = 0
    ns: int = 0

    def __add__(self, other: Duration) -> Duration:
        return Duration(self.count + other.count, self.ns + other.ns)


@dataclass(frozen=True)
class BatchStats:
    """Model calls of one batch size (rows)."""

    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()

    def __add__(self, other: BatchStats) -> BatchStats:
        return BatchStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters at one moment. inference_count counts rows of successful requests, as Triton
    counts each inference of a batched request; execution_count counts model calls."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    batches: dict[int, BatchStats] = field(default_factory=dict)

    def __add__(self, other: StatsSnapshot) -> StatsSnapshot:
        """Two served models serving one version report as that one version."""
        batches = dict(self.batches)
        for size, stats in other.batches.items():
            batches[size] = batches.get(size, BatchStats()) + stats
        return StatsSnapshot(
            last_inference_ms=max(self.last_inference_ms, other.last_inference_ms),
            inference_count=self.inference_count + other.inference_count,
            execution_count=self.execution_count + other.execution_count,
            success=self.success + other.success,
            fail=self.fail + other.fail,
            queue=self.queue + other.queue,
            compute_input=self.compute_input + other.compute_input,
            compute_infer=self.compute_infer + other.compute_infer,
            compute_output=self.compute_output + other.compute_output,
            batches=batches,
        )


class InferenceStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = StatsSnapshot()

    def request(self, ok: bool, rows: int, total_ns: int, timing: Timing) -> None:
        """One request ended; only a successful one's rows and phases are counted (Triton's
        rule: the phase durations add up to the successful requests' time)."""
        one = StatsSnapshot(last_inference_ms=int(time.time() * 1000))
        if ok:
            one = StatsSnapshot(
                last_inference_ms=one.last_inference_ms,
                inference_count=rows,
                success=Duration(1, total_ns),
                queue=Duration(1, timing.queue_ns),
                compute_input=Duration(1, timing.input_ns),
                compute_infer=Duration(1, timing.infer_ns),
                compute_output=Duration(1, timing.output_ns),
            )
        else:
            one = StatsSnapshot(last_inference_ms=one.last_inference_ms, fail=Duration(1, total_ns))
        with self._lock:
            self._now = self._now + one

    def executed(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """The model answered one batch of `rows` rows (merging took input_ns, splitting
        output_ns)."""
        batch = BatchStats(Duration(1, input_ns), Duration(1, infer_ns), Duration(1, output_ns))
        with self._lock:
            self._now = self._now + StatsSnapshot(execution_count=1, batches={rows: batch})

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return self._now
