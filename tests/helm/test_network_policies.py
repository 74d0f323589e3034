"""The NetworkPolicies allow exactly the paths the services need: checked by evaluating the rendered
policies the way the Kubernetes NetworkPolicy API defines them, for pairs of pods and ports."""

from __future__ import annotations

import ipaddress
import re
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
        # Any namespace's pods may carry that label: only kube-system's serve the cluster's DNS.
        self.pods["fake-dns"] = Endpoint("fake-dns", {"k8s-app": "kube-dns"}, "data-science")
        # PostgreSQL, MinIO and Redis run by their own charts or operators in the cluster.
        self.pods["cluster-postgresql"] = Endpoint(
            "cluster-postgresql", {"app.kubernetes.io/name": "postgresql"}, "databases"
        )
        self.pods["cluster-minio"] = Endpoint(
            "cluster-minio", {"app.kubernetes.io/name": "minio"}, "storage"
        )
        self.pods["cluster-redis"] = Endpoint(
            "cluster-redis", {"app.kubernetes.io/name": "redis"}, "redis"
        )
        self.pods["internet"] = Endpoint("internet", ip="203.0.113.7")
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
    # Unnamed dependencies are reached where they run in the cluster.
    ("auth", "cluster-postgresql", 5432),
    ("tracking", "cluster-postgresql", 5432),
    ("registry", "cluster-postgresql", 5432),
    ("serving", "cluster-postgresql", 5432),
    ("migrations", "cluster-postgresql", 5432),
    ("tracking", "cluster-minio", 443),
    ("registry", "cluster-minio", 443),
    ("serving", "cluster-minio", 443),
    ("features", "cluster-redis", 6379),
    ("keys", "apiserver", 6443),
    ("auth", "apiserver", 6443),  # the token bootstrap init container
    ("token-renewal", "cluster-postgresql", 5432),  # the service-token renewal CronJob
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
    ("tracking", "cluster-postgresql", 3306),
    ("tracking", "auth", 9464),
    # Nothing outside the cluster until the operator names where it is.
    ("tracking", "database", 5432),
    ("migrations", "database", 5432),
    ("tracking", "s3", 443),
    ("features", "internet", 6379),
    ("tracking", "cluster-redis", 6379),
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


# What each pod may reach, probed on these (target, port) pairs: release services, DNS, where a
# dependency may run (a pod in the cluster, a private subnet, a public address) and the API server.
PROBES = [
    *((s, 50051) for s in ("auth", "tracking", "registry", "serving", "features", "gateway")),
    ("kube-dns", 53),
    ("fake-dns", 53),
    *((t, p) for t in ("cluster-postgresql", "database", "internet") for p in (5432, 6379)),
    *((t, 443) for t in ("cluster-minio", "database", "s3", "internet")),
    ("cluster-redis", 6379),
    ("apiserver", 6443),
    ("internet", 6443),
]
SERVICES = {s: {(s, 50051)} for s in ("auth", "tracking", "registry", "serving", "features")}
DNS = {("kube-dns", 53)}
IN_CLUSTER_DB = {("cluster-postgresql", 5432)}
IN_CLUSTER_S3 = {("cluster-minio", 443)}
# (Any pod in the cluster on the port: which of them runs Redis is not known.)
IN_CLUSTER_REDIS = {("cluster-redis", 6379), ("cluster-postgresql", 6379)}
# No selector names the API server: without networkPolicy.kubeApi, any address on its ports.
ANY_KUBE_API = {(t, p) for t, p in PROBES if p in (443, 6443)}


def egress(cluster: Cluster, component: str) -> set[tuple[str, int]]:
    """The probes `component`'s pods may reach."""
    return {(target, port) for target, port in PROBES if cluster.can(component, target, port)}


def _calls(*services: str) -> set[tuple[str, int]]:
    return set().union(*(SERVICES[s] for s in services))


DEFAULT_EGRESS = {
    "auth": DNS | IN_CLUSTER_DB | ANY_KUBE_API,
    "tracking": DNS | _calls("auth") | IN_CLUSTER_DB | IN_CLUSTER_S3,
    "registry": DNS | _calls("auth", "tracking") | IN_CLUSTER_DB | IN_CLUSTER_S3,
    "serving": DNS | _calls("auth", "registry", "features") | IN_CLUSTER_DB | IN_CLUSTER_S3,
    "features": DNS | _calls("auth") | IN_CLUSTER_DB | IN_CLUSTER_S3 | IN_CLUSTER_REDIS,
    "gateway": DNS | _calls("auth", "tracking", "registry", "serving", "features"),
    "ui": DNS
    | _calls("auth", "tracking", "registry", "serving", "features")
    | {("gateway", 50051)},
    "migrations": DNS | IN_CLUSTER_DB,
    "keys": DNS | ANY_KUBE_API,
    "token-renewal": DNS | IN_CLUSTER_DB | ANY_KUBE_API,
}


