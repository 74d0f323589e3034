"""The NetworkPolicies allow exactly the paths the services need: checked by evaluating the rendered
policies the way the Kubernetes NetworkPolicy API defines them, for pairs of pods and ports."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.helm.conftest import (
    NAMESPACE,
    Rendered,
    containers,
    pod_spec,
    pod_template,
    render,
    values_of,
)


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace, named ports) or an address outside the cluster."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace: str = NAMESPACE
    ports: dict[str, int] = field(default_factory=dict)
    ip: str | None = None


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:  # pod addresses are matched by selectors, not CIDRs
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        if address.version != network.version or address not in network:
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.ip is not None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector", {}), other.labels)


def _port_matches(rule: dict[str, Any], port: int, target: Endpoint) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        wanted = entry.get("port")
        if wanted is None or wanted == port or target.ports.get(wanted) == port:
            return True
    return False


def _allowed(
    policies: list[dict[str, Any]], pod: Endpoint, direction: str, peer: Endpoint, port: int
) -> bool:
    """Whether `pod`'s policies let traffic to (Egress) or from (Ingress) `peer` on `port`."""
    if pod.ip is not None:
        return True  # not a pod: no policy applies
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"]["policyTypes"]
        and _selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not applying:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    # Named ports resolve on the destination pod.
    target = peer if direction == "Egress" else pod
    for policy in applying:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (
                peers is None
                or any(_peer_matches(x, peer, policy["metadata"]["namespace"]) for x in peers)
            ) and _port_matches(rule, port, target):
                return True
    return False


class Cluster:
    def __init__(self, rendered: Rendered) -> None:
        self.policies = rendered.of_kind("NetworkPolicy")
        self.pods: dict[str, Endpoint] = {}
        for workload in rendered.workloads():
            labels = pod_template(workload)["metadata"]["labels"]
            ports = {
                p["name"]: p["containerPort"]
                for c in containers(workload)
                for p in c.get("ports", [])
                if "name" in p
            }
            self.pods[labels["app.kubernetes.io/component"]] = Endpoint(
                labels["app.kubernetes.io/component"], labels, NAMESPACE, ports
            )
        grpc = {"grpc": 50051, "health": 50052}  # as services/serving/cluster.py names them
        self.pods["endpoint"] = Endpoint(
            "endpoint",
            {
                "app.kubernetes.io/component": "endpoint",
                "app.kubernetes.io/managed-by": "modelyard",
                "modelyard.io/instance": "modelyard",  # the controller's instance: this release
            },
            ports=grpc,
        )
        self.pods["ingress-controller"] = Endpoint(
            "ingress-controller", {"app": "ingress-nginx"}, "ingress-nginx"
        )
        self.pods["notebook"] = Endpoint("notebook", {"app": "jupyter"}, "data-science")
        self.pods["kube-dns"] = Endpoint("kube-dns", {"k8s-app": "kube-dns"}, "kube-system")
        self.pods["database"] = Endpoint("database", ip="10.20.1.5")
        self.pods["s3"] = Endpoint("s3", ip="52.95.150.10")
        self.pods["apiserver"] = Endpoint("apiserver", ip="10.96.0.1")
        self.pods["kubelet"] = Endpoint("kubelet", ip="10.0.0.10")  # a node: probes come from it

    def can(self, source: str, target: str, port: int) -> bool:
        src, dst = self.pods[source], self.pods[target]
        return _allowed(self.policies, src, "Egress", dst, port) and _allowed(
            self.policies, dst, "Ingress", src, port
        )


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster(render())


def test_every_pod_of_the_release_is_isolated_both_ways(rendered: Rendered):
    cluster = Cluster(rendered)
    for workload in rendered.workloads():
        labels = pod_template(workload)["metadata"]["labels"]
        types = {
            t
            for p in cluster.policies
            if _selects(p["spec"]["podSelector"], labels)
            for t in p["spec"]["policyTypes"]
        }
        assert types == {"Ingress", "Egress"}, workload["metadata"]["name"]
        assert pod_spec(workload)  # a pod template


NEEDED = [
    ("gateway", "auth", 50051),
    ("gateway", "tracking", 50051),
    ("gateway", "registry", 50051),
    ("gateway", "serving", 50051),
    ("tracking", "auth", 50051),
    ("registry", "auth", 50051),
    ("serving", "auth", 50051),
    ("registry", "tracking", 50051),
    ("serving", "registry", 50051),
    ("notebook", "gateway", 50051),
    ("ingress-controller", "gateway", 50051),
    ("auth", "database", 5432),
    ("tracking", "database", 5432),
    ("registry", "database", 5432),
    ("serving", "database", 5432),
    ("migrations", "database", 5432),
    ("tracking", "s3", 443),
    ("registry", "s3", 443),
    ("serving", "s3", 443),
    ("keys", "apiserver", 6443),
    ("auth", "apiserver", 6443),  # the token bootstrap init container
    ("token-renewal", "database", 5432),  # the service-token renewal CronJob
    ("token-renewal", "apiserver", 6443),
    *((pod, "kube-dns", 53) for pod in ("auth", "tracking", "gateway", "migrations", "keys")),
]
NOT_NEEDED = [
    ("tracking", "registry", 50051),
    ("tracking", "serving", 50051),
    ("registry", "serving", 50051),
    ("serving", "tracking", 50051),
    ("auth", "tracking", 50051),
    ("migrations", "auth", 50051),
    ("keys", "database", 5432),
    ("token-renewal", "auth", 50051),
    ("gateway", "database", 5432),
    ("gateway", "s3", 443),
    ("notebook", "tracking", 50051),  # clients go through the gateway
    ("notebook", "auth", 50051),
    ("tracking", "apiserver", 6443),
    ("serving", "apiserver", 6443),  # no endpoint controller by default
    ("tracking", "database", 3306),
    ("tracking", "auth", 9464),
]


