"""The Helm chart renders, lints and validates, and every pod it makes is one a platform team
would admit: the Pod Security "restricted" profile, probes, resources, least privilege."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import require
from tests.helm.conftest import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    Rendered,
    containers,
    env_of,
    helm,
    key_job_secrets,
    pod_spec,
    pod_template,
    render,
    values_of,
)

GRPC_SERVICES = {
    "auth": "modelyard.auth.v1.AuthService",
    "tracking": "modelyard.tracking.v1.TrackingService",
    "registry": "modelyard.registry.v1.ModelRegistryService",
    "serving": "modelyard.serving.v1.ServingService",
    "features": "modelyard.features.v1.FeatureStoreService",
}
# Volume types the "restricted" profile allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


# -- Helm and Kubernetes accept what the chart renders -------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_api(rendered: Rendered, version: str):
    assert len(rendered.objects) > 10
    for obj in rendered.objects:
        # strict: unknown fields are errors too.
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("values", VALUE_SETS)
@pytest.mark.parametrize("version", ["v1.25.0", "v1.30.0", "v1.37.0"])
def test_helm_lint_is_clean(values: str, version: str):
    report = helm().lint(CHART, values_of(values), strict=True, kube_version=version)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not problems and not report["errors"], report


def test_objects_are_namespaced_and_labelled(rendered: Rendered):
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "ml", meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "modelyard"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "modelyard"
        assert len(meta["name"]) <= 63


RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_carries_the_recommended_labels_and_the_values_labels(name: str):
    """Pods are what `kubectl get pods -l app.kubernetes.io/part-of=modelyard`, cost reports
    and policy engines select: they carry the Kubernetes recommended labels of their workload,
    commonLabels ("every object") and podLabels ("every pod"), and podAnnotations (a sidecar
    opt-out has to reach the hook Jobs too, or they never finish)."""
    extra = {
        "commonLabels": {"team": "ml-platform"},
        "podLabels": {"cost-center": "1234"},
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
    }
    out = render({**(values_of(name) or {}), **extra})
    for workload in out.workloads():
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        template = pod_template(workload)["metadata"]
        labels = template["labels"]
        owner = workload["metadata"]["labels"]
        for label in RECOMMENDED_LABELS:
            assert labels.get(label) == owner[label], (where, label)
        assert labels["team"] == "ml-platform" and labels["cost-center"] == "1234", where
        assert template["annotations"]["sidecar.istio.io/inject"] == "false", where
        selector = workload["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= labels.items(), where
    # podLabels cannot take the labels the Deployments select their pods by.
    clash = render({"podLabels": {"app.kubernetes.io/component": "other"}})
    tracking = clash.get("Deployment", "modelyard-tracking")
    assert pod_template(tracking)["metadata"]["labels"]["app.kubernetes.io/component"] == (
        "tracking"
    )


def test_no_cluster_wide_objects_or_rights(rendered: Rendered):
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "CustomResourceDefinition",
    }


# -- Pod Security "restricted" on every pod -----------------------------------------------------


def test_every_pod_meets_the_restricted_profile(rendered: Rendered):
    workloads = rendered.workloads()
    assert workloads
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("runAsUser", 1) != 0 and pod.get("runAsGroup", 1) != 0, name
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, (name, volume)
        for container in containers(workload):
            where = f"{name} container {container['name']}"
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert not sc.get("privileged"), where
            assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) != 0, where
            assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] in (
                "RuntimeDefault",
                "Localhost",
            ), where
            assert all("hostPort" not in p for p in container.get("ports", [])), where
            # The root filesystem is read-only: whatever is writable is an emptyDir.
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if not mount.get("readOnly"):
                    assert "emptyDir" in volume, (where, mount)
                else:
                    assert "emptyDir" not in volume, (where, mount)


def test_only_the_pods_that_call_the_api_hold_a_token(rendered: Rendered):
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is (
            name == "modelyard-serving" and _controller_on(rendered)
        ), name
        for container in containers(workload):
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            holds_token = "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
            assert holds_token == (container["name"] in ("service-tokens", "keys")), (
                name,
                container,
            )
    for account in rendered.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def _controller_on(rendered: Rendered) -> bool:
    return any(
        env_of(c).get("MODELYARD_SERVING__CLUSTER__ENABLED") == "true"
        for w in rendered.of_kind("Deployment")
        for c in containers(w)
    )


# -- Probes and resources ----------------------------------------------------------------------


def test_every_deployment_has_probes_and_resources(rendered: Rendered):
    for deployment in rendered.of_kind("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert "memory" in resources["limits"], where
    for job in rendered.of_kind("Job"):
        for container in containers(job):
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_services_use_native_grpc_probes_on_a_plaintext_health_port(rendered: Rendered):
    tls = any(
        c.get("data", {}).get("MODELYARD_TLS__CERT_FILE") for c in rendered.of_kind("ConfigMap")
    )
    found = 0
    for deployment in rendered.of_kind("Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in GRPC_SERVICES:
            continue
        found += 1
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"][:2] == ["serve", component]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probe_port = ports["health"] if tls else ports["grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == probe_port, (component, probe)
        assert container["readinessProbe"]["grpc"]["service"] == GRPC_SERVICES[component]
        if tls:
            config = rendered.get("ConfigMap", "modelyard-config")["data"]
            assert config["MODELYARD_HEALTH_PORT"] == str(ports["health"])
    assert found


# -- Secrets, settings and hooks -----------------------------------------------------------------


def test_default_values_reference_secrets_by_name_and_turn_auth_and_tls_on(default: Rendered):
    config = default.get("ConfigMap", "modelyard-config")["data"]
    assert config["MODELYARD_AUTH__ENABLED"] == "true"
    assert config["MODELYARD_TLS__CERT_FILE"] and config["MODELYARD_TLS__CA_FILE"]
    assert config["MODELYARD_MIGRATE_ON_START"] == "false"
    assert config["MODELYARD_LOG_FORMAT"] == "json"
    assert config["MODELYARD_AUTH__AUTH_URI"] == "modelyard-auth:50051"
    assert config["MODELYARD_REGISTRY__TRACKING_URI"] == "modelyard-tracking:50051"
    assert config["MODELYARD_SERVING__REGISTRY_URI"] == "modelyard-registry:50051"
    # No secret value in a ConfigMap, and no chart-made database or S3 Secret.
    assert not {"MODELYARD_BACKEND_STORE_URI", "MODELYARD_S3__SECRET_KEY"} & config.keys()
    assert not {"modelyard-database", "modelyard-s3"} & default.names("Secret")
    tracking = pod_spec(default.get("Deployment", "modelyard-tracking"))["containers"][0]
    env = env_of(tracking)
    assert env["MODELYARD_BACKEND_STORE_URI"]["secretKeyRef"] == {
        "name": "modelyard-database",
        "key": "url",
    }
    assert env["MODELYARD_S3__ACCESS_KEY"]["secretKeyRef"]["name"] == "modelyard-s3"
    # The service token is a mounted file (whole volume, no subPath), which the kubelet updates
    # when the token is renewed; an environment variable would keep the one the pod started with.
    assert "MODELYARD_AUTH__SERVICE_TOKEN" not in env
    assert env["MODELYARD_AUTH__SERVICE_TOKEN_FILE"] == "/etc/modelyard/service-token/token"
    (volume,) = [
        v
        for v in pod_spec(default.get("Deployment", "modelyard-tracking"))["volumes"]
        if v["name"] == "service-token"
    ]
    assert volume["secret"]["secretName"] == "modelyard-service-tokens"
    assert volume["secret"]["items"] == [{"key": "tracking", "path": "token"}]
    (mount,) = [m for m in tracking["volumeMounts"] if m["name"] == "service-token"]
    assert mount["mountPath"] == "/etc/modelyard/service-token" and "subPath" not in mount


def test_only_the_auth_pod_holds_the_private_signing_key(default: Rendered):
    for deployment in default.of_kind("Deployment"):
        for volume in pod_spec(deployment).get("volumes", []):
            if volume["name"] == "signing-key":
                paths = {i["path"] for i in volume["secret"]["items"]}
                auth = deployment["metadata"]["name"] == "modelyard-auth"
                assert paths == ({"private.pem", "public.pem"} if auth else {"public.pem"})


def test_migrations_run_as_a_hook_before_install_and_upgrade(default: Rendered):
    job = default.get("Job", "modelyard-migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert env_of(container)["MODELYARD_BACKEND_STORE_URI"]["secretKeyRef"]["name"] == (
        "modelyard-database"
    )
    # The key Job runs first; anything a hook uses is itself a hook that exists before it.
    keys = default.get("Job", "modelyard-keys")["metadata"]["annotations"]
    assert int(keys["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    for name in ("modelyard-keys", "modelyard-migrations"):
        account = default.get("ServiceAccount", name)["metadata"]["annotations"]
        assert int(account["helm.sh/hook-weight"]) < int(keys["helm.sh/hook-weight"])


def test_dev_profile_brings_its_own_dependencies_and_migrates_at_start():
    dev = render(values_of("dev"))
    assert {"modelyard-postgresql", "modelyard-minio", "modelyard-redis"} <= dev.names("Deployment")
    for name in ("modelyard-postgresql", "modelyard-minio", "modelyard-redis"):
        assert pod_spec(dev.get("Deployment", name))["containers"][0]["image"].startswith(
            ("docker.io/library/", "quay.io/minio/")
        )
    config = dev.get("ConfigMap", "modelyard-config")["data"]
    assert config["MODELYARD_MIGRATE_ON_START"] == "true"
    assert config["MODELYARD_S3__ENDPOINT"] == "http://modelyard-minio:9000"
    # The database does not exist before install: the Job migrates before upgrades only.
    job = dev.get("Job", "modelyard-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    # The key hook Job makes the database Secret (once) before the migrations Job and the
    # PostgreSQL pod that use it (tests/helm/test_bootstrap.py checks what it makes).
    keys = dev.get("Job", "modelyard-keys")["metadata"]["annotations"]
    assert "pre-install" in keys["helm.sh/hook"]
    weight = job["metadata"]["annotations"].get("helm.sh/hook-weight", "0")
    assert int(keys["helm.sh/hook-weight"]) < int(weight)
    assert "modelyard-database" not in dev.names("Secret")


def test_inline_values_become_chart_secrets():
    out = render(
        {
            "database": {"url": "postgresql://u:p@db.internal:5432/modelyard"},
            "s3": {"accessKey": "AKIA", "secretKey": "s3cr3t"},
        }
    )
    database = out.get("Secret", "modelyard-database")
    assert (
        base64.b64decode(database["data"]["url"]) == b"postgresql://u:p@db.internal:5432/modelyard"
    )
    s3 = out.get("Secret", "modelyard-s3")
    assert base64.b64decode(s3["data"]["secretKey"]) == b"s3cr3t"
    env = env_of(pod_spec(out.get("Deployment", "modelyard-registry"))["containers"][0])
    assert env["MODELYARD_S3__SECRET_KEY"]["secretKeyRef"] == {
        "name": "modelyard-s3",
        "key": "secretKey",
    }


@pytest.mark.parametrize("name", VALUE_SETS)
def test_a_render_without_a_cluster_is_the_same_every_time(name: str):
    """`helm template` and Argo CD render without a cluster, where `lookup` finds nothing: a
    template that makes a secret (CA, certificate, cookie key, the dev profile's database, MinIO
    and Redis passwords) would make a new one on every render, and every sync would apply it;
    the dev databases would then refuse the services. The key hook Job makes those once."""
    first, second = render(values_of(name)), render(values_of(name))

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    assert sorted(map(key, first.objects)) == sorted(map(key, second.objects))
    again = {key(o): o for o in second.objects}
    assert {key(o) for o in first.objects if o != again[key(o)]} == set()
    generated = {"modelyard-tls", "modelyard-ui"}
    if (values_of(name) or {}).get("dev", {}).get("enabled", False):
        generated |= {
            "modelyard-database",
            "modelyard-s3",
            "modelyard-redis",
            "modelyard-endpoint-env",
        }
    assert not first.names("Secret") & generated


# -- Serving: autoscaling, disruption budgets, the endpoint controller's rights -------------------


def test_serving_autoscales_and_every_service_has_a_disruption_budget(default: Rendered):
    hpa = default.get("HorizontalPodAutoscaler", "modelyard-serving")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "modelyard-serving",
    }
    assert "replicas" not in default.get("Deployment", "modelyard-serving")["spec"]
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in default.of_kind("PodDisruptionBudget")
    }
    assert budgets == {"auth", "tracking", "registry", "serving", "features", "ui", "gateway"}
    for budget in default.of_kind("PodDisruptionBudget"):
        # maxUnavailable never blocks draining a node, whatever the replica count.
        assert budget["spec"]["maxUnavailable"] == 1


def test_endpoint_controller_gets_exactly_the_rights_it_uses():
    out = render(values_of("auth-off"))
    role = out.get("Role", "modelyard-endpoint-controller")
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    verbs = {"get", "list", "create", "update", "delete"}
    assert rules == {
        ("apps", "deployments"): verbs,
        ("", "services"): verbs,
        ("autoscaling", "horizontalpodautoscalers"): verbs,
        ("policy", "poddisruptionbudgets"): verbs,
    }
    binding = out.get("RoleBinding", "modelyard-endpoint-controller")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "modelyard-serving", "namespace": "ml"}
    ]
    env = env_of(pod_spec(out.get("Deployment", "modelyard-serving"))["containers"][0])
    assert env["MODELYARD_SERVING__CLUSTER__SERVICE_ACCOUNT"] == "modelyard-endpoint"
    assert env["MODELYARD_SERVING__CLUSTER__ENV_SECRET"] == "modelyard-endpoint-env"
    endpoint_env = key_job_secrets(out)["modelyard-endpoint-env"]
    assert endpoint_env["MODELYARD_BACKEND_STORE_URI"].startswith("postgresql://modelyard:")
    assert endpoint_env["MODELYARD_MIGRATE_ON_START"] == "false"
    # Without the controller nobody may touch the API but the token bootstrap.
    default_roles = render().of_kind("Role")
    assert {r["metadata"]["name"] for r in default_roles} >= {"modelyard-service-tokens"}
    for role in default_roles:
        for rule in role["rules"]:
            assert rule["resources"] == ["secrets"]


def test_token_bootstrap_may_touch_only_its_secrets(default: Rendered):
    role = default.get("Role", "modelyard-service-tokens")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["modelyard-service-tokens"],
            "verbs": ["get", "update"],
        }
    ]
    auth = default.get("Deployment", "modelyard-auth")
    (init,) = pod_spec(auth)["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    assert init["command"][3:] == [
        "service-tokens",
        "--secret=modelyard-service-tokens",
        "--services=tracking,registry,serving,features",
    ]
    assert init["command"][2] == (CHART / "files" / "bootstrap.py").read_text()


# -- Gateway, ingress and NOTES -------------------------------------------------------------------


def test_gateway_routes_each_grpc_service_to_its_deployment(default: Rendered):
    envoy = yaml.safe_load(default.get("ConfigMap", "modelyard-gateway")["data"]["envoy.yaml"])
    listener = envoy["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    table = {r["match"]["prefix"]: r["route"]["cluster"] for r in routes}
    assert table == {
        "/modelyard.auth.v1.AuthService/": "auth",
        "/modelyard.tracking.v1.TrackingService/": "tracking",
        "/modelyard.registry.v1.ModelRegistryService/": "registry",
        "/modelyard.serving.v1.ServingService/": "serving",
        "/inference.GRPCInferenceService/": "serving",
        "/modelyard.features.v1.FeatureStoreService/": "features",
    }
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    address = clusters["tracking"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    # Per-pod balancing through the headless Service, TLS checked against the service's name.
    assert address["endpoint"]["address"]["socket_address"]["address"] == (
        "modelyard-tracking-pods.ml.svc.cluster.local"
    )
    assert default.get("Service", "modelyard-tracking-pods")["spec"]["clusterIP"] == "None"
    tls = clusters["tracking"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "modelyard-tracking"


ENVOY_TYPES = [
    "envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3",
    "envoy_data_plane.envoy.extensions.filters.http.router.v3",
    "envoy_data_plane.envoy.extensions.filters.http.health_check.v3",
    "envoy_data_plane.envoy.extensions.transport_sockets.tls.v3",
    "envoy_data_plane.envoy.extensions.upstreams.http.v3",
]


def check_envoy_configs(rendered: Rendered) -> int:
    """Parse every Envoy configuration with Envoy's API types; return how many there were."""
    import importlib

    try:
        from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

        for module in ENVOY_TYPES:  # registers the typed_config message types
            importlib.import_module(module)
    except ImportError as exc:
        require(False, f"envoy-data-plane is not installed (Envoy's API types): {exc}")
    configs = [c for c in rendered.of_kind("ConfigMap") if "envoy.yaml" in c.get("data", {})]
    for config in configs:
        # Strict: an unknown field or enum value raises, as Envoy itself would refuse it.
        Bootstrap.from_dict(yaml.safe_load(config["data"]["envoy.yaml"]))
    return len(configs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydantic notes inside the package
def test_gateway_configuration_is_valid_for_envoy(rendered: Rendered):
    assert check_envoy_configs(rendered) == (
        1 if rendered.names("Deployment") & {"modelyard-gateway"} else 0
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gateway_reads_a_renewed_certificate_without_a_restart(default: Rendered):
    """Envoy reads static tls_certificates once: with a certificate cert-manager renews
    (tls.existingSecret), the gateway presented the old one until it expired. Through file-based
    SDS watching the TLS mount, the kubelet's swap of the renewed files reloads it."""
    check_envoy_configs(default)  # registers Envoy's types
    from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret

    data = default.get("ConfigMap", "modelyard-gateway")["data"]
    envoy = yaml.safe_load(data["envoy.yaml"])
    listener = envoy["static_resources"]["listeners"][0]
    context = listener["filter_chains"][0]["transport_socket"]["typed_config"]
    common = context["common_tls_context"]
    assert "tls_certificates" not in common
    (sds,) = common["tls_certificate_sds_secret_configs"]
    source = sds["sds_config"]["path_config_source"]
    pod = pod_spec(default.get("Deployment", "modelyard-gateway"))
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The watched directory is where the TLS Secret is mounted (whole, so the kubelet swaps it).
    assert source["watched_directory"]["path"] == mounts["tls"] == "/etc/modelyard/tls"
    assert volumes["tls"]["secret"]["secretName"] == "modelyard-tls"
    # The SDS file is in the gateway's ConfigMap, and names the mounted key and certificate.
    directory, _, key = source["path"].rpartition("/")
    assert directory == mounts["config"] and volumes["config"]["configMap"]["name"] == (
        "modelyard-gateway"
    )
    (resource,) = yaml.safe_load(data[key])["resources"]
    assert resource.pop("@type") == (
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    )
    secret = Secret.from_dict(resource)  # strict, as Envoy reads it
    assert secret.name == sds["name"]
    certificate = secret.tls_certificate
    assert certificate and certificate.certificate_chain and certificate.private_key
    assert certificate.certificate_chain.filename == f"{mounts['tls']}/tls.crt"
    assert certificate.private_key.filename == f"{mounts['tls']}/tls.key"
    # A changed certificate file name rolls the gateway pods, as a changed envoy.yaml does.
    annotations = default.get("Deployment", "modelyard-gateway")["spec"]["template"]["metadata"]
    assert annotations["annotations"]["checksum/envoy"]
    assert (
        "tls-certificate.yaml"
        not in render({"tls": {"enabled": False}}).get("ConfigMap", "modelyard-gateway")["data"]
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gateway_configuration_check_is_strict(default: Rendered):
    config = yaml.safe_load(default.get("ConfigMap", "modelyard-gateway")["data"]["envoy.yaml"])
    config["static_resources"]["clusters"][0]["dns_refresh_rat"] = "5s"
    bad = {"kind": "ConfigMap", "data": {"envoy.yaml": yaml.safe_dump(config)}}
    with pytest.raises(KeyError, match="dns_refresh_rat"):
        check_envoy_configs(Rendered([bad], ""))


def test_ingress_sends_grpc_to_the_gateway():
    out = render(values_of("production"))
    (ingress,) = out.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "modelyard.acme.example"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "modelyard-gateway", "port": {"name": "grpc"}}
    # Without the gateway, each gRPC service's path goes to its own Service.
    production = values_of("production")
    assert production is not None  # an example file's values (only "default" has none)
    # (The UI needs the gateway, so it goes too.)
    services = {**production["services"], "ui": {**production["services"]["ui"], "enabled": False}}
    direct = render({**production, "services": services, "gateway": {"enabled": False}})
    (ingress,) = direct.of_kind("Ingress")
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths["/modelyard.registry.v1.ModelRegistryService"] == "modelyard-registry"
    assert paths["/inference.GRPCInferenceService"] == "modelyard-serving"


def test_notes_tell_how_to_connect(rendered: Rendered):
    notes = rendered.notes
    assert re.search(r"kubectl -n ml port-forward svc/modelyard-\w+ 50051:50051", notes)
    assert "export MODELYARD_URI=" in notes


def test_notes_for_the_default_values(default: Rendered):
    assert "export MODELYARD_URI=grpcs://localhost:50051" in default.notes
    assert "MODELYARD_TLS_CA" in default.notes
    assert "modelyard admin bootstrap" in default.notes


# -- Bad values fail at install time --------------------------------------------------------------

BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"replicaCount": 3}),
    ("misspelt service", {"services": {"trackng": {"enabled": True}}}),
    ("replicas not a number", {"services": {"tracking": {"replicas": "two"}}}),
    ("zero replicas", {"services": {"registry": {"replicas": 0}}}),
    ("auth flag as a string", {"auth": {"enabled": "yes"}}),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}),
    ("bad digest", {"image": {"digest": "md5:abc"}}),
    ("artifacts not on S3", {"artifacts": {"uri": "file:///data"}}),
    ("database URL not PostgreSQL", {"database": {"url": "mysql://db/modelyard"}}),
    (
        "bad resource quantity",
        {"services": {"serving": {"resources": {"requests": {"cpu": "lots"}}}}},
    ),
    ("missing memory limit", {"services": {"auth": {"resources": {"limits": {"memory": None}}}}}),
    ("port out of range", {"service": {"port": 70000}}),
    ("bad log level", {"logLevel": "TRACE"}),
    ("root user", {"securityContext": {"runAsUser": 0}}),
    ("bad network peer", {"networkPolicy": {"clients": [{"namespace": "ingress"}]}}),
    (
        "HPA target over 100",
        {"services": {"serving": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}}},
    ),
    (
        "every service off",
        {
            "services": {
                n: {"enabled": False}
                for n in ("auth", "tracking", "registry", "serving", "features", "ui")
            }
        },
    ),
]


