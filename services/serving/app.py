"""Wiring of the serving service."""

from __future__ import annotations

from pathlib import Path

from modelyard._gen.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from modelyard._gen.serving.v1 import serving_pb2, serving_pb2_grpc
from modelyard.client.registry import RegistryClient
from modelyard.features.client import FeatureStoreClient
from modelyard.services.common import identity
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import ServiceAccess, check
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import prepare, upgrade
from modelyard.services.common.peer import Peer
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings
from modelyard.services.serving.access import INFERENCE_RULES, SERVING_RULES
from modelyard.services.serving.authorizer import ServingAuthorizer
from modelyard.services.serving.cluster import (
    ClusterConfig,
    EndpointController,
    pod_secret_files,
    secret_volumes,
)
from modelyard.services.serving.inference_log import InferenceLogWriter
from modelyard.services.serving.loader import ModelLoader
from modelyard.services.serving.oip_servicer import InferenceServicer
from modelyard.services.serving.service import ServingService
from modelyard.services.serving.servicer import ServingServicer
from modelyard.services.serving.store.schema import endpoint_permissions
from modelyard.services.serving.store.sql import SqlServingStore
from modelyard.services.serving.watcher import RegistryWatcher

SERVICE = "serving"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
INFERENCE_NAME = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def migrate(db: Database) -> None:
    upgrade(db, SERVICE, MIGRATIONS)


def cluster_config(settings: Settings, namespace: str) -> ClusterConfig:
    """What the endpoint controller makes pods with: serving.cluster, plus this process's own
    health port (endpoint pods get the same environment, so they open it too)."""
    cluster = settings.serving.cluster
    config = ClusterConfig(
        namespace=namespace,
        instance=cluster.instance,
        image=cluster.image,
        image_pull_policy=cluster.image_pull_policy,
        pod_security_context=dict(cluster.pod_security_context),
        service_account=cluster.service_account,
        env_secret=cluster.env_secret,
        secret_files=cluster.secret_files,
        service_token_secret=cluster.service_token_secret,
        pod_annotations=cluster.pod_annotations,
        health_port=settings.health_port,
        grace_period=settings.grace_period,
        registry_uri=cluster.registry_uri,
        features_uri=cluster.features_uri,
        min_replicas=cluster.min_replicas,
        max_replicas=cluster.max_replicas,
        target_cpu_percent=cluster.target_cpu_percent,
        requests=cluster.requests,
        limits=cluster.limits,
        node_selector=dict(cluster.node_selector),
        tolerations=[dict(t) for t in cluster.tolerations],
    )
    secret_volumes(pod_secret_files(config))  # a mistake there stops start-up, not a reconcile
    return config


def _controller(settings: Settings, service: ServingService) -> EndpointController | None:
    """In a cluster, each endpoint also runs as its own Deployment (serving.cluster.enabled)."""
    cluster = settings.serving.cluster
    if not cluster.enabled:
        return None
    from kubernetes import client, config

    config.load_incluster_config()
    namespace = cluster.namespace or Path(_NAMESPACE_FILE).read_text().strip()
    controller = EndpointController(
        client.ApiClient(),
        cluster_config(settings, namespace),
        service.list_endpoints,
        cluster.resync_seconds,
    )
    service.on_change(controller.trigger)
    return controller


def build(settings: Settings, runtime: Runtime) -> ServiceRegistration:
    db = Database.from_settings(settings)
    prepare(db, SERVICE, MIGRATIONS, settings.migrate_on_start)
    store = SqlServingStore(db)
    registry = Peer(
        runtime,
        settings.serving.registry_uri,
        SERVICE,
        RegistryClient,
        "serving has no registry to load models from; set MODELYARD_SERVING__REGISTRY_URI",
    )
    features = Peer(
        runtime,
        settings.serving.features_uri,
        SERVICE,
        lambda transport: FeatureStoreClient(transport=transport),
        "serving has no feature store to look features up in; set MODELYARD_SERVING__FEATURES_URI",
    )
    cache = settings.serving.cache_dir or settings.home_dir / "model-cache"
    loader = ModelLoader(registry.service, cache, features.service)
    grants = GrantStore(db, endpoint_permissions)
    log_writer = InferenceLogWriter(store.record_inferences)
    only = set(settings.serving.endpoints) if settings.serving.endpoints is not None else None
    service = ServingService(
        store,
        loader,
        grants,
        registry.caller,
        log_writer,
        settings.serving.load_workers,
        only,
    )
    controller = _controller(settings, service)
    watcher = RegistryWatcher(registry.service, service.model_changed)
    authorizer = ServingAuthorizer(grants, lambda name: name in service._runtimes)
    serving_servicer = ServingServicer(service)
    infer_rule = INFERENCE_RULES["ModelInfer"]
    inference_servicer = InferenceServicer(
        service,
        lambda request: check(infer_rule, identity.current(), request, authorizer),
        stream_window=settings.serving.stream_window,
        stream_workers=settings.serving.stream_workers,
        max_message_bytes=settings.max_message_bytes,
    )

    def register(server) -> None:
        serving_pb2_grpc.add_ServingServiceServicer_to_server(serving_servicer, server)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            inference_servicer, server
        )

    def on_start(address: str) -> None:
        registry.connect(address)
        features.connect(address)
        service.start()
        watcher.start()
        if controller is not None:
            controller.start()

    def drain() -> None:
        watcher.close()  # before the registry ends its feed, so the watcher does not reconnect
        service.end_watches()

    def close() -> None:
        if controller is not None:
            controller.close()
        watcher.close()
        service.close()
        inference_servicer.close()
        log_writer.close()
        registry.close()
        features.close()
        store.close()

    return ServiceRegistration(
        service_names=(SERVICE_NAME, INFERENCE_NAME),
        descriptor_pool=grpc_predict_v2_pb2.DESCRIPTOR.pool,  # the OIP's private pool
        register=register,
        close=close,
        drain=drain,
        on_start=on_start,
        # An endpoint's own pods are ready once its models are loaded (their readiness probe).
        follow_ready=service.follow_answers if only is not None else None,
        # A stream's request that does not parse is answered as that request's error (Triton's
        # error_message), and the stream goes on.
        per_message_errors=frozenset({f"/{INFERENCE_NAME}/ModelStreamInfer"}),
        access={
            SERVICE_NAME: ServiceAccess(SERVING_RULES, authorizer),
            INFERENCE_NAME: ServiceAccess(INFERENCE_RULES, authorizer),
        },
    )
