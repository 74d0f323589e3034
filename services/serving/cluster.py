"""Endpoints as Kubernetes workloads: each endpoint becomes its own Deployment, Service,
HorizontalPodAutoscaler and PodDisruptionBudget, built here and kept in line by a reconcile loop.

The objects are named <instance>-ep-<endpoint> and carry owner labels
(app.kubernetes.io/managed-by=modelyard, modelyard.io/instance=<instance>,
modelyard.io/endpoint=<name>) so the controller finds what it made after a restart, and leaves
alone the endpoints of another release's controller in the same namespace, and a
spec hash on the pod template so a change of served models or versions rolls the pods
(maxUnavailable 0: old pods answer until new ones are ready). Pods meet the Pod Security
"restricted" profile. RBAC the controller needs in its namespace: get/list/create/update/delete
on deployments (apps), services (core), horizontalpodautoscalers (autoscaling) and
poddisruptionbudgets (policy).
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from modelyard.entities.serving import Endpoint
from modelyard.services.common.logging import get_logger
from modelyard.services.common.settings import DEFAULT_POD_USER

log = get_logger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
ENDPOINT_LABEL = "modelyard.io/endpoint"
# Which controller (release) made the object: two releases may share a namespace.
INSTANCE_LABEL = "modelyard.io/instance"
SPEC_HASH = "modelyard.io/spec-hash"
# On every object: a hash of what the controller applied, so server-side defaults never look
# like drift and a changed desired object is always applied.
APPLIED = "modelyard.io/applied"
GRPC_PORT = 50051
INFERENCE_SERVICE = "inference.GRPCInferenceService"
# Where endpoint pods find their service token: a mounted Secret key, so a renewed token reaches
# running pods (services/common/service_token.py re-reads it), which an environment variable
# would not.
SERVICE_TOKEN_FILE = "/etc/modelyard/service-token/token"
# Kubernetes object names (a Service's is a DNS label) are at most this long.
MAX_NAME = 63
# Seconds a stopping pod keeps serving before SIGTERM, while its Service endpoint is removed
# (kube-proxy and clients learn of it a moment after the pod starts terminating); then SIGTERM
# drains for grace_period, and the kubelet kills it DRAIN_MARGIN seconds later at the earliest.
# As the chart's own pods (templates/services.yaml: preStop sleep 5, grace period + 15 s).
PRE_STOP_SECONDS = 5
DRAIN_MARGIN = 15


@dataclass(frozen=True)
class ClusterConfig:
    namespace: str = "default"
    # The release this controller belongs to: the prefix of object names and the value of
    # INSTANCE_LABEL. The default keeps the names of a single install (modelyard-ep-<endpoint>).
    instance: str = "modelyard"
    image: str = "modelyard:latest"
    image_pull_policy: str = "IfNotPresent"
    # runAsUser / runAsGroup / fsGroup of the pods; one left out is the cluster's to choose.
    pod_security_context: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_POD_USER))
    service_account: str | None = None
    # Secret with the pods' environment (database URL, S3 keys, settings).
    env_secret: str | None = None
    # Files the pods read, {path in the pod: "<secret>/<key>"}: the signing key's public half and
    # the TLS certificates. Each Secret is mounted read-only with only the listed keys.
    secret_files: dict[str, str] = field(default_factory=dict)
    # Secret with the serving service token under the key `serving`: endpoint pods call the
    # registry and the feature store as that identity, read from SERVICE_TOKEN_FILE.
    service_token_secret: str | None = None
    # Annotations of the pod template (a checksum of the environment's Secret values): a change
    # rolls the endpoint's pods.
    pod_annotations: dict[str, str] = field(default_factory=dict)
    # The plaintext grpc.health.v1 port the pods also answer on (kubelets probe without TLS).
    health_port: int | None = None
    # Seconds in-flight calls get after SIGTERM (the pods' MODELYARD_GRACE_PERIOD, as this
    # process's): the pods' terminationGracePeriodSeconds leaves room for it.
    grace_period: float = 10.0
    # Where endpoint pods reach the registry.
    registry_uri: str = "modelyard-registry:50051"
    # Where endpoint pods look features up.
    features_uri: str = "modelyard-features:50051"
    min_replicas: int = 1
    max_replicas: int = 5
    target_cpu_percent: int = 70
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "512Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "2", "memory": "2Gi"})
    # Where the pods may run: nodeSelector, and tolerations as the API spells them.
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


def object_name(endpoint: str, instance: str = "modelyard") -> str:
    """<instance>-ep-<endpoint>; when longer than a DNS label, cut, with a hash of the whole
    name so that endpoints sharing a long prefix keep distinct names."""
    name = f"{instance}-ep-{endpoint}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def selector(config: ClusterConfig) -> str:
    """The objects of this controller's endpoints (not another release's)."""
    return f"{MANAGED_BY}=modelyard,{COMPONENT}=endpoint,{INSTANCE_LABEL}={config.instance}"


def spec_hash(endpoint: Endpoint) -> str:
    """Changes when the served models, their traffic or the versions they serve change."""
    served = [
        [s.name, s.model_uri, s.traffic_percent, s.version, s.batching.max_batch_size]
        for s in endpoint.served_models
    ]
    return hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()[:16]


def _labels(endpoint: str, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelyard",
        COMPONENT: "endpoint",
        MANAGED_BY: "modelyard",
        INSTANCE_LABEL: instance,
        ENDPOINT_LABEL: endpoint,
    }


def _pod_selector(endpoint: str, instance: str) -> dict[str, str]:
    return {ENDPOINT_LABEL: endpoint, COMPONENT: "endpoint", INSTANCE_LABEL: instance}


def secret_volumes(files: dict[str, str]) -> list[tuple[k8s.V1Volume, k8s.V1VolumeMount]]:
    """One read-only Secret volume per directory, holding only the listed keys."""
    by_directory: dict[str, tuple[str, list[k8s.V1KeyToPath]]] = {}
    for path, source in sorted(files.items()):
        secret, _, key = source.partition("/")
        directory = posixpath.dirname(path)
        if not (secret and key and posixpath.isabs(path) and directory != "/"):
            raise ValueError(
                f"serving.cluster.secret_files: {path!r}: {source!r} must map an absolute file "
                "path to '<secret>/<key>', e.g. '/etc/modelyard/tls/ca.crt': 'modelyard-tls/ca.crt'"
            )
        owner, items = by_directory.setdefault(directory, (secret, []))
        if owner != secret:
            raise ValueError(
                f"serving.cluster.secret_files: {directory} holds files of Secrets {owner!r} and "
                f"{secret!r}; give each Secret its own directory"
            )
        items.append(k8s.V1KeyToPath(key=key, path=posixpath.basename(path)))
    return [
        (
            k8s.V1Volume(
                name=f"secret-files-{n}",
                secret=k8s.V1SecretVolumeSource(
                    secret_name=secret, items=items, default_mode=0o440
                ),
            ),
            k8s.V1VolumeMount(name=f"secret-files-{n}", mount_path=directory, read_only=True),
        )
        for n, (directory, (secret, items)) in enumerate(by_directory.items())
    ]


def pod_secret_files(config: ClusterConfig) -> dict[str, str]:
    """Every Secret file of an endpoint pod: the configured ones and its service token."""
    files = dict(config.secret_files)
    if config.service_token_secret:
        files[SERVICE_TOKEN_FILE] = f"{config.service_token_secret}/serving"
    return files


def _container(
    endpoint: Endpoint, config: ClusterConfig, mounts: list[k8s.V1VolumeMount]
) -> k8s.V1Container:
    probe_port = config.health_port or GRPC_PORT
    grpc_probe = k8s.V1GRPCAction(port=probe_port)
    # Ready once the endpoint's models are loaded (the pod answers inference NOT_SERVING till
    # then): a rollout keeps the old pods, and the Service skips the new one, until it can answer.
    ready_probe = k8s.V1GRPCAction(port=probe_port, service=INFERENCE_SERVICE)
    token = (
        [k8s.V1EnvVar(name="MODELYARD_AUTH__SERVICE_TOKEN_FILE", value=SERVICE_TOKEN_FILE)]
        if config.service_token_secret
        else []
    )
    ports = [k8s.V1ContainerPort(name="grpc", container_port=GRPC_PORT)]
    if config.health_port:
        ports.append(k8s.V1ContainerPort(name="health", container_port=config.health_port))
    return k8s.V1Container(
        name="serving",
        image=config.image,
        image_pull_policy=config.image_pull_policy,
        args=[
            "serve",
            "serving",
            "--host",
            "0.0.0.0",
            "--port",
            str(GRPC_PORT),
            "--log-format",
            "json",
        ],
        env=[
            k8s.V1EnvVar(name="MODELYARD_SERVING__ENDPOINTS", value=json.dumps([endpoint.name])),
            k8s.V1EnvVar(name="MODELYARD_SERVING__REGISTRY_URI", value=config.registry_uri),
            k8s.V1EnvVar(name="MODELYARD_SERVING__FEATURES_URI", value=config.features_uri),
            k8s.V1EnvVar(name="MODELYARD_HOME", value="/var/lib/modelyard"),
            *token,
        ],
        env_from=(
            [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=config.env_secret))]
            if config.env_secret
            else None
        ),
        ports=ports,
        lifecycle=k8s.V1Lifecycle(
            pre_stop=k8s.V1LifecycleHandler(
                _exec=k8s.V1ExecAction(command=["sleep", str(PRE_STOP_SECONDS)])
            )
        ),
        readiness_probe=k8s.V1Probe(grpc=ready_probe, period_seconds=5, failure_threshold=3),
        liveness_probe=k8s.V1Probe(grpc=grpc_probe, period_seconds=10, failure_threshold=6),
        resources=k8s.V1ResourceRequirements(requests=config.requests, limits=config.limits),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volume_mounts=[
            k8s.V1VolumeMount(name="state", mount_path="/var/lib/modelyard"),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            *mounts,
        ],
    )


def _tolerations(tolerations: list[dict[str, Any]]) -> list[k8s.V1Toleration]:
    """Tolerations as the API spells them (tolerationSeconds), as client objects."""
    return [t for t in map(k8s.V1Toleration.from_dict, tolerations) if t is not None]


def build_objects(endpoint: Endpoint, config: ClusterConfig) -> list[Any]:
    """The Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget of one
    endpoint."""
    files = secret_volumes(pod_secret_files(config))
    name = object_name(endpoint.name, config.instance)
    labels = _labels(endpoint.name, config.instance)

    def metadata() -> k8s.V1ObjectMeta:
        return k8s.V1ObjectMeta(name=name, namespace=config.namespace, labels=dict(labels))

    deployment = k8s.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=metadata(),
        spec=k8s.V1DeploymentSpec(
            replicas=config.min_replicas,
            selector=k8s.V1LabelSelector(
                match_labels=_pod_selector(endpoint.name, config.instance)
            ),
            strategy=k8s.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k8s.V1RollingUpdateDeployment(max_unavailable=0, max_surge=1),
            ),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(
                    labels=labels,
                    annotations={**config.pod_annotations, SPEC_HASH: spec_hash(endpoint)},
                ),
                spec=k8s.V1PodSpec(
                    service_account_name=config.service_account,
                    automount_service_account_token=False,
                    termination_grace_period_seconds=math.ceil(config.grace_period) + DRAIN_MARGIN,
                    node_selector=config.node_selector or None,
                    tolerations=_tolerations(config.tolerations) or None,
                    security_context=k8s.V1PodSecurityContext(
                        run_as_non_root=True,
                        run_as_user=config.pod_security_context.get("runAsUser"),
                        run_as_group=config.pod_security_context.get("runAsGroup"),
                        fs_group=config.pod_security_context.get("fsGroup"),
                        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
                    ),
                    containers=[_container(endpoint, config, [m for _, m in files])],
                    volumes=[
                        k8s.V1Volume(name="state", empty_dir=k8s.V1EmptyDirVolumeSource()),
                        k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
                        *(volume for volume, _ in files),
                    ],
                ),
            ),
        ),
    )
    service = k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=metadata(),
        spec=k8s.V1ServiceSpec(
            selector=_pod_selector(endpoint.name, config.instance),
            ports=[
                k8s.V1ServicePort(
                    name="grpc", port=GRPC_PORT, target_port="grpc", app_protocol="grpc"
                )
            ],
        ),
    )
    autoscaler = k8s.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=metadata(),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=name
            ),
            min_replicas=config.min_replicas,
            max_replicas=config.max_replicas,
            metrics=[
                k8s.V2MetricSpec(
                    type="Resource",
                    resource=k8s.V2ResourceMetricSource(
                        name="cpu",
                        target=k8s.V2MetricTarget(
                            type="Utilization", average_utilization=config.target_cpu_percent
                        ),
                    ),
                )
            ],
        ),
    )
    # As the chart's own pods (values.yaml pdb): voluntary evictions (node drains) take one pod
    # at a time. maxUnavailable, not minAvailable: with a single replica, minAvailable 1 would
    # block every drain of its node forever; this lets it go, and with more replicas keeps the
    # others serving while one moves.
    budget = k8s.V1PodDisruptionBudget(
        api_version="policy/v1",
        kind="PodDisruptionBudget",
        metadata=metadata(),
        spec=k8s.V1PodDisruptionBudgetSpec(
            max_unavailable=1,
            selector=k8s.V1LabelSelector(
                match_labels=_pod_selector(endpoint.name, config.instance)
            ),
        ),
    )
    objects: list[Any] = [deployment, service, autoscaler, budget]
    serializer = k8s.ApiClient()
    for obj in objects:
        body = json.dumps(serializer.sanitize_for_serialization(obj), sort_keys=True)
        obj.metadata.annotations = {APPLIED: hashlib.sha256(body.encode()).hexdigest()[:16]}
    return objects


def _selector_of(deployment: Any) -> dict[str, str]:
    return dict(deployment.spec.selector.match_labels or {})


@dataclass
class ReconcileResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


class EndpointController:
    """Make the cluster hold exactly one Deployment/Service/HPA set per endpoint."""

    def __init__(
        self,
        api: k8s.ApiClient,
        config: ClusterConfig,
        endpoints: Callable[[], list[Endpoint]],
        resync_seconds: float = 30.0,
    ) -> None:
        self.config = config
        self._endpoints = endpoints
        self._apps = k8s.AppsV1Api(api)
        self._core = k8s.CoreV1Api(api)
        self._scaling = k8s.AutoscalingV2Api(api)
        self._policy = k8s.PolicyV1Api(api)
        self._resync = resync_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _kinds(self) -> dict[str, tuple[Callable[..., Any], ...]]:
        """Read, create, replace, delete and list of each kind the controller owns, bound to
        its namespace; the client names them all `<verb>_namespaced_<kind>`."""
        ns = self.config.namespace
        labels = selector(self.config)

        def verbs(api: Any, kind: str) -> tuple[Callable[..., Any], ...]:
            def call(verb: str) -> Callable[..., Any]:
                return getattr(api, f"{verb}_namespaced_{kind}")

            return (
                lambda name: call("read")(name, ns),
                lambda body: call("create")(ns, body),
                lambda name, body: call("replace")(name, ns, body),
                lambda name: call("delete")(name, ns),
                lambda: call("list")(ns, label_selector=labels).items,
            )

        return {
            "Deployment": verbs(self._apps, "deployment"),
            "Service": verbs(self._core, "service"),
            "HorizontalPodAutoscaler": verbs(self._scaling, "horizontal_pod_autoscaler"),
            "PodDisruptionBudget": verbs(self._policy, "pod_disruption_budget"),
        }

    def reconcile(self) -> ReconcileResult:
        result = ReconcileResult()
        kinds = self._kinds()
        desired = {e.name: build_objects(e, self.config) for e in self._endpoints()}
        for objects in desired.values():
            for obj in objects:
                read, create, replace, delete, _list = kinds[obj.kind]
                name = obj.metadata.name
                try:
                    current = read(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    create(obj)
                    result.created.append(f"{obj.kind}/{name}")
                    continue
                applied = (current.metadata.annotations or {}).get(APPLIED)
                if obj.kind == "Deployment" and _selector_of(current) != _selector_of(obj):
                    # A Deployment's selector cannot change (a controller from before
                    # INSTANCE_LABEL made it): make it anew.
                    delete(name)
                    create(obj)
                    result.updated.append(f"{obj.kind}/{name}")
                elif applied != obj.metadata.annotations[APPLIED]:
                    obj.metadata.resource_version = current.metadata.resource_version
                    replace(name, obj)
                    result.updated.append(f"{obj.kind}/{name}")
        for kind, (_read, _create, _replace, delete, list_all) in kinds.items():
            for existing in list_all():
                owner = (existing.metadata.labels or {}).get(ENDPOINT_LABEL)
                if owner not in desired:
                    delete(existing.metadata.name)
                    result.deleted.append(f"{kind}/{existing.metadata.name}")
        if result.created or result.updated or result.deleted:
            log.info("reconciled endpoints: %s", result)
        return result

    def trigger(self) -> None:
        """Reconcile soon (an endpoint changed)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="modelyard-endpoint-controller", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("reconciling endpoints failed; retrying")
            self._wake.wait(self._resync)
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
