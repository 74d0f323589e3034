"""MLflow's system tags (mlflow.runName, mlflow.parentRunId, ...) on both stacks: code written
for MLflow names, nests and finds runs through them, so they stay in step with the run's fields."""

from __future__ import annotations

import pytest

from modelyard import Client
from modelyard.entities import Metric, Param, RunStatus, RunTag, ViewType
from modelyard.errors import FailedPrecondition, InvalidArgument


def children(client: Client, eid: str, parent: str) -> list[str]:
    found = client.search_runs([eid], f"tags.mlflow.parentRunId = '{parent}'")
    return sorted(r.info.run_id for r in found)


def test_new_runs_carry_name_parent_and_user_tags(stack: Client) -> None:
    eid = stack.create_experiment("e")
    parent = stack.create_run(eid, run_name="parent")
    child = stack.create_run(eid, run_name="child", parent_run_id=parent.info.run_id)
    assert child.data.tags["mlflow.runName"] == "child"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["mlflow.user"] == child.info.user_id
    assert "mlflow.parentRunId" not in parent.data.tags
    assert children(stack, eid, parent.info.run_id) == [child.info.run_id]
    unnamed = stack.create_run(eid)
    assert stack.get_run(unnamed.info.run_id).data.tags["mlflow.runName"] == unnamed.info.run_name
    found = stack.search_runs([eid], "tags.mlflow.runName = 'parent'")
    assert [r.info.run_id for r in found] == [parent.info.run_id]


def test_runs_named_and_nested_through_tags_the_mlflow_client_way(stack: Client) -> None:
    eid = stack.create_experiment("e")
    parent = stack.create_run(eid).info.run_id
    child = stack.create_run(eid, tags={"mlflow.parentRunId": parent, "mlflow.runName": "kid"})
    assert child.info.parent_run_id == parent
    assert child.info.run_name == "kid"
    assert stack.get_run(child.info.run_id).info.parent_run_id == parent
    with pytest.raises(InvalidArgument, match="run_name"):
        stack.create_run(eid, run_name="a", tags={"mlflow.runName": "b"})
    with pytest.raises(InvalidArgument, match="parent_run_id"):
        stack.create_run(eid, tags={"mlflow.parentRunId": "not-a-run-id"})


def test_renaming_keeps_field_and_tag_together(stack: Client) -> None:
    rid = stack.create_run("0", run_name="first").info.run_id
    stack.update_run(rid, name="second")
    run = stack.get_run(rid)
    assert (run.info.run_name, run.data.tags["mlflow.runName"]) == ("second", "second")
    stack.set_tag(rid, "mlflow.runName", "third")
    run = stack.get_run(rid)
    assert (run.info.run_name, run.data.tags["mlflow.runName"]) == ("third", "third")
    stack.log_batch(rid, tags=[RunTag("mlflow.runName", "fourth")])
    assert stack.get_run(rid).info.run_name == "fourth"
    with pytest.raises(InvalidArgument, match="name"):
        stack.delete_tag(rid, "mlflow.runName")
    with pytest.raises(InvalidArgument, match="empty"):
        stack.set_tag(rid, "mlflow.runName", "")
    assert stack.get_run(rid).info.run_name == "fourth"


def test_nesting_changes_with_the_parent_tag(stack: Client) -> None:
    eid = stack.create_experiment("e")
    a, b, c = (stack.create_run(eid, run_name=n).info.run_id for n in "abc")
    stack.set_tag(b, "mlflow.parentRunId", a)
    stack.set_tag(c, "mlflow.parentRunId", b)
    assert stack.get_run(b).info.parent_run_id == a
    assert children(stack, eid, a) == [b]
    with pytest.raises(InvalidArgument, match="nested inside"):
        stack.set_tag(a, "mlflow.parentRunId", c)  # a cycle a -> c -> b -> a
    with pytest.raises(InvalidArgument, match="itself"):
        stack.set_tag(a, "mlflow.parentRunId", a)
    other = stack.create_run(stack.create_experiment("other")).info.run_id
    with pytest.raises(InvalidArgument, match="experiment"):
        stack.set_tag(a, "mlflow.parentRunId", other)
    assert stack.get_run(a).info.parent_run_id is None
    stack.delete_tag(c, "mlflow.parentRunId")
    assert stack.get_run(c).info.parent_run_id is None
    assert children(stack, eid, b) == []


def test_resumed_run_has_no_end_time(stack: Client) -> None:
    rid = stack.create_run("0").info.run_id
    stack.set_terminated(rid)
    assert stack.get_run(rid).info.end_time is not None
    stack.update_run(rid, status=RunStatus.RUNNING)
    info = stack.get_run(rid).info
    assert (info.status, info.end_time) == (RunStatus.RUNNING, None)


def test_deleted_experiment_refuses_tags(stack: Client) -> None:
    eid = stack.create_experiment("gone")
    stack.delete_experiment(eid)
    with pytest.raises(FailedPrecondition, match="restore"):
        stack.set_experiment_tag(eid, "k", "v")
    stack.restore_experiment(eid)
    stack.set_experiment_tag(eid, "k", "v")
    assert stack.get_experiment(eid).tags == {"k": "v"}


def test_log_batch_beyond_the_limits_is_split(stack: Client) -> None:
    """MlflowClient splits an oversized batch into calls the server takes; so do we."""
    rid = stack.create_run("0").info.run_id
    metrics = [Metric("m", float(i), 1000 + i, i) for i in range(2500)]
    params = [Param(f"p{i}", str(i)) for i in range(250)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(150)]
    stack.log_batch(rid, metrics, params, tags)
    run = stack.get_run(rid)
    assert [m.value for m in stack.get_metric_history(rid, "m")] == [float(i) for i in range(2500)]
    assert run.data.params == {f"p{i}": str(i) for i in range(250)}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == {
        f"t{i}": str(i) for i in range(150)
    }
    assert len(stack.search_runs(["0"], "params.p249 = '249'", ViewType.ALL)) == 1
    # A generator: log_batch reads any iterable.
    generated = (Metric("g", float(i), 1, i) for i in range(3))
    stack.log_batch(rid, metrics=generated)
    assert [m.value for m in stack.get_metric_history(rid, "g")] == [0.0, 1.0, 2.0]
