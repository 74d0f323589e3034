"""The tracking service end to end over real gRPC, through the SDK's Client.

Runs on the embedded stack (SQLite + local files) and the production stack (PostgreSQL + S3), see
conftest.py; artifacts have their own suite, test_artifacts.py.
"""

from __future__ import annotations

import getpass
import math
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import Connection, create_engine, text

from modelyard import Client
from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard._gen.tracking.v1.tracking_pb2_grpc import TrackingServiceStub
from modelyard.entities import DatasetInput, Metric, Param, RunStatus, RunTag, ViewType
from modelyard.entities.tracking import Dataset, InputTag
from modelyard.errors import AlreadyExists, InvalidArgument, NotFound, from_rpc_error
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


def test_experiments(stack: Client) -> None:
    eid = stack.create_experiment("churn", tags={"team": "growth"})
    assert stack.get_experiment(eid).tags == {"team": "growth"}
    found = stack.get_experiment_by_name("churn")
    assert found is not None and found.experiment_id == eid
    assert stack.get_experiment_by_name("missing") is None
    with pytest.raises(AlreadyExists) as err:
        stack.create_experiment("churn")
    assert err.value.resource_name == "churn"
    stack.rename_experiment(eid, "churn-v2")
    stack.delete_experiment(eid)
    assert [e.name for e in stack.search_experiments(view_type=ViewType.DELETED_ONLY)] == [
        "churn-v2"
    ]
    stack.restore_experiment(eid)
    names = {e.name for e in stack.search_experiments(filter_string="name LIKE 'churn%'")}
    assert names == {"churn-v2"}


def test_a_tag_key_sent_twice_is_refused(stack: Client) -> None:
    """A new experiment's and a new run's tags were last-wins, silently (the registry and the
    feature store refuse a key or column sent twice too)."""
    from modelyard._gen.common.v1.common_pb2 import Tag
    from modelyard._gen.tracking.v1 import tracking_pb2 as pb

    twice = [Tag(key="team", value="a"), Tag(key="team", value="b")]
    requests = [
        (stack._tracking.CreateExperiment, pb.CreateExperimentRequest(name="tw", tags=twice)),
        (stack._tracking.CreateRun, pb.CreateRunRequest(experiment_id="0", tags=twice)),
    ]
    for rpc, request in requests:
        with pytest.raises(InvalidArgument, match="'team' more than once") as err:
            stack._t.call(rpc, request)
        assert err.value.field == "tags.key"
    assert stack.get_experiment_by_name("tw") is None
    assert stack.search_runs(["0"]) == []


def test_a_key_that_is_not_its_own_path_is_refused_as_mlflow_does(client: Client) -> None:
    """'loss/' and 'loss' (or 'a//b' and 'a/b') name one file once a run's metrics or params
    are written out as files, and '.' names none; MLflow refuses them, Modelyard stored them.
    A key stored before the rule stays readable and deletable."""
    rid = client.create_run("0").info.run_id
    writes = [
        lambda k: client.log_metric(rid, k, 1.0),
        lambda k: client.log_param(rid, k, "v"),
        lambda k: client.set_tag(rid, k, "v"),
        lambda k: client.log_batch(rid, metrics=[Metric(k, 1.0, 0, 0)]),
        lambda k: client.set_experiment_tag("0", k, "v"),
    ]
    for bad in ("loss/", "a//b", "./a", ".", "a/./b", "..."):
        for write in writes:
            with pytest.raises(InvalidArgument, match="not one of its own") as err:
                write(bad)
            assert err.value.field is not None and err.value.field.endswith("key"), err.value
    client.log_metric(rid, "train/loss", 0.5)
    assert client.get_run(rid).data.metrics == {"train/loss": 0.5}
    assert client.get_metric_history(rid, "loss/") == []  # a read is not refused
    with pytest.raises(NotFound):  # nor a delete: it looks for the tag
        client.delete_tag(rid, "loss/")


def test_run_logging_round_trip(stack: Client) -> None:
    eid = stack.create_experiment("e")
    run = stack.create_run(eid, run_name="r1", tags={"k": "v"})
    rid = run.info.run_id
    stack.log_param(rid, "alpha", 0.5)
    stack.log_metric(rid, "loss", 1.0, step=0)
    stack.log_metric(rid, "loss", math.nan, step=1)
    stack.log_metric(rid, "inf", math.inf)
    stack.set_tag(rid, "stage", "dev")
    stack.log_batch(
        rid,
        metrics=[Metric("acc", 0.9, 1700000000000, 3)],
        params=[Param("depth", "4")],
        tags=[RunTag("owner", "me")],
    )
    stack.log_inputs(
        rid,
        [
            DatasetInput(
                Dataset("train", "d1", "local", "{}"),
                (InputTag("mlflow.data.context", "training"),),
            )
        ],
    )
    got = stack.get_run(rid)
    assert got.data.params == {"alpha": "0.5", "depth": "4"}
    assert math.isnan(got.data.metrics["loss"]) and got.data.metrics["inf"] == math.inf
    assert got.data.metrics["acc"] == 0.9
    user = getpass.getuser()
    system = {"mlflow.runName": "r1", "mlflow.user": user}  # MLflow's, kept by the server
    assert got.data.tags == {"k": "v", "stage": "dev", "owner": "me", **system}
    assert got.inputs.dataset_inputs[0].dataset.name == "train"
    history = stack.get_metric_history(rid, "loss")
    assert [m.step for m in history] == [0, 1] and math.isnan(history[1].value)
    finished = stack.set_terminated(rid)
    assert finished.status == RunStatus.FINISHED and finished.end_time is not None
    child = stack.create_run(eid, parent_run_id=rid)
    parent = stack.get_parent_run(child.info.run_id)
    assert parent is not None and parent.info.run_id == rid