def test_default_egress_of_each_pod_stays_in_the_cluster():
    """With the default values (external dependencies not named) each pod reaches exactly the
    release services it calls, the cluster's DNS in kube-system, and PostgreSQL, S3 and Redis
    only as pods in the cluster: no address outside it, on any port, but the API server's."""
    cluster = Cluster(render())
    assert {c: egress(cluster, c) for c in DEFAULT_EGRESS} == DEFAULT_EGRESS


def test_named_dependencies_are_reached_there_on_their_own_port_only():
    """networkPolicy.database / s3 / redis each open their own port to their own peers: the
    database's subnet does not get the S3 or Redis port, and an unnamed place none."""
    values = {
        "networkPolicy": {
            "database": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
            "s3": [
                {
                    "ipBlock": {
                        "cidr": "0.0.0.0/0",
                        "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                    }
                }
            ],
            "redis": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}}}
            ],
            "kubeApi": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        }
    }
    cluster = Cluster(render(values))
    database, s3, redis = (
        {("database", 5432)},
        {("s3", 443), ("internet", 443)},
        {("cluster-redis", 6379)},
    )
    kube_api = {("apiserver", 6443)}
    assert {c: egress(cluster, c) for c in DEFAULT_EGRESS} == {
        "auth": DNS | database | kube_api,
        "tracking": DNS | _calls("auth") | database | s3,
        "registry": DNS | _calls("auth", "tracking") | database | s3,
        "serving": DNS | _calls("auth", "registry", "features") | database | s3,
        "features": DNS | _calls("auth") | database | s3 | redis,
        "gateway": DEFAULT_EGRESS["gateway"],
        "ui": DEFAULT_EGRESS["ui"],
        "migrations": DNS | database,
        "keys": DNS | kube_api,
        "token-renewal": DNS | database | kube_api,
    }


def test_external_services_still_name_every_dependency_left_unnamed():
    """Releases that set only networkPolicy.externalServices (the one list there was) keep
    reaching their dependencies there after an upgrade; a dependency's own list wins."""
    cluster = Cluster(
        render(
            {
                "networkPolicy": {
                    "externalServices": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                    "redis": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                }
            }
        )
    )
    assert egress(cluster, "features") == DNS | _calls("auth") | {
        ("database", 5432),
        ("database", 443),
        ("internet", 6379),
    }
    assert not cluster.can("tracking", "cluster-postgresql", 5432)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # The dev profile's dependencies are the release's own pods: nothing outside it.
        (
            "dev",
            {
                "tracking": DNS | _calls("auth") | {("postgresql", 5432), ("minio", 9000)},
                "features": DNS
                | _calls("auth")
                | {("postgresql", 5432), ("minio", 9000), ("redis", 6379)},
                "migrations": DNS | {("postgresql", 5432)},
            },
        ),
        # Services of another installation, by namespace; PostgreSQL and AWS S3 by address.
        (
            "serving-only",
            {
                "serving": DNS
                | {
                    ("other-auth", 50051),
                    ("other-registry", 50051),
                    ("other-features", 50051),
                    ("database", 5432),
                    ("s3", 443),
                    ("internet", 443),
                },
            },
        ),
        (
            "production",
            {
                "tracking": DNS
                | _calls("auth")
                | {("database", 5432), ("s3", 443), ("internet", 443)},
                "features": DNS
                | _calls("auth")
                | {("database", 5432), ("database", 6380), ("s3", 443), ("internet", 443)},
                "auth": DNS | {("database", 5432)},
            },
        ),
    ],
)
def test_egress_of_the_example_values(values: str, expected: dict[str, set[tuple[str, int]]]):
    cluster = Cluster(render(values_of(values)))
    probes = [
        *PROBES,
        ("database", 6380),
        *((d, p) for d in ("postgresql", "redis", "minio") for p in (5432, 6379, 9000)),
        *((f"other-{s}", 50051) for s in ("auth", "registry", "features")),
    ]
    for name in ("auth", "registry", "features"):
        cluster.pods[f"other-{name}"] = Endpoint(
            f"other-{name}", {"app.kubernetes.io/component": name}, "modelyard"
        )
    for component, wanted in expected.items():
        found = {(t, p) for t, p in probes if t in cluster.pods and cluster.can(component, t, p)}
        assert found == wanted, component


