"""The Helm chart, rendered by Helm itself (helm-python-sdk bundles Helm's Go SDK), and parsed.

Rendering is offline: `lookup` finds nothing, as on a first install. Renders are cached per
values file for the session, since every test reads the same few.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.services.common.settings import Settings
from modelyard.services.serving.app import cluster_config
from modelyard.services.serving.cluster import build_objects
from tests.conftest import require
from tests.fake_kube import FakeKube

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "modelyard"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# The default values, and every example values file.
VALUE_SETS = ["default", *(p.stem for p in EXAMPLES)]
# Validated against the oldest the chart declares (Chart.yaml kubeVersion), an older, a recent
# and the newest Kubernetes kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.25.0", "1.30.0", "1.33.0", "1.37.0"]
RELEASE, NAMESPACE = "modelyard", "ml"
WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}


def helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:
        require(False, f"helm-python-sdk is not installed (pip install helm-python-sdk): {exc}")
    return helm_python


def values_of(name: str) -> dict[str, Any] | None:
    if name == "default":
        return None
    return yaml.safe_load((CHART / "examples" / f"{name}.yaml").read_text())


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: its objects (hooks included) and NOTES.txt."""

    objects: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert found, f"no {kind}/{name} in {[o['metadata']['name'] for o in self.of_kind(kind)]}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in WORKLOADS]


def render(values: dict[str, Any] | None = None, **options: Any) -> Rendered:
    """Render the chart as `helm install modelyard -n ml` would; raises Helm's errors."""
    h = helm()
    with h.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, **options)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects, notes)


@pytest.fixture(scope="session", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate parses its (megabytes of) schema files on every call; read each once."""
    from kubernetes_validate import utils

    with pytest.MonkeyPatch.context() as patch:
        if hasattr(utils, "schema_contents"):
            patch.setattr(utils, "schema_contents", cache(utils.schema_contents))
        yield


@cache
def _rendered(name: str) -> Rendered:
    return render(values_of(name))


@pytest.fixture(params=VALUE_SETS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """The chart rendered with the default values and with each example values file."""
    return _rendered(request.param)


@pytest.fixture
def default() -> Rendered:
    return _rendered("default")


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    return (
        spec["jobTemplate"]["spec"]["template"]
        if workload["kind"] == "CronJob"
        else spec["template"]
    )


def key_job_secrets(out: Rendered) -> dict[str, dict[str, str]]:
    """The Secrets the chart's key hook Job makes on a fresh install, decoded: files/bootstrap.py
    run with the rendered Job's arguments against a fake Kubernetes API."""
    import base64
    import importlib.util

    spec = importlib.util.spec_from_file_location("chart_bootstrap", CHART / "files/bootstrap.py")
    assert spec and spec.loader
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    (container,) = pod_spec(out.get("Job", f"{RELEASE}-keys"))["containers"]
    fake = FakeKube().start()
    try:
        configuration = k8s.Configuration()
        configuration.host = fake.url
        with k8s.ApiClient(configuration) as api:
            assert bootstrap.main(container["command"][3:], api=api, namespace=NAMESPACE) == 0
        return {
            name: {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
            for (_, name), s in fake.secrets.items()
        }
    finally:
        fake.stop()


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return pod_template(workload)["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def controller_objects(out: Rendered, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the serving pod's controller builds for an endpoint, configured by the environment
    the chart gives that pod: its ConfigMap (envFrom) and its own env values."""
    (serving,) = [
        d for d in out.of_kind("Deployment") if d["metadata"]["name"].endswith("-serving")
    ]
    (container,) = pod_spec(serving)["containers"]
    (config_map,) = [e["configMapRef"]["name"] for e in container["envFrom"]]
    environment = {**out.get("ConfigMap", config_map)["data"], **env_of(container)}
    with monkeypatch.context() as patch:
        for name, value in environment.items():
            if name.startswith("MODELYARD_") and isinstance(value, str):
                patch.setenv(name, value)
        config = cluster_config(Settings(), NAMESPACE)
    endpoint = Endpoint("fraud", (ServedModel("models:/fraud/1", 100, name="fraud-1", version=1),))
    serializer = k8s.ApiClient()
    return [serializer.sanitize_for_serialization(o) for o in build_objects(endpoint, config)]