def test_search_runs_pages_through_everything(stack: Client) -> None:
    eid = stack.create_experiment("many")
    for i in range(23):
        rid = stack.create_run(eid, start_time=1000 + i).info.run_id
        stack.log_metric(rid, "score", i)
    seen: list[float] = []
    token: str | None = None
    while True:
        page = stack.search_runs(
            [eid],
            "metrics.score >= 3",
            max_results=5,
            order_by=["metrics.score DESC"],
            page_token=token,
        )
        seen.extend(r.data.metrics["score"] for r in page)
        token = page.token
        if not token:
            break
    assert seen == [float(i) for i in range(22, 2, -1)]
    # No experiments: no runs, as in MLflow; the filter and order are still checked.
    assert list(stack.search_runs([], "metrics.score >= 3")) == []
    with pytest.raises(InvalidArgument, match="filter"):
        stack.search_runs([], "metrics.score >=")
    with pytest.raises(InvalidArgument, match="order_by"):
        stack.search_runs([], order_by=["metrics.score SIDEWAYS"])


def test_metric_history_pages(stack: Client) -> None:
    rid = stack.create_run("0").info.run_id
    for start in range(0, 2500, 1000):
        stack.log_batch(
            rid,
            metrics=[Metric("m", float(s), 1, s) for s in range(start, min(start + 1000, 2500))],
        )
    values = [m.value for m in stack.iter_metric_history(rid, "m", page_size=700)]
    assert values == [float(s) for s in range(2500)]


def test_health_and_reflection(stack: Client) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = stack._transport.channel
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "modelyard.tracking.v1.TrackingService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {s.name for s in reply.list_services_response.service}
    assert "modelyard.tracking.v1.TrackingService" in names


def test_filters_of_the_most_conditions_allowed_are_answered(stack_settings: Settings) -> None:
    """PostgreSQL planned every tag, param and metric lookup of a filter as one more join: 100
    conditions (the most a filter may hold) took 35-60 s and gigabytes of its memory, and 40 tag
    conditions on registered models 2 s. Thirty seconds is a bound here, not a timing."""
    tags = {f"t{i}": "v" for i in range(100)}
    with (
        running_server(stack_settings) as server,
        Client(server.address, timeout=30) as client,
    ):
        eid = client.create_experiment("many", tags=tags)
        good, other = (client.create_run(eid).info.run_id for _ in range(2))
        for rid, last in ((good, 1.0), (other, 0.0)):
            client.log_batch(
                rid,
                metrics=[Metric(f"m{i}", 1.0 if i < 33 else last, 0, 0) for i in range(34)],
                params=[Param(f"p{i}", "v") for i in range(33)],
                tags=[RunTag(f"t{i}", "v") for i in range(33)],
            )
        metrics = [f"metrics.m{i} >= 1" for i in range(34)]
        params_and_tags = [f"params.p{i} = 'v'" for i in range(33)] + [
            f"tags.t{i} = 'v'" for i in range(33)
        ]
        found = client.search_runs([eid], " AND ".join(metrics + params_and_tags))
        assert [r.info.run_id for r in found] == [good]

        every_tag = " AND ".join(f"tags.t{i} = 'v'" for i in range(100))
        assert [e.experiment_id for e in client.search_experiments(filter_string=every_tag)] == [
            eid
        ]
        client.log_text(good, "weights", "model/weights.txt")
        client.create_registered_model("many", tags=tags)
        client.create_model_version("many", f"runs:/{good}/model", good, tags=tags)
        models = client.search_registered_models(filter_string=every_tag)
        assert [m.name for m in models] == ["many"]
        versions = client.search_model_versions(filter_string=every_tag)
        assert [(v.name, v.version) for v in versions] == [("many", 1)]


