"""Fluent run bookkeeping against a real server: whose failures a run's end reports, how runs
nest, which experiment they go to, and what threads they leave behind."""

from __future__ import annotations

import pytest

from modelyard.entities import RunStatus
from modelyard.errors import FailedPrecondition


def test_end_run_reports_only_its_own_runs_queued_failures(fluent) -> None:
    """A value queued for a deleted run fails in the background; ending another run must not
    raise it, and the deleted run's failure is still reported by a flush of its own."""
    c = fluent.client()
    with fluent.start_run() as gone:
        pass
    c.delete_run(gone.info.run_id)
    fluent.log_metric("late", 1.0, run_id=gone.info.run_id, synchronous=False)
    run = fluent.start_run()
    fluent.log_metric("ok", 2.0, synchronous=False)
    fluent.end_run()  # its own value was stored: nothing to raise
    assert c.get_run(run.info.run_id).data.metrics == {"ok": 2.0}
    assert c.get_run(run.info.run_id).info.status == RunStatus.FINISHED
    with pytest.raises(FailedPrecondition, match="deleted"):
        fluent.flush_async_logging()


def test_end_run_still_reports_its_own_runs_queued_failures(fluent) -> None:
    run = fluent.start_run()
    fluent.client().delete_run(run.info.run_id)
    fluent.log_metric("late", 1.0, synchronous=False)
    with pytest.raises(FailedPrecondition, match="deleted"):
        fluent.end_run()