@pytest.mark.parametrize(("source", "target", "port"), NEEDED)
def test_needed_paths_are_open(cluster: Cluster, source: str, target: str, port: int):
    assert cluster.can(source, target, port)


@pytest.mark.parametrize(("source", "target", "port"), NOT_NEEDED)
def test_other_paths_are_closed(cluster: Cluster, source: str, target: str, port: int):
    assert not cluster.can(source, target, port)


def test_dev_dependencies_are_reachable_only_by_their_users():
    values = values_of("dev")
    assert values is not None  # an example file's values (only "default" has none)
    values["services"]["features"] = {"enabled": True}
    cluster = Cluster(render(values))
    for service in ("auth", "tracking", "registry", "serving", "features"):
        assert cluster.can(service, "postgresql", 5432), service
    for service in ("tracking", "registry", "serving", "features"):
        assert cluster.can(service, "minio", 9000), service
    assert cluster.can("notebook", "minio", 9000)  # presigned URLs
    assert cluster.can("features", "redis", 6379)
    assert cluster.can("serving", "features", 50051)
    assert not cluster.can("features", "tracking", 50051)  # it never calls tracking
    for source, target, port in [
        ("tracking", "redis", 6379),
        ("gateway", "postgresql", 5432),
        ("notebook", "postgresql", 5432),
        ("auth", "minio", 9000),
        ("tracking", "database", 5432),  # the dev database, not one outside
        ("postgresql", "s3", 443),
    ]:
        assert not cluster.can(source, target, port), (source, target, port)


def test_production_names_its_clients_and_external_services():
    cluster = Cluster(render(values_of("production")))
    assert cluster.can("ingress-controller", "gateway", 50051)
    assert not cluster.can("notebook", "gateway", 50051)  # its namespace is not labelled
    assert cluster.can("tracking", "database", 5432)  # 10.20.0.0/16
    assert cluster.can("tracking", "s3", 443)
    cluster.pods["elsewhere"] = Endpoint("elsewhere", ip="192.168.7.7")
    assert not cluster.can("tracking", "elsewhere", 443)
    assert cluster.can("features", "database", 6380)  # Redis in the same subnet
    assert cluster.can("ui", "gateway", 50051)


def test_endpoint_pods_get_a_policy_when_the_controller_runs():
    cluster = Cluster(render(values_of("auth-off")))
    assert cluster.can("serving", "apiserver", 443)
    assert cluster.can("endpoint", "registry", 50051)
    assert cluster.can("endpoint", "postgresql", 5432)
    assert cluster.can("notebook", "endpoint", 50051)
    assert not cluster.can("endpoint", "tracking", 50051)
    assert not cluster.can("endpoint", "apiserver", 443)
    assert not cluster.can("kubelet", "endpoint", 50052)  # no TLS: probes use the gRPC port


def test_secured_endpoint_pods_take_probes_on_the_health_port():
    cluster = Cluster(render(values_of("dev")))  # auth and TLS on, controller on
    assert cluster.can("kubelet", "endpoint", 50052)
    assert cluster.can("endpoint", "auth", 50051)  # token checks and revocations
    assert cluster.can("endpoint", "features", 50051)
    assert not cluster.can("endpoint", "tracking", 50051)


def test_notes_warn_while_egress_is_open_to_any_address():
    """Without externalServices / kubeApi the egress rules allow 0.0.0.0/0 and ::/0 on the
    database, S3, Redis and API ports; failing the install would break `helm install` with the
    default values (where those run is not knowable), so the notes say which value to set."""
    notes = render().notes
    assert "set networkPolicy.externalServices" in notes
    assert "(5432, 443, 6379)" in notes
    assert "set networkPolicy.kubeApi" in notes
    assert "ports 443, 6443" in notes
    closed = render(
        {
            "networkPolicy": {
                "externalServices": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                "kubeApi": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
            }
        }
    ).notes
    assert "WARNING: the NetworkPolicies" not in closed
    # The dev profile's dependencies are in-release pods, reached by selector.
    dev = render(values_of("dev")).notes
    assert "networkPolicy.externalServices" not in dev
    assert "networkPolicy.kubeApi" in dev
    assert "WARNING: the NetworkPolicies" not in render({"networkPolicy": {"enabled": False}}).notes