@pytest.mark.parametrize(("case", "values"), BAD_VALUES, ids=[c for c, _ in BAD_VALUES])
def test_schema_rejects_bad_values(case: str, values: dict[str, Any]):
    h = helm()
    with h.Chart.load(CHART) as chart, pytest.raises(h.HelmValuesError):
        chart.validate_schema(values)  # checked over the chart's defaults
    # ...and so does an install, before anything reaches the cluster.
    with pytest.raises(h.HelmValuesError):
        render(values)


def test_schema_accepts_the_default_and_example_values():
    h = helm()
    with h.Chart.load(CHART) as chart:
        for name in VALUE_SETS:
            chart.validate_schema(values_of(name))


RULE_ERRORS: list[tuple[dict[str, Any], str]] = [
    (
        {"services": {"serving": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
        "minReplicas must not exceed maxReplicas",
    ),
    ({"database": {"existingSecret": ""}}, "database.existingSecret or database.url is required"),
    ({"services": {"tracking": {"enabled": False}}}, "services.registry needs services.tracking"),
    (
        {"services": {"auth": {"enabled": False}}},
        "needs services.auth.externalUri",
    ),
    (
        {"services": {"features": {"enabled": True}}, "redis": {"existingSecret": ""}},
        "redis.existingSecret or redis.uri is required",
    ),
    (
        {
            "auth": {"enabled": False},
            "tls": {"enabled": False},
            "services": {"serving": {"controller": {"enabled": True}}},
        },
        "services.serving.controller.envSecret",
    ),
]


@pytest.mark.parametrize(("values", "message"), RULE_ERRORS, ids=[m for _, m in RULE_ERRORS])
def test_inconsistent_values_fail_with_a_message(values: dict[str, Any], message: str):
    h = helm()
    with pytest.raises(h.HelmError, match=re.escape(message)):
        render(values)


def test_the_packaged_chart_renders_like_the_directory(tmp_path, default: Rendered):
    h = helm()
    archive = h.package(CHART, destination=tmp_path)
    assert archive.endswith("modelyard-0.1.0.tgz")
    with h.Chart.load(archive) as chart:
        assert "files/bootstrap.py" in {f["name"] for f in chart.files}
        assert chart.schema is not None
        manifests = chart.render(None, name="modelyard", namespace="ml")
    kinds = sorted(
        o["kind"]
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for o in yaml.safe_load_all(text)
        if isinstance(o, dict)
    )
    assert kinds == sorted(o["kind"] for o in default.objects)


def test_service_tokens_are_renewed_on_a_schedule_while_the_release_runs(default: Rendered):
    """The auth pod's init container renews tokens only when an auth pod starts; a CronJob runs
    the same program, as the auth ServiceAccount (whose Role may update the tokens Secret)."""
    (cronjob,) = default.of_kind("CronJob")
    assert cronjob["spec"]["schedule"] == "17 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cronjob)
    (renewal,) = spec["containers"]
    auth = pod_spec(default.get("Deployment", "modelyard-auth"))
    (init,) = auth["initContainers"]
    assert renewal["command"] == init["command"]
    assert "--services=tracking,registry,serving,features" in renewal["command"]
    assert env_of(renewal) == env_of(init)
    assert spec["serviceAccountName"] == auth["serviceAccountName"] == "modelyard-auth"
    binding = default.get("RoleBinding", "modelyard-service-tokens")
    assert binding["subjects"][0]["name"] == "modelyard-auth"
    mounts = {m["mountPath"] for m in renewal["volumeMounts"]}
    assert {"/etc/modelyard/signing-key", "/var/run/secrets/kubernetes.io/serviceaccount"} <= mounts

    # Tokens kept by the operator, or no auth at all: nothing to renew.
    for values in (
        {"auth": {"serviceTokens": {"existingSecret": "mine"}}},
        {"auth": {"enabled": False}},
    ):
        assert not render(values).of_kind("CronJob")
    with pytest.raises(Exception, match="renewSchedule"):
        render({"auth": {"serviceTokens": {"renewSchedule": "daily"}}})


def _upgrade_secrets(
    tmp_path: Path, cluster: str, values: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The Secrets an upgrade renders when the cluster holds `cluster` (a template dict of
    name -> object): `lookup` needs a cluster, so a copy of the chart answers it from that."""
    import shutil

    chart = tmp_path / "modelyard"
    shutil.copytree(CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    lookup = 'lookup "v1" "Secret" .ctx.Release.Namespace .name'
    text = helpers.read_text()
    assert text.count(lookup) == 1
    helpers.write_text(text.replace(lookup, f"get {cluster} .name | default dict"))
    with helm().Chart.load(chart) as loaded:
        manifests = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)
    objects = [
        d
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}


def test_secrets_an_older_chart_rendered_stay_release_objects_as_they_are(tmp_path):
    """Upgrading from a chart whose templates made the TLS and cookie-key Secrets: Helm would
    delete a release object the new chart no longer renders, so a Secret the release owns is
    rendered from the cluster as it is; one the key Job made is left to the Job."""
    owned = '(dict "meta.helm.sh/release-name" "modelyard")'
    cluster = (
        f'(dict "modelyard-tls" (dict "metadata" (dict "annotations" {owned}) '
        '"data" (dict "tls.crt" "Q1JU" "tls.key" "S0VZ" "ca.crt" "Q0E=")) '
        '"modelyard-ui" (dict "metadata" (dict "name" "modelyard-ui") '
        '"data" (dict "sessionSecret" "Sk9C")))'
    )
    secrets = _upgrade_secrets(tmp_path, cluster)
    assert secrets["modelyard-tls"]["type"] == "kubernetes.io/tls"
    assert secrets["modelyard-tls"]["data"] == {
        "tls.crt": "Q1JU",
        "tls.key": "S0VZ",
        "ca.crt": "Q0E=",
    }
    assert "modelyard-ui" not in secrets  # the key Job's, not the release's


def test_dev_secrets_an_older_chart_rendered_stay_as_they_are(tmp_path):
    """Upgrading a dev release from a chart whose templates made its passwords: the S3 and Redis
    Secrets (release objects) stay rendered as they are, the endpoint pods' environment is
    rendered from the stored passwords, and the database Secret (a hook) is left in place for the
    Job to find."""
    owned = '"metadata" (dict "annotations" (dict "meta.helm.sh/release-name" "modelyard"))'
    url = base64.b64encode(
        b"postgresql://modelyard:OLD@modelyard-postgresql:5432/modelyard"
    ).decode()
    cluster = (
        f'(dict "modelyard-s3" (dict {owned} "data" (dict "accessKey" "QUs=" "secretKey" "U0s="))'
        f' "modelyard-redis" (dict {owned} "data" (dict "uri" "VVJJ" "password" "UFc="))'
        f' "modelyard-endpoint-env" (dict {owned} "data" (dict "X" "WQ=="))'
        f' "modelyard-database" (dict "metadata" (dict) "data" (dict "url" "{url}")))'
    )
    secrets = _upgrade_secrets(tmp_path, cluster, values_of("dev"))
    assert secrets["modelyard-s3"]["data"] == {"accessKey": "QUs=", "secretKey": "U0s="}
    assert secrets["modelyard-redis"]["data"] == {"uri": "VVJJ", "password": "UFc="}
    env = secrets["modelyard-endpoint-env"]["stringData"]
    assert env["MODELYARD_BACKEND_STORE_URI"] == base64.b64decode(url).decode()
    assert (env["MODELYARD_S3__ACCESS_KEY"], env["MODELYARD_S3__SECRET_KEY"]) == ("AK", "SK")
    assert env["MODELYARD_MIGRATE_ON_START"] == "false"
    assert "modelyard-database" not in secrets
    for version in KUBERNETES_VERSIONS:
        for obj in secrets.values():
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"health": {"port": 50051}}, "health.port and service.port are both 50051"),
        ({"metrics": {"port": 50052}}, "health.port and metrics.port are both 50052"),
        ({"service": {"port": 9464}}, "metrics.port and service.port are both 9464"),
    ],
)
def test_ports_a_pod_listens_on_together_must_differ(values: dict, message: str):
    """Every service pod then failed at start, saying to pick another --port."""
    with pytest.raises(Exception, match=re.escape(message)):
        render(values)
    render({**values, "tls": {"enabled": False}, "metrics": {"enabled": False}})
