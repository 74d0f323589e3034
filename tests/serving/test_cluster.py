"""The endpoint controller: the objects it builds (validated against Kubernetes' schemas) and its
reconcile loop, through the real `kubernetes` client against a fake API server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import kubernetes_validate
import pytest
from kubernetes import client as k8s

from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.services.serving.cluster import (
    APPLIED,
    ENDPOINT_LABEL,
    INSTANCE_LABEL,
    SPEC_HASH,
    ClusterConfig,
    EndpointController,
    build_objects,
    object_name,
    secret_volumes,
)
from tests.fake_kube import FakeKube

KUBERNETES_VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
# What the controller makes for each endpoint.
KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
CONFIG = ClusterConfig(
    namespace="ml", image="registry.example/modelyard:0.1.0", env_secret="modelyard-env"
)
# As the chart configures it with auth and TLS on.
SECURED = replace(
    CONFIG,
    secret_files={
        "/etc/modelyard/signing-key/public.pem": "modelyard-signing-key/public.pem",
        "/etc/modelyard/tls/tls.crt": "modelyard-tls/tls.crt",
        "/etc/modelyard/tls/tls.key": "modelyard-tls/tls.key",
        "/etc/modelyard/tls/ca.crt": "modelyard-tls/ca.crt",
    },
    service_token_secret="modelyard-service-tokens",
    health_port=50052,
)


def endpoint(name: str, *versions: int) -> Endpoint:
    share = 100 // len(versions)
    served = [
        ServedModel(
            f"models:/fraud/{v}",
            share if i else 100 - share * (len(versions) - 1),
            name=f"fraud-{v}",
            version=v,
        )
        for i, v in enumerate(versions)
    ]
    return Endpoint(name, tuple(served))


@pytest.mark.parametrize("config", [CONFIG, SECURED], ids=["plain", "auth-and-tls"])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(version: str, config: ClusterConfig) -> None:
    api = k8s.ApiClient()
    for obj in build_objects(endpoint("fraud", 1, 2), config):
        data = api.sanitize_for_serialization(obj)
        kubernetes_validate.validate(data, version, strict=True)


@pytest.mark.parametrize("config", [CONFIG, SECURED], ids=["plain", "auth-and-tls"])
def test_pods_meet_the_restricted_profile(config: ClusterConfig) -> None:
    deployment = build_objects(endpoint("fraud", 1), config)[0]
    pod = deployment.spec.template.spec
    assert (
        pod.security_context.run_as_non_root
        and pod.security_context.seccomp_profile.type == "RuntimeDefault"
    )
    (container,) = pod.containers
    sc = container.security_context
    assert sc.allow_privilege_escalation is False and sc.read_only_root_filesystem
    assert sc.capabilities.drop == ["ALL"] and sc.run_as_non_root
    probe_port = config.health_port or 50051
    assert container.readiness_probe.grpc.port == container.liveness_probe.grpc.port == probe_port
    assert probe_port in {p.container_port for p in container.ports}
    # Ready once the endpoint's models are loaded (test_endpoint_pod_readiness.py); alive while
    # they load.
    assert container.readiness_probe.grpc.service == "inference.GRPCInferenceService"
    assert container.liveness_probe.grpc.service is None
    assert all(m.read_only for m in container.volume_mounts if m.mount_path.startswith("/etc"))
    assert container.resources.requests and container.resources.limits
    assert deployment.spec.strategy.rolling_update.max_unavailable == 0
    assert {v.name for v in pod.volumes} == {m.name for m in container.volume_mounts}


def test_secured_pods_get_only_the_files_and_token_they_need() -> None:
    pod = build_objects(endpoint("fraud", 1), SECURED)[0].spec.template.spec
    (container,) = pod.containers
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    files = {
        f"{mounts[v.name]}/{item.path}": f"{v.secret.secret_name}/{item.key}"
        for v in pod.volumes
        if v.secret
        for item in v.secret.items
    }
    # Never the signing key's private half; the token as a file, which a renewal updates in
    # the running pod (an environment variable would keep the token the pod started with).
    token_file = "/etc/modelyard/service-token/token"
    assert files == {**SECURED.secret_files, token_file: "modelyard-service-tokens/serving"}
    env = {e.name: e for e in container.env}
    assert env["MODELYARD_AUTH__SERVICE_TOKEN_FILE"].value == token_file
    assert "MODELYARD_AUTH__SERVICE_TOKEN" not in env
    assert not [m for m in container.volume_mounts if m.sub_path]  # subPath never updates


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"relative/ca.crt": "tls/ca.crt"}, "absolute file path"),
        ({"/etc/tls/ca.crt": "no-key"}, "'<secret>/<key>'"),
        ({"/etc/x/a": "one/a", "/etc/x/b": "two/b"}, "give each Secret its own directory"),
    ],
)
def test_bad_secret_files_are_refused_with_what_to_fix(files: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        secret_volumes(files)


@pytest.fixture
def kube() -> Iterator[tuple[FakeKube, k8s.ApiClient]]:
    fake = FakeKube().start()
    configuration = k8s.Configuration()
    configuration.host = fake.url
    with k8s.ApiClient(configuration) as api:
        yield fake, api
    fake.stop()


def test_reconcile_creates_updates_and_deletes(kube) -> None:
    fake, api = kube
    desired = [endpoint("fraud", 1), endpoint("churn", 3)]
    controller = EndpointController(api, CONFIG, lambda: desired)
    first = controller.reconcile()
    assert sorted(first.created) == sorted(
        f"{kind}/modelyard-ep-{name}" for kind in KINDS for name in ("fraud", "churn")
    )
    assert set(fake.kinds("deployments")) == {"modelyard-ep-fraud", "modelyard-ep-churn"}
    # Nothing changed: nothing is written.
    writes = len([r for r in fake.requests if r[0] != "GET"])
    assert controller.reconcile() == type(first)()
    assert len([r for r in fake.requests if r[0] != "GET"]) == writes
    # A new version behind "fraud": its Deployment is replaced with a new pod template hash.
    old_hash = fake.kinds("deployments")["modelyard-ep-fraud"]["spec"]["template"]["metadata"][
        "annotations"
    ][SPEC_HASH]
    desired[0] = endpoint("fraud", 1, 2)
    second = controller.reconcile()
    assert "Deployment/modelyard-ep-fraud" in second.updated
    new = fake.kinds("deployments")["modelyard-ep-fraud"]
    assert new["spec"]["template"]["metadata"]["annotations"][SPEC_HASH] != old_hash
    # "churn" deleted: all its objects go.
    desired.pop()
    third = controller.reconcile()
    assert sorted(third.deleted) == sorted(f"{kind}/modelyard-ep-churn" for kind in KINDS)
    assert set(fake.kinds("services")) == {"modelyard-ep-fraud"}


def test_controller_recovers_after_a_restart(kube) -> None:
    fake, api = kube
    EndpointController(
        api, CONFIG, lambda: [endpoint("fraud", 1), endpoint("stale", 1)]
    ).reconcile()
    # A new controller process: it finds its objects by label, keeps the current ones, removes
    # the one no longer wanted, and leaves objects it does not own alone.
    fake.objects[("deployments", "ml", "someone-elses")] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "someone-elses",
            "namespace": "ml",
            "labels": {"app": "other"},
            "resourceVersion": "1",
            "uid": "x",
        },
        "spec": {
            "selector": {"matchLabels": {"app": "other"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    restarted = EndpointController(api, CONFIG, lambda: [endpoint("fraud", 1)])
    result = restarted.reconcile()
    assert result.created == [] and result.updated == []
    assert sorted(result.deleted) == sorted(f"{kind}/modelyard-ep-stale" for kind in KINDS)
    assert set(fake.kinds("deployments")) == {"modelyard-ep-fraud", "someone-elses"}


def test_drift_is_repaired(kube) -> None:
    fake, api = kube
    controller = EndpointController(api, CONFIG, lambda: [endpoint("fraud", 1)])
    controller.reconcile()
    stored = fake.kinds("deployments")["modelyard-ep-fraud"]
    stored["spec"]["replicas"] = 0
    stored["metadata"]["annotations"][APPLIED] = "edited-by-hand"
    assert controller.reconcile().updated == ["Deployment/modelyard-ep-fraud"]
    assert (
        fake.kinds("deployments")["modelyard-ep-fraud"]["spec"]["replicas"] == CONFIG.min_replicas
    )
    labels = fake.kinds("deployments")["modelyard-ep-fraud"]["metadata"]["labels"]
    assert labels[ENDPOINT_LABEL] == "fraud"


def test_changed_pod_annotations_roll_the_endpoint_pods(kube) -> None:
    """Endpoint pods read their environment Secret at start: when the chart's checksum of its
    values changes (the serving pod restarts with the new one), the controller must roll the
    endpoint pods too, or they keep the old database password and S3 keys."""
    fake, api = kube

    def template_annotations() -> dict[str, str]:
        deployment = fake.kinds("deployments")["modelyard-ep-fraud"]
        return deployment["spec"]["template"]["metadata"]["annotations"]

    before = replace(CONFIG, pod_annotations={"checksum/secrets": "aaa"})
    EndpointController(api, before, lambda: [endpoint("fraud", 1)]).reconcile()
    assert template_annotations()["checksum/secrets"] == "aaa"
    after = replace(CONFIG, pod_annotations={"checksum/secrets": "bbb"})
    result = EndpointController(api, after, lambda: [endpoint("fraud", 1)]).reconcile()
    assert result.updated == ["Deployment/modelyard-ep-fraud"]
    assert template_annotations()["checksum/secrets"] == "bbb"
    assert SPEC_HASH in template_annotations()


def test_two_instances_in_one_namespace_keep_their_own_endpoints(kube) -> None:
    """Two releases' controllers in one namespace, both with an endpoint "fraud": each makes and
    keeps its own objects, and removes only its own."""
    fake, api = kube
    team_a = replace(CONFIG, instance="team-a-modelyard")
    team_b = replace(CONFIG, instance="team-b-modelyard")
    a = EndpointController(api, team_a, lambda: [endpoint("fraud", 1)])
    wanted_b = [endpoint("fraud", 2), endpoint("churn", 1)]
    b = EndpointController(api, team_b, lambda: wanted_b)
    a.reconcile()
    b.reconcile()
    quiet = a.reconcile()  # B's objects are none of A's business
    assert not (quiet.created or quiet.updated or quiet.deleted)
    assert set(fake.kinds("deployments")) == {
        "team-a-modelyard-ep-fraud",
        "team-b-modelyard-ep-fraud",
        "team-b-modelyard-ep-churn",
    }
    wanted_b.clear()
    assert len(b.reconcile().deleted) == 2 * len(KINDS)
    assert set(fake.kinds("services")) == {"team-a-modelyard-ep-fraud"}
    # A's Service and Deployment select A's pods only (not B's, which share the endpoint name).
    service = fake.kinds("services")["team-a-modelyard-ep-fraud"]
    assert service["spec"]["selector"][INSTANCE_LABEL] == "team-a-modelyard"
    deployment = fake.kinds("deployments")["team-a-modelyard-ep-fraud"]
    assert deployment["spec"]["selector"]["matchLabels"][INSTANCE_LABEL] == "team-a-modelyard"


def test_deployments_from_before_instances_are_remade(kube) -> None:
    """A Deployment made before the instance label has a selector without it, which Kubernetes
    will not let change: the controller makes it anew (and Service and HPA are replaced)."""
    fake, api = kube
    old_deployment = k8s.ApiClient().sanitize_for_serialization(
        build_objects(endpoint("fraud", 1), CONFIG)[0]
    )
    for labels in (
        old_deployment["metadata"]["labels"],
        old_deployment["spec"]["selector"]["matchLabels"],
        old_deployment["spec"]["template"]["metadata"]["labels"],
    ):
        labels.pop(INSTANCE_LABEL, None)
    fake.objects[("deployments", "ml", "modelyard-ep-fraud")] = {
        **old_deployment,
        "metadata": {**old_deployment["metadata"], "resourceVersion": "1", "uid": "old"},
    }
    result = EndpointController(api, CONFIG, lambda: [endpoint("fraud", 1)]).reconcile()
    assert "Deployment/modelyard-ep-fraud" in result.updated
    remade = fake.kinds("deployments")["modelyard-ep-fraud"]
    assert remade["metadata"]["uid"] != "old"
    assert remade["spec"]["selector"]["matchLabels"][INSTANCE_LABEL] == "modelyard"


def test_long_instance_names_still_make_valid_distinct_names() -> None:
    instance = "a" * 40
    names = {object_name("x" * 50, instance), object_name("x" * 49 + "y", instance)}
    assert len(names) == 2
    assert all(len(n) <= 63 and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", n) for n in names)
    assert object_name("fraud") == "modelyard-ep-fraud"