def test_a_search_the_client_gives_up_stops_on_the_database(
    postgres_url: str, tmp_path: Path
) -> None:
    """A search waiting on PostgreSQL is cancelled there when its client cancels: it held a
    backend (and an RPC thread) until it finished, for an answer no one would read. The search
    here waits for a lock the test holds; the pooled connection it ran on serves the next one."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=postgres_url)
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'runs'::regclass AND NOT granted"
    )

    def searches_waiting(conn: Connection, expected: int) -> None:
        deadline = time.monotonic() + 30
        while conn.execute(waiting).scalar() != expected:
            assert time.monotonic() < deadline, f"not {expected} searches waiting after 30 s"
            time.sleep(0.05)  # polling PostgreSQL's own view of its locks

    with running_server(settings) as server, Client(server.address) as client:
        eid = client.create_experiment("locked")
        rid = client.create_run(eid).info.run_id
        with engine.connect() as holder, engine.connect() as observer:
            holder.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))  # until rollback
            with grpc.insecure_channel(server.address) as channel:
                search = TrackingServiceStub(channel).SearchRuns
                future = search.future(pb.SearchRunsRequest(experiment_ids=[eid]), timeout=60)
                searches_waiting(observer, 1)
                future.cancel()
                searches_waiting(observer, 0)  # while the lock is still held
            holder.rollback()
        assert [r.info.run_id for r in client.search_runs([eid])] == [rid]
    engine.dispose()


def test_the_default_experiment_cannot_be_deleted(stack: Client) -> None:
    """Deleting experiment 0 left runs created without an experiment nowhere to go."""
    from modelyard.errors import FailedPrecondition

    for eid in ("0", "00"):
        with pytest.raises(FailedPrecondition, match="default experiment") as err:
            stack.delete_experiment(eid)
        assert err.value.resource_name == "0"
        assert "delete its runs" in err.value.message
    assert stack.get_experiment("0").lifecycle_stage.value == "active"
    assert stack.create_run("0").info.experiment_id == "0"


def test_a_value_over_the_limit_says_what_to_do_instead(client: Client) -> None:
    """A param or tag value past MLflow's limit was refused with only its length and the limit;
    the refusal now says where such text goes (an artifact) and nothing is stored."""
    eid = client.create_experiment("long values")
    rid = client.create_run(eid).info.run_id
    refusals = {
        "value": [
            lambda: client.log_param(rid, "p", "x" * 6001),
            lambda: client.set_tag(rid, "t", "x" * 8001),
            lambda: client.set_experiment_tag(eid, "t", "x" * 8001),
        ],
        "params[q].value": [lambda: client.log_batch(rid, params=[Param("q", "x" * 6001)])],
        "tags[u].value": [
            lambda: client.log_batch(rid, tags=[RunTag("u", "x" * 8001)]),
            lambda: client.create_run(eid, tags={"u": "x" * 8001}),
        ],
    }
    for field, attempts in refusals.items():
        for attempt in attempts:
            with pytest.raises(InvalidArgument, match=r"the limit is \d+; .*artifact") as err:
                attempt()
            assert err.value.field == field
    assert "log_text" in str(err.value)
    client.log_param(rid, "p", "x" * 6000)
    data = client.get_run(rid).data
    assert data.params == {"p": "x" * 6000} and "t" not in data.tags


def test_a_metric_time_before_the_epoch_is_refused_as_mlflow_does(
    server: ModelyardServer, client: Client
) -> None:
    """MLflow refuses a negative metric timestamp; it was stored, and sorted first in the
    history. Each RPC that logs metrics refuses it by field, and writes nothing. (Sent raw:
    the SDK refuses it before sending.)"""
    rid = client.create_run(client.create_experiment("times")).info.run_id
    before = Timestamp(seconds=-1, nanos=995_000_000)  # -5 ms
    good = pb.Metric(key="m", value=1.0, timestamp=Timestamp(seconds=1), step=0)
    bad = pb.Metric(key="m", value=2.0, timestamp=before, step=1)
    with grpc.insecure_channel(server.address) as channel:
        stub = TrackingServiceStub(channel)
        calls = [
            (
                "timestamp",
                stub.LogMetric,
                pb.LogMetricRequest(run_id=rid, key="m", timestamp=before),
            ),
            (
                "metrics.timestamp",
                stub.LogBatch,
                pb.LogBatchRequest(run_id=rid, metrics=[good, bad]),
            ),
            (  # with params: not the metrics-only hot path
                "metrics.timestamp",
                stub.LogBatch,
                pb.LogBatchRequest(
                    run_id=rid, metrics=[bad], params=[pb.Param(key="p", value="v")]
                ),
            ),
        ]
        for field, rpc, request in calls:
            with pytest.raises(grpc.RpcError) as err:
                rpc(request, timeout=20)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "before 1970-01-01" in err.value.details()
            assert from_rpc_error(err.value).field == field
    assert client.get_metric_history(rid, "m") == [] and client.get_run(rid).data.params == {}
    client.log_batch(rid, metrics=[Metric("m", 2.0, 0, 0)])  # the epoch itself is a time
    assert [m.timestamp for m in client.get_metric_history(rid, "m")] == [0]
