"""The tracking service end to end over real gRPC, through the SDK's Client.

Runs on the embedded stack (SQLite + local files) and the production stack (PostgreSQL + S3).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelyard import Client
from modelyard.entities import DatasetInput, Metric, Param, RunStatus, RunTag, ViewType
from modelyard.entities.tracking import Dataset, InputTag
from modelyard.errors import AlreadyExists, DataLoss, InvalidArgument, NotFound
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


@pytest.fixture(
    params=[
        "sqlite+file",
        pytest.param("postgres+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ]
)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if request.param == "sqlite+file":
        settings = Settings(home=tmp_path, port=0, grace_period=0)
    else:
        s3 = request.getfixturevalue("s3_server")
        settings = Settings(
            home=tmp_path,
            port=0,
            grace_period=0,
            backend_store_uri=request.getfixturevalue("postgres_url"),
            artifact_uri=f"s3://modelyard-test/{tmp_path.name}",
            s3=s3,
        )
    with running_server(settings) as server, Client(server.address) as client:
        yield client


def test_experiments(stack: Client) -> None:
    eid = stack.create_experiment("churn", tags={"team": "growth"})
    assert stack.get_experiment(eid).tags == {"team": "growth"}
    assert stack.get_experiment_by_name("churn").experiment_id == eid
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
        [DatasetInput(Dataset("train", "d1", "local", "{}"), (InputTag("context", "training"),))],
    )
    got = stack.get_run(rid)
    assert got.data.params == {"alpha": "0.5", "depth": "4"}
    assert math.isnan(got.data.metrics["loss"]) and got.data.metrics["inf"] == math.inf
    assert got.data.metrics["acc"] == 0.9
    assert got.data.tags == {"k": "v", "stage": "dev", "owner": "me"}
    assert got.inputs.dataset_inputs[0].dataset.name == "train"
    history = stack.get_metric_history(rid, "loss")
    assert [m.step for m in history] == [0, 1] and math.isnan(history[1].value)
    finished = stack.set_terminated(rid)
    assert finished.status == RunStatus.FINISHED and finished.end_time is not None
    child = stack.create_run(eid, parent_run_id=rid)
    assert stack.get_parent_run(child.info.run_id).info.run_id == rid


def test_search_runs_pages_through_everything(stack: Client) -> None:
    eid = stack.create_experiment("many")
    for i in range(23):
        rid = stack.create_run(eid, start_time=1000 + i).info.run_id
        stack.log_metric(rid, "score", i)
    seen, token = [], None
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


def test_metric_history_pages(stack: Client) -> None:
    rid = stack.create_run("0").info.run_id
    for start in range(0, 2500, 1000):
        stack.log_batch(
            rid,
            metrics=[Metric("m", float(s), 1, s) for s in range(start, min(start + 1000, 2500))],
        )
    values = [m.value for m in stack.iter_metric_history(rid, "m", page_size=700)]
    assert values == [float(s) for s in range(2500)]


def test_artifacts_round_trip(stack: Client, tmp_path: Path) -> None:
    rid = stack.create_run("0").info.run_id
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    stack.log_artifacts(rid, src, "outputs")
    stack.log_text(rid, "hello", "notes/readme.md")
    stack.log_dict(rid, {"a": 1}, "config.json")
    top = stack.list_artifacts(rid)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config.json", False),
        ("notes", True),
        ("outputs", True),
    ]
    listed = {f.path: f for f in stack.list_artifacts(rid, "outputs/sub")}
    digest = hashlib.sha256((src / "sub" / "b.bin").read_bytes()).hexdigest()
    assert listed["outputs/sub/b.bin"].sha256 == digest
    out = Path(stack.download_artifacts(rid, "outputs", tmp_path / "dst"))
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    single = Path(stack.download_artifacts(rid, "notes/readme.md", tmp_path / "one"))
    assert single.read_text() == "hello"
    stack.delete_artifact(rid, "outputs")
    assert [f.path for f in stack.list_artifacts(rid)] == ["config.json", "notes"]
    with pytest.raises(NotFound):
        stack.download_artifacts(rid, "outputs/a.txt", tmp_path / "gone")


def test_artifact_paths_cannot_escape(stack: Client, tmp_path: Path) -> None:
    from modelyard.client import _artifacts

    rid = stack.create_run("0").info.run_id
    for bad in ("../../etc/passwd", "/abs/x", "a/../../b"):
        with pytest.raises(InvalidArgument) as err:
            _artifacts.upload_bytes(stack._transport, stack._tracking, rid, b"x", bad)
        assert err.value.field == "path"
    assert stack.list_artifacts(rid) == []


def test_download_detects_corruption(
    stack: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.client import _artifacts

    rid = stack.create_run("0").info.run_id
    stack.log_text(rid, "original", "f.txt")
    real = _artifacts.Transport.stream

    def tampering(self, method, request, timeout=None):
        for msg in real(self, method, request, timeout):
            if msg.WhichOneof("part") == "chunk":
                msg.chunk = b"tampered"
            yield msg

    monkeypatch.setattr(_artifacts.Transport, "stream", tampering)
    with pytest.raises(DataLoss, match="sha256"):
        stack.download_artifacts(rid, "f.txt", tmp_path / "dst")
    assert not (tmp_path / "dst" / "f.txt").exists()


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


@pytest.mark.s3
def test_presigned_upload_and_download(
    s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big files skip the service: PUT to a presigned URL, then the server verifies the digest."""
    from modelyard.client import _artifacts

    monkeypatch.setattr(_artifacts, "PRESIGN_THRESHOLD", 1024)
    settings = Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        artifact_uri="s3://modelyard-test/presign",
        s3=s3_server,
    )
    with running_server(settings) as server, Client(server.address) as client:
        rid = client.create_run("0").info.run_id
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(200_000))
        calls = []
        real_call = _artifacts.Transport.call

        def spy(self, method, request, timeout=None):
            calls.append(type(request).__name__)
            return real_call(self, method, request, timeout)

        monkeypatch.setattr(_artifacts.Transport, "call", spy)
        info = client.log_artifact(rid, big)
        assert (
            "CreateArtifactUploadUrlRequest" in calls and "CompleteArtifactUploadRequest" in calls
        )
        assert info.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
        url = client._tracking.CreateArtifactDownloadUrl  # the RPC, through the raw stub
        from modelyard._gen.tracking.v1 import tracking_pb2 as pb

        reply = url(pb.CreateArtifactDownloadUrlRequest(run_id=rid, path="big.bin"))
        import urllib3

        assert urllib3.request("GET", reply.download_url.url).data == big.read_bytes()
        with pytest.raises(grpc.RpcError) as err:
            client._tracking.CompleteArtifactUpload(
                pb.CompleteArtifactUploadRequest(run_id=rid, path="big.bin", sha256="0" * 64)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
