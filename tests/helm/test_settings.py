"""The environment the chart gives each Modelyard container is one the server's settings accept
(nested settings forbid unknown keys, so a misnamed variable would stop the pod at start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from modelyard.services.common.settings import Settings
from tests.helm.conftest import (
    Rendered,
    containers,
    key_job_secrets,
    pod_spec,
    render,
    values_of,
)


def environment(rendered: Rendered, container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees: envFrom ConfigMaps and chart-made Secrets, then env
    (other secrets as placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(rendered.get("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            name = source["secretRef"]["name"]
            if name in rendered.names("Secret"):
                env.update(rendered.get("Secret", name)["stringData"])
            else:  # made by the key hook Job
                env.update(key_job_secrets(rendered)[name])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            placeholder = f"secret-{ref['name']}-{ref['key']}"
            if item["name"] == "MODELYARD_BACKEND_STORE_URI":  # settings parse it: a URL it is
                placeholder = f"postgresql://{placeholder}/modelyard"
            env[item["name"]] = placeholder
    return env


def modelyard_containers(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """Containers that build Modelyard's settings (the key Job only talks to the API)."""
    return [
        (f"{w['metadata']['name']}/{c['name']}", c)
        for w in rendered.workloads()
        for c in containers(w)
        if "/modelyard:" in c["image"] and c["name"] != "keys"
    ]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("MODELYARD_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


CALLERS = ("tracking", "registry", "serving", "features")


def files(workload: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
    """path -> "<secret>/<key>" of every Secret file mounted into container c."""
    volumes = {v["name"]: v["secret"] for v in pod_spec(workload)["volumes"] if "secret" in v}
    return {
        f"{m['mountPath']}/{item['path']}": f"{volumes[m['name']]['secretName']}/{item['key']}"
        for m in c["volumeMounts"]
        if m["name"] in volumes and "subPath" not in m
        for item in volumes[m["name"]]["items"]
    }


def test_every_caller_reads_its_own_token_from_a_mounted_file(rendered: Rendered, monkeypatch):
    """A token in the environment is the one the pod started with until it restarts; a mounted
    Secret key is updated in place when the token is renewed, and the service reads it again."""
    checked = []
    for workload in rendered.workloads():
        for c in containers(workload):
            if "/modelyard:" not in c["image"] or c["name"] == "keys":
                continue
            settings = settings_from(environment(rendered, c), monkeypatch)
            assert settings.auth.service_token is None, c["name"]
            if not settings.auth.enabled or c["name"] not in CALLERS:
                continue
            path = settings.auth.service_token_file
            assert path is not None, c["name"]
            assert files(workload, c)[str(path)].endswith(f"/{c['name']}"), c["name"]
            checked.append(c["name"])
    config = rendered.get("ConfigMap", "modelyard-config")["data"]
    auth_on = config["MODELYARD_AUTH__ENABLED"] == "true"
    assert bool(checked) == auth_on


def test_every_container_environment_is_accepted(rendered: Rendered, monkeypatch):
    found = modelyard_containers(rendered)
    assert found
    for name, container in found:
        settings = settings_from(environment(rendered, container), monkeypatch)
        assert settings.log_format == "json", name
        assert settings.home == Path("/var/lib/modelyard"), name
        if container.get("args", [""])[0] != "ui":  # the UI only talks to the services
            assert settings.backend_store_uri.startswith("postgresql://secret-"), name


def test_services_get_their_peers_keys_and_certificates(default: Rendered, monkeypatch):
    by_name = dict(modelyard_containers(default))
    registry = settings_from(
        environment(default, by_name["modelyard-registry/registry"]), monkeypatch
    )
    assert registry.registry.tracking_uri == "modelyard-tracking:50051"
    assert registry.auth.enabled and registry.auth.auth_uri == "modelyard-auth:50051"
    assert registry.auth.public_key_file == Path("/etc/modelyard/signing-key/public.pem")
    assert registry.auth.private_key_file is None
    assert registry.auth.service_token is None
    assert registry.auth.service_token_file == Path("/etc/modelyard/service-token/token")
    assert registry.tls.enabled and registry.tls.ca_file == Path("/etc/modelyard/tls/ca.crt")
    assert registry.metrics_port == 9464 and not registry.migrate_on_start
    assert registry.s3.access_key.get_secret_value() == "secret-modelyard-s3-accessKey"
    serving = settings_from(environment(default, by_name["modelyard-serving/serving"]), monkeypatch)
    assert serving.serving.registry_uri == "modelyard-registry:50051"
    assert serving.serving.features_uri == "modelyard-features:50051"  # lookups by entity key
    assert serving.health_port == 50052  # plaintext health beside TLS, for the kubelet
    assert not serving.serving.cluster.enabled
    auth = settings_from(environment(default, by_name["modelyard-auth/auth"]), monkeypatch)
    assert auth.auth.private_key_file == Path("/etc/modelyard/signing-key/private.pem")
    assert auth.auth.service_token is None


def test_features_and_the_endpoint_controller_are_configured(monkeypatch):
    production = render(values_of("production"))
    by_name = dict(modelyard_containers(production))
    features = settings_from(
        environment(production, by_name["modelyard-features/features"]), monkeypatch
    )
    assert features.features.online_store_uri == "secret-modelyard-redis-uri"
    assert features.s3.endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert features.artifact_uri == "s3://acme-ml-artifacts/modelyard"
    assert features.features.source_locations == ["s3://acme-warehouse/features"]

    auth_off = render(values_of("auth-off"))
    by_name = dict(modelyard_containers(auth_off))
    serving = settings_from(
        environment(auth_off, by_name["modelyard-serving/serving"]), monkeypatch
    )
    cluster = serving.serving.cluster
    assert cluster.enabled and cluster.env_secret == "modelyard-endpoint-env"
    assert cluster.image == "ghcr.io/modelyard/modelyard:0.1.0"
    assert cluster.registry_uri == "modelyard-registry:50051"
    assert not serving.auth.enabled and not serving.tls.enabled
    # Endpoint pods get their whole environment from the chart's Secret.
    endpoint_env = key_job_secrets(auth_off)["modelyard-endpoint-env"]
    endpoint = settings_from(endpoint_env, monkeypatch)
    assert endpoint.s3.endpoint == "http://modelyard-minio:9000"
    assert endpoint.backend_store_uri.startswith("postgresql://")


def test_features_duckdb_limits_reach_the_features_pods(monkeypatch):
    """features.duckdb_memory_limit and duckdb_temp_directory had no value in the chart, so a
    cluster's joins took DuckDB's default share of the node's memory."""
    values = values_of("production")
    assert values is not None
    features = values.setdefault("services", {}).setdefault("features", {})
    features |= {"duckdbMemoryLimit": "1GB", "duckdbTempDirectory": "/var/lib/modelyard/spill"}
    production = render(values)
    by_name = dict(modelyard_containers(production))
    settings = settings_from(
        environment(production, by_name["modelyard-features/features"]), monkeypatch
    )
    assert settings.features.duckdb_memory_limit == "1GB"
    assert settings.features.duckdb_temp_directory == Path("/var/lib/modelyard/spill")


def test_ui_reaches_the_services_through_the_gateway(monkeypatch):
    values = values_of("production")
    assert values is not None
    values.setdefault("services", {}).setdefault("ui", {})["externalUri"] = (
        "modelyard.example.com:443"
    )
    production = render(values)
    (container,) = (c for name, c in modelyard_containers(production) if name.endswith("/ui"))
    settings = settings_from(environment(production, container), monkeypatch)
    assert settings.ui.services_uri == "grpcs://modelyard-gateway:50051"
    assert settings.ui.host == "0.0.0.0" and settings.ui.port == 5000
    assert settings.ui.session_secret.get_secret_value() == "secret-modelyard-ui-sessionSecret"
    assert settings.ui.secure_cookies
    # Browsers reach it by ui.externalUri and the Service's names; it refuses other names.
    assert "modelyard.example.com" in settings.ui.allowed_hosts
    assert "modelyard-ui.ml.svc" in settings.ui.allowed_hosts
    assert settings.tls.ca_file == Path("/etc/modelyard/tls/ca.crt")


def test_endpoint_pods_get_the_files_and_identity_of_the_serving_pods(monkeypatch):
    """With auth and TLS on (dev), the controller, configured by the chart, makes endpoint pods
    whose settings point at files it mounts, from the Secrets the serving pods mount them from."""
    from kubernetes import client as k8s

    from modelyard.entities.serving import Endpoint, ServedModel
    from modelyard.services.serving.app import cluster_config
    from modelyard.services.serving.cluster import build_objects

    dev = render(values_of("dev"))
    serving_pod = dev.get("Deployment", "modelyard-serving")
    (serving_container,) = containers(serving_pod)
    serving = settings_from(environment(dev, serving_container), monkeypatch)
    assert serving.auth.enabled and serving.tls.enabled and serving.serving.cluster.enabled
    config = cluster_config(serving, "modelyard")
    fraud = Endpoint("fraud", (ServedModel("models:/fraud@champion", 100, name="fraud"),))
    pod = k8s.ApiClient().sanitize_for_serialization(build_objects(fraud, config)[0])
    (container,) = containers(pod)

    endpoint = settings_from(environment(dev, container), monkeypatch)
    assert endpoint.auth.enabled and endpoint.tls.enabled
    assert endpoint.auth.service_token is None
    assert endpoint.auth.private_key_file is None
    assert endpoint.serving.endpoints == ["fraud"] and not endpoint.serving.cluster.enabled

    mounted = files(pod, container)
    assert mounted[str(endpoint.auth.service_token_file)] == "modelyard-service-tokens/serving"
    needed = [
        endpoint.auth.service_token_file,
        endpoint.auth.public_key_file,
        endpoint.tls.cert_file,
        endpoint.tls.key_file,
        endpoint.tls.ca_file,
    ]
    assert sorted(mounted) == sorted(str(p) for p in needed)
    serving_files = files(serving_pod, serving_container)
    # The same files as the serving pods, but for the token, which is the serving pods' own too.
    assert serving_files[str(serving.auth.service_token_file)] == "modelyard-service-tokens/serving"
    assert all(serving_files[path] == source for path, source in mounted.items())
    assert not any(source.endswith("private.pem") for source in mounted.values())
    probe = container["readinessProbe"]["grpc"]["port"]
    assert probe == endpoint.health_port == serving_container["readinessProbe"]["grpc"]["port"]