def test_notes_say_which_dependencies_are_reached_only_inside_the_cluster():
    """Where PostgreSQL, S3 and Redis run is not knowable from the default values, and failing
    the install would break `helm install` with them: the notes say which value to set."""
    notes = render().notes
    for line in (
        "PostgreSQL on port 5432 (networkPolicy.database)",
        "S3 on port 443 (networkPolicy.s3)",
        "Redis on port 6379 (networkPolicy.redis)",
    ):
        assert line in notes
    # s3.endpoint "" is AWS S3, outside the cluster by definition.
    assert "cannot reach it until you set networkPolicy.s3" in notes
    assert "networkPolicy.kubeApi to its address" in notes
    assert "ports 443, 6443" in notes
    minio = render({"s3": {"endpoint": "http://minio.storage:9000"}}).notes
    assert "S3 on port 443 (networkPolicy.s3)" in minio
    assert "networkPolicy.s3, e.g." not in minio
    named = render(
        {
            "networkPolicy": {
                "database": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                "s3": [{"ipBlock": {"cidr": "52.95.0.0/16"}}],
            }
        }
    ).notes
    assert "Redis on port 6379 (networkPolicy.redis)" in named
    assert "networkPolicy.database)" not in named and "networkPolicy.s3" not in named
    no_features = render({"services": {"features": {"enabled": False}}}).notes
    assert "networkPolicy.redis" not in no_features
    closed = render(
        {
            "networkPolicy": {
                "externalServices": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                "kubeApi": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
            }
        }
    ).notes
    assert "NOTE: the NetworkPolicies" not in closed and "WARNING" not in closed
    # The dev profile's dependencies are in-release pods, reached by selector.
    dev = render(values_of("dev")).notes
    assert "NOTE: the NetworkPolicies" not in dev
    assert "networkPolicy.kubeApi" in dev
    assert "WARNING: the NetworkPolicies" not in render({"networkPolicy": {"enabled": False}}).notes


def test_extra_egress_opens_one_components_pods_to_a_named_place():
    """services.features.sourceLocations may name a warehouse database other than the metadata
    one: its pods need egress there, which no value could open (short of turning the
    NetworkPolicies off). networkPolicy.extraEgress adds rules to one component's pods only."""
    warehouse = {
        "to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}],
        "ports": [{"port": 5439, "protocol": "TCP"}],
    }
    values = values_of("dev") or {}
    values["services"]["features"] = {"enabled": True}
    values["networkPolicy"] = {"extraEgress": {"features": [warehouse], "endpoints": [warehouse]}}
    cluster = Cluster(render(values))
    cluster.pods["warehouse"] = Endpoint("warehouse", ip="10.30.4.2")
    assert cluster.can("features", "warehouse", 5439)
    assert cluster.can("endpoint", "warehouse", 5439)
    assert not cluster.can("features", "warehouse", 5432)
    for other in ("auth", "tracking", "registry", "serving", "gateway", "ui"):
        assert not cluster.can(other, "warehouse", 5439), other
    with pytest.raises(Exception, match="extraEgress"):
        render({"networkPolicy": {"extraEgress": {"featurs": [warehouse]}}})


NO_API_CALLERS = {
    "auth": {"enabled": False},
    "tls": {"enabled": False},
    "services": {"ui": {"enabled": False}},
}


@pytest.mark.parametrize(
    ("values", "callers"),
    [
        ("default", {"keys", "auth", "token-renewal"}),
        ("auth-off", {"keys", "serving"}),  # the endpoint controller; dev passwords by the Job
        ("dev", {"keys", "auth", "token-renewal", "serving"}),
        ("none", set()),
    ],
)
def test_only_the_pods_that_call_the_kubernetes_api_reach_it(values: str, callers: set[str]):
    """No selector matches the API server, so its egress rule (networkPolicy.kubeApi unset) opens
    any address on its ports: only the pods that call it get that rule, and the install notes
    name them and say how to narrow it, or say nothing when no pod has it."""
    out = render(NO_API_CALLERS if values == "none" else values_of(values))
    cluster = Cluster(out)
    release = {
        pod_template(w)["metadata"]["labels"]["app.kubernetes.io/component"]
        for w in out.workloads()
    }
    if "modelyard-endpoints" in out.names("NetworkPolicy"):  # the controller makes them
        release.add("endpoint")
    assert {c for c in release if cluster.can(c, "apiserver", 6443)} == callers
    for caller in callers:
        assert cluster.can(caller, "internet", 6443), caller  # hence the warning
    warning = re.search(r"call the Kubernetes API \(([^)]*)\)", out.notes)
    if not callers:
        assert warning is None and "networkPolicy.kubeApi" not in out.notes
        return
    assert warning is not None and set(warning.group(1).split(", ")) == callers
    assert "kubectl get endpoints kubernetes -n default" in out.notes
    assert "kubeApi: [{ipBlock: {cidr: <that address>/32}}]" in out.notes
    narrowed = values_of(values) or {}
    narrowed.setdefault("networkPolicy", {})["kubeApi"] = [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    closed = render(narrowed)
    assert "call the Kubernetes API" not in closed.notes
    cluster = Cluster(closed)
    for caller in callers:
        assert cluster.can(caller, "apiserver", 6443) and not cluster.can(caller, "internet", 6443)
