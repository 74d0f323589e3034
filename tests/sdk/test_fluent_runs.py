"""Fluent run bookkeeping against a real server: whose failures a run's end reports, how runs
nest, which experiment they go to, and what threads they leave behind."""

from __future__ import annotations

import pytest

from modelyard.entities import RunStatus, ViewType
from modelyard.errors import FailedPrecondition, Internal, InvalidArgument, ModelyardError


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


def test_resuming_a_run_under_another_parent_is_refused(fluent) -> None:
    """As MLflow: resuming run_id with a parent_run_id that is not its parent is an error
    naming both, and the run is left as it was."""
    c = fluent.client()
    with fluent.start_run() as parent, fluent.start_run(nested=True) as child:
        pass
    with fluent.start_run() as other:
        pass
    with pytest.raises(InvalidArgument) as refused:
        fluent.start_run(run_id=child.info.run_id, parent_run_id=other.info.run_id)
    assert child.info.run_id in str(refused.value) and other.info.run_id in str(refused.value)
    assert refused.value.field == "parent_run_id"
    assert fluent.active_run() is None
    assert c.get_run(child.info.run_id).info.status == RunStatus.FINISHED
    # Its own parent is fine.
    with fluent.start_run(run_id=child.info.run_id, parent_run_id=parent.info.run_id) as resumed:
        assert resumed.info.parent_run_id == parent.info.run_id


def test_no_run_starts_under_a_deleted_parent(fluent) -> None:
    """A child of a deleted run would be an orphan no run tree shows: nested=True under a
    deleted active run, parent_run_id= a deleted run and CreateRun itself are refused, naming
    the parent; nothing is created and the stack is left as it was."""
    c = fluent.client()
    parent = fluent.start_run()
    pid = parent.info.run_id
    c.delete_run(pid)
    attempts = (
        lambda: fluent.start_run(nested=True),
        lambda: fluent.start_run(nested=True, experiment_id=parent.info.experiment_id),
        lambda: c.create_run(parent.info.experiment_id, parent_run_id=pid),
    )
    for attempt in attempts:
        with pytest.raises(FailedPrecondition, match=f"parent run '{pid}' is deleted") as refused:
            attempt()
        assert refused.value.resource_name == pid
        assert fluent.active_run().info.run_id == pid
    with pytest.raises(FailedPrecondition, match="is deleted"):
        fluent.end_run()  # a deleted run cannot end, but it leaves the stack
    with pytest.raises(FailedPrecondition, match="is deleted"):
        fluent.start_run(parent_run_id=pid)
    assert fluent.active_run() is None
    deleted = fluent.search_runs(output_format="list", run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in deleted] == [pid]
    c.restore_run(pid)
    with fluent.start_run(parent_run_id=pid) as child:
        assert child.info.parent_run_id == pid


def test_a_change_to_a_run_of_a_deleted_experiment_says_to_restore_the_experiment(
    fluent,
) -> None:
    """Such a run was told to restore itself with RestoreRun, which refuses a run of a deleted
    experiment; the refusal now names the experiment, whose restoring brings the run back."""
    c = fluent.client()
    eid = c.create_experiment("gone")
    rid = c.create_run(eid).info.run_id
    c.delete_experiment(eid)
    for change in (
        lambda: fluent.start_run(run_id=rid),
        lambda: c.log_param(rid, "a", 1),
        lambda: c.log_text(rid, "x", "x.txt"),
    ):
        with pytest.raises(FailedPrecondition, match=f"its experiment {eid} is deleted too"):
            change()
    assert fluent.active_run() is None
    c.restore_experiment(eid)  # the way the message gives
    with fluent.start_run(run_id=rid) as resumed:
        fluent.log_param("a", 1)
    assert resumed.info.status == RunStatus.RUNNING
    # A run deleted on its own is still sent to RestoreRun.
    c.delete_run(rid)
    with pytest.raises(FailedPrecondition, match="restore it with RestoreRun"):
        fluent.start_run(run_id=rid)
    with pytest.raises(FailedPrecondition, match="restore it with RestoreRun"):
        c.log_text(rid, "x", "x.txt")


def test_nested_under_a_parent_other_than_the_active_run_is_refused(fluent) -> None:
    with fluent.start_run() as elsewhere:
        pass
    with fluent.start_run() as active:
        with pytest.raises(InvalidArgument) as refused:
            fluent.start_run(nested=True, parent_run_id=elsewhere.info.run_id)
        message = str(refused.value)
        assert active.info.run_id in message and elsewhere.info.run_id in message
        assert fluent.active_run().info.run_id == active.info.run_id
        with fluent.start_run(nested=True, parent_run_id=active.info.run_id) as child:
            assert child.info.parent_run_id == active.info.run_id
    assert len(fluent.search_runs(output_format="list")) == 3


@pytest.mark.parametrize("case", ["missing", "malformed", "deleted"])
def test_a_bad_experiment_id_in_the_environment_names_the_variable(
    fluent, monkeypatch, case
) -> None:
    c = fluent.client()
    if case == "deleted":
        env_id = c.create_experiment("gone")
        c.delete_experiment(env_id)
    else:
        env_id = {"missing": "987654", "malformed": "not-an-id"}[case]
    monkeypatch.setenv("MODELYARD_EXPERIMENT_ID", env_id)
    with pytest.raises(ModelyardError) as refused:
        fluent.start_run()
    message = str(refused.value)
    assert "MODELYARD_EXPERIMENT_ID" in message and env_id in message
    assert "unset" in message
    assert fluent.active_run() is None
    assert not isinstance(refused.value, Internal)
