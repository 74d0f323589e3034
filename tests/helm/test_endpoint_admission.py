"""The ValidatingAdmissionPolicy that confines the serving endpoint controller's token to this
release's endpoint objects. Its CEL, as the chart renders it, is evaluated with cel-python against
the objects the real controller builds (all admitted) and against what a model running in the
serving pod could send with that token (all refused)."""

from __future__ import annotations

import copy
import json
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml

from tests.helm.conftest import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    RELEASE,
    Rendered,
    controller_objects,
    helm,
    values_of,
)
from tests.helm.test_ca import CAS

VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
CONTROLLER = {"dev": {"enabled": True}, "services": {"serving": {"controller": {"enabled": True}}}}
SERVING_USER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-serving"
# Values with the controller on: the examples that turn it on, and one with database and S3 CA
# Secrets (more Secrets the endpoint pods mount).
CONTROLLER_VALUES: dict[str, dict[str, Any] | None] = {
    "dev": values_of("dev"),
    "auth-off": values_of("auth-off"),
    "ca-secrets": CAS,
}


def render_with_apis(values: dict[str, Any] | None, api_versions: list[str]) -> Rendered:
    """Render as for a cluster that serves `api_versions` (helm template --api-versions):
    helm-python-sdk's Chart.render does not pass that option on, its native call does."""
    from helm_python import _native
    from helm_python.chart import _dumps

    options = {"name": RELEASE, "namespace": NAMESPACE, "api_versions": api_versions}
    with helm().Chart.load(CHART) as chart:
        manifests = json.loads(
            _native.call_string("helm_render", chart._raw(), _dumps(values), json.dumps(options))
        )
    objects = [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return Rendered(objects, "")


class Policy:
    """The rendered policy, evaluated as the API server would for one admission request."""

    def __init__(self, policy: dict[str, Any]) -> None:
        env = celpy.Environment()
        self.conditions = [
            env.program(env.compile(c["expression"])) for c in policy["spec"]["matchConditions"]
        ]
        self.validations = [
            (env.program(env.compile(v["expression"])), v["message"])
            for v in policy["spec"]["validations"]
        ]

    def refusals(
        self,
        operation: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None = None,
        user: str = SERVING_USER,
    ) -> list[str]:
        """The messages of the failed validations; [] when admitted or not matched."""
        kind = (obj or old or {})["kind"]
        request = {"operation": operation, "kind": {"kind": kind}, "userInfo": {"username": user}}
        activation = {
            "request": celpy.json_to_cel(request),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
        }
        if not all(_true(c, activation) for c in self.conditions):
            return []
        return [message for program, message in self.validations if not _true(program, activation)]


def _true(program: Any, activation: dict[str, Any]) -> bool:
    """Whether an expression holds; an error counts as not (failurePolicy: Fail denies)."""
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError:
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _policy(out: Rendered) -> Policy:
    (policy,) = out.of_kind("ValidatingAdmissionPolicy")
    return Policy(policy)


@pytest.mark.parametrize("example", CONTROLLER_VALUES)
def test_the_controllers_own_objects_are_admitted(example: str, monkeypatch: pytest.MonkeyPatch):
    """Creating, updating and deleting what the controller builds passes every validation."""
    out = render_with_apis(CONTROLLER_VALUES[example], [VAP_API])
    policy = _policy(out)
    objects = controller_objects(out, monkeypatch)
    assert {o["kind"] for o in objects} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects:
        assert policy.refusals("CREATE", obj) == [], obj["kind"]
        assert policy.refusals("UPDATE", obj, old=obj) == [], obj["kind"]
        assert policy.refusals("DELETE", None, old=obj) == [], obj["kind"]


# Which validation's message refuses each hostile Deployment of _hostile.
REFUSED_BY = {
    "auth service account": "ServiceAccount",
    "whole signing-key Secret": "Secret keys",
    "private signing key": "Secret keys",
    "database Secret": "may only read the Secrets",
    "hostPath": "emptyDir volumes",
    "projected token": "emptyDir volumes",
    "automounted token": "automountServiceAccountToken",
    "host network": "host's network",
    "privileged": "unprivileged",
    "added capability": "no added capabilities",
    "other image": "chart's image",
    "envFrom signing key": "may only read the Secrets",
    "pods labelled as auth": "endpoint pods must carry",
    "unlabelled": "labelled as this release's endpoints",
    "a thousand replicas": "at most",
}


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _hostile(out: Rendered, deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Deployments a model running in the serving pod could create with its token."""
    variants = {}
    d = copy.deepcopy(deployment)
    _pod(d)["serviceAccountName"] = f"{RELEASE}-auth"
    variants["auth service account"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["volumes"].append({"name": "key", "secret": {"secretName": f"{RELEASE}-signing-key"}})
    variants["whole signing-key Secret"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["volumes"].append(
        {
            "name": "key",
            "secret": {
                "secretName": f"{RELEASE}-signing-key",
                "items": [{"key": "private.pem", "path": "private.pem"}],
            },
        }
    )
    variants["private signing key"] = d
    d = copy.deepcopy(deployment)
    database = {"name": f"{RELEASE}-database", "key": "url"}
    _pod(d)["containers"][0]["env"].append({"name": "DB", "valueFrom": {"secretKeyRef": database}})
    variants["database Secret"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    variants["hostPath"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["volumes"].append(
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
    )
    variants["projected token"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["automountServiceAccountToken"] = True
    variants["automounted token"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["hostNetwork"] = True
    variants["host network"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["containers"][0]["securityContext"]["privileged"] = True
    variants["privileged"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    variants["added capability"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["containers"][0]["image"] = "attacker.example/shell:latest"
    variants["other image"] = d
    d = copy.deepcopy(deployment)
    _pod(d)["containers"][0]["envFrom"] = [{"secretRef": {"name": f"{RELEASE}-signing-key"}}]
    variants["envFrom signing key"] = d
    d = copy.deepcopy(deployment)
    d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "auth"
    variants["pods labelled as auth"] = d
    d = copy.deepcopy(deployment)
    del d["metadata"]["labels"]["modelyard.io/instance"]
    variants["unlabelled"] = d
    d = copy.deepcopy(deployment)
    d["spec"]["replicas"] = 1000
    variants["a thousand replicas"] = d
    return variants


@pytest.mark.parametrize("example", CONTROLLER_VALUES)
def test_hostile_requests_by_the_serving_token_are_refused(
    example: str, monkeypatch: pytest.MonkeyPatch
):
    out = render_with_apis(CONTROLLER_VALUES[example], [VAP_API])
    policy = _policy(out)
    objects = controller_objects(out, monkeypatch)
    deployment = objects[0]
    hostile = _hostile(out, deployment)
    assert hostile.keys() == REFUSED_BY.keys()
    for what, obj in hostile.items():
        # Refused by the one validation about that, whose message says why.
        (message,) = policy.refusals("CREATE", obj)
        assert REFUSED_BY[what] in message, (what, message)
        assert policy.refusals("UPDATE", obj, old=deployment) == [message], what
    # The chart's own Deployments: neither changed (e.g. relabelled as an endpoint) nor deleted.
    tracking = out.get("Deployment", f"{RELEASE}-tracking")
    relabelled = copy.deepcopy(deployment)
    relabelled["metadata"]["name"] = tracking["metadata"]["name"]
    assert policy.refusals("UPDATE", relabelled, old=tracking)
    assert policy.refusals("UPDATE", tracking, old=tracking)
    assert policy.refusals("DELETE", None, old=tracking)
    # Another release's endpoints in the namespace are not this controller's.
    other = copy.deepcopy(deployment)
    other["metadata"]["labels"]["modelyard.io/instance"] = "team-b-modelyard"
    assert policy.refusals("DELETE", None, old=other)
    service, autoscaler, budget = objects[1], objects[2], objects[3]
    exposed = copy.deepcopy(service)
    exposed["spec"]["type"] = "LoadBalancer"
    assert policy.refusals("CREATE", exposed)
    stealing = copy.deepcopy(service)
    stealing["spec"]["selector"] = {"app.kubernetes.io/component": "auth"}
    assert policy.refusals("CREATE", stealing)
    scaler = copy.deepcopy(autoscaler)
    scaler["spec"]["scaleTargetRef"]["name"] = tracking["metadata"]["name"]
    assert policy.refusals("CREATE", scaler)
    unbounded = copy.deepcopy(autoscaler)
    unbounded["spec"]["maxReplicas"] = 1000
    (message,) = policy.refusals("CREATE", unbounded)
    assert "at most" in message
    # A budget over the chart's pods, or one that allows no eviction, would hold drains up.
    holding = copy.deepcopy(budget)
    holding["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "auth"
    blocking = copy.deepcopy(budget)
    blocking["spec"]["maxUnavailable"] = 0
    minimum = copy.deepcopy(budget)
    minimum["spec"] = {"minAvailable": 1, "selector": budget["spec"]["selector"]}
    for bad in (holding, blocking, minimum):
        (message,) = policy.refusals("CREATE", bad)
        assert "PodDisruptionBudget must select" in message
    # Anyone else (an admin, Helm) is not matched by the policy.
    assert policy.refusals("DELETE", None, old=tracking, user="kubernetes-admin") == []


@pytest.mark.parametrize("version", [v for v in KUBERNETES_VERSIONS if v >= "1.30"])
def test_the_policy_and_binding_are_valid_kubernetes_objects(version: str):
    out = render_with_apis(values_of("dev"), [VAP_API])
    (policy,) = out.of_kind("ValidatingAdmissionPolicy")
    (binding,) = out.of_kind("ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    for obj in (policy, binding):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("values", "apis"),
    [
        (None, [VAP_API]),  # the controller is off
        ({"services": {"serving": {"controller": {"enabled": False}}}}, [VAP_API]),
        (CONTROLLER, []),  # the cluster has no ValidatingAdmissionPolicy (before 1.30)
    ],
)
def test_no_policy_without_the_controller_or_the_api(
    values: dict[str, Any] | None, apis: list[str]
):
    out = render_with_apis(values, apis)
    assert out.of_kind("ValidatingAdmissionPolicy") == []
    assert out.of_kind("ValidatingAdmissionPolicyBinding") == []


def test_the_policy_is_rendered_when_the_controller_and_the_api_are_there():
    out = render_with_apis(CONTROLLER, [VAP_API])
    assert len(out.of_kind("ValidatingAdmissionPolicy")) == 1
    assert len(out.of_kind("ValidatingAdmissionPolicyBinding")) == 1
