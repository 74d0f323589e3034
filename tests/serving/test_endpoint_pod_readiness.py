"""An endpoint's own pods (made by the cluster controller) are ready only once they can answer:
their readiness probe asks for the inference service's health, which stays NOT_SERVING while the
endpoint's models load. Ready at once, a new pod took calls it could only refuse, and a rollout
(maxUnavailable 0) removed the old pods that answered."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelyard import Client
from modelyard.entities.serving import ServedModel
from modelyard.errors import Unavailable
from modelyard.services.common.settings import ServingSettings, Settings
from modelyard.services.serving.cluster import INFERENCE_SERVICE
from tests.conftest import free_port, running_server
from tests.serving import models
from tests.serving.conftest import register

SERVING, NOT_SERVING = (
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


def test_an_endpoint_pod_is_ready_once_its_model_is_loaded(platform, iris, tmp_path: Path):
    server, client = platform
    X, _ = iris
    register(models.SlowToLoad(1.0).fit(X), X, "slow")
    models.LOAD_GATE.clear()
    try:
        client.create_endpoint("ep", [ServedModel("models:/slow/1", 100, name="slow")])
        health_port = free_port()
        pod = Settings(  # as the controller configures an endpoint's pods
            home=tmp_path / "pod",
            port=0,
            grace_period=0,
            health_port=health_port,
            backend_store_uri=server.settings.database_url,
            artifact_uri=server.settings.artifact_root,
            migrate_on_start=False,
            serving=ServingSettings(endpoints=["ep"], registry_uri=server.address),
        )
        with (
            running_server(pod, ("serving",)) as endpoint_pod,
            grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel,
            Client(endpoint_pod.address) as caller,
            triton.InferenceServerClient(endpoint_pod.address) as tc,
        ):
            health = health_pb2_grpc.HealthStub(channel)

            def status(service: str) -> int:
                return health.Check(health_pb2.HealthCheckRequest(service=service)).status

            assert status(INFERENCE_SERVICE) == NOT_SERVING  # the readiness probe's question
            assert status("") == SERVING  # the liveness probe's: loading is no reason to restart
            # The protocol's own readiness says the same (it said ready while loading).
            assert not tc.is_server_ready() and tc.is_server_live()
            with pytest.raises(Unavailable, match=r"no model loaded .*loading; retry shortly"):
                caller.predict("ep", X[:2])
            watch = health.Watch(
                health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE), timeout=60
            )
            assert next(watch).status == NOT_SERVING
            models.LOAD_GATE.set()
            assert next(watch).status == SERVING
            watch.cancel()
            (answer,) = caller.predict("ep", X[:2]).values()
            assert answer.tolist() == [1.0, 1.0]
            assert tc.is_server_ready()
    finally:
        models.LOAD_GATE.set()


def test_the_shared_serving_pods_are_ready_at_once(platform):
    """The chart's serving Deployment serves every endpoint: no single one holds it back."""
    server, _ = platform
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE))
        assert check.status == SERVING
    with triton.InferenceServerClient(server.address) as tc:
        assert tc.is_server_ready()
