"""The chart's side of the serving endpoint controller: what its endpoint pods run as."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client as k8s

from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.services.common.settings import Settings
from modelyard.services.serving.app import cluster_config
from modelyard.services.serving.cluster import build_objects
from tests.helm.conftest import NAMESPACE, Rendered, containers, env_of, render

CONTROLLER = {"dev": {"enabled": True}, "services": {"serving": {"controller": {"enabled": True}}}}


def _endpoint_deployment(out: Rendered, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Deployment the serving pod's controller would make for an endpoint, configured by the
    environment the chart gives that pod."""
    (serving,) = [
        d for d in out.of_kind("Deployment") if d["metadata"]["name"].endswith("-serving")
    ]
    with monkeypatch.context() as patch:
        for name, value in env_of(containers(serving)[0]).items():
            if name.startswith("MODELYARD_SERVING__CLUSTER__") and isinstance(value, str):
                patch.setenv(name, value)
        config = cluster_config(Settings(), NAMESPACE)
    endpoint = Endpoint("fraud", (ServedModel("models:/fraud/1", 100, name="fraud-1", version=1),))
    deployment = build_objects(endpoint, config)[0]
    data: dict[str, Any] = k8s.ApiClient().sanitize_for_serialization(deployment)
    return data


def test_endpoint_pods_pull_with_the_charts_pull_secrets(monkeypatch: pytest.MonkeyPatch):
    """Endpoint pods name no pull secrets of their own: their ServiceAccount must carry them, or
    they cannot pull the image from a private registry."""
    out = render({**CONTROLLER, "imagePullSecrets": [{"name": "regcred"}]})
    pod = _endpoint_deployment(out, monkeypatch)["spec"]["template"]["spec"]
    account = out.get("ServiceAccount", pod["serviceAccountName"])
    kubernetes_validate.validate(account, "1.37.0", strict=True)
    assert pod.get("imagePullSecrets", account.get("imagePullSecrets")) == [{"name": "regcred"}]
    assert "imagePullSecrets" not in render(CONTROLLER).get("ServiceAccount", "modelyard-endpoint")
