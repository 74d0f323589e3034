"""The chart's side of the serving endpoint controller: what its endpoint pods run as, and which
pods are this release's."""

from __future__ import annotations

from typing import Any

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
    render,
    values_of,
)

CONTROLLER = {"dev": {"enabled": True}, "services": {"serving": {"controller": {"enabled": True}}}}


def _render_release(release: str, values: dict[str, Any]) -> Rendered:
    with helm().Chart.load(CHART) as chart:
        manifests = chart.render(values, name=release, namespace=NAMESPACE)
    docs = [
        d
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for d in yaml.safe_load_all(text)
    ]
    return Rendered([d for d in docs if d], "")


def _endpoint_deployment(out: Rendered, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Deployment the serving pod's controller would make for an endpoint."""
    return controller_objects(out, monkeypatch)[0]


def test_endpoint_pods_pull_with_the_charts_pull_secrets(monkeypatch: pytest.MonkeyPatch):
    """Endpoint pods name no pull secrets of their own: their ServiceAccount must carry them, or
    they cannot pull the image from a private registry."""
    out = render({**CONTROLLER, "imagePullSecrets": [{"name": "regcred"}]})
    pod = _endpoint_deployment(out, monkeypatch)["spec"]["template"]["spec"]
    account = out.get("ServiceAccount", pod["serviceAccountName"])
    kubernetes_validate.validate(account, "1.37.0", strict=True)
    assert pod.get("imagePullSecrets", account.get("imagePullSecrets")) == [{"name": "regcred"}]
    assert "imagePullSecrets" not in render(CONTROLLER).get("ServiceAccount", "modelyard-endpoint")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_two_releases_tell_their_endpoint_pods_apart(monkeypatch: pytest.MonkeyPatch):
    """Each release's controller and NetworkPolicies deal with its own endpoint pods only."""
    releases = {r: _render_release(r, CONTROLLER) for r in ("team-a", "team-b")}
    pods = {r: _endpoint_deployment(out, monkeypatch) for r, out in releases.items()}
    names = {r: d["metadata"]["name"] for r, d in pods.items()}
    assert names == {"team-a": "team-a-modelyard-ep-fraud", "team-b": "team-b-modelyard-ep-fraud"}
    for release, out in releases.items():
        policy = out.get("NetworkPolicy", f"{release}-modelyard-endpoints")
        selector = policy["spec"]["podSelector"]["matchLabels"]
        for other, deployment in pods.items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert _selects(selector, labels) == (other == release), (release, other)
            # The Deployment selects only its release's pods (its HPA scales on them).
            own = deployment["spec"]["selector"]["matchLabels"]
            other_labels = pods["team-b" if other == "team-a" else "team-a"]
            assert not _selects(own, other_labels["spec"]["template"]["metadata"]["labels"])
        # Who may call the registry: this release's endpoint pods, not the other's.
        registry = out.get("NetworkPolicy", f"{release}-modelyard-registry")
        peers = [
            p["podSelector"]["matchLabels"]
            for rule in registry["spec"]["ingress"]
            for p in rule.get("from", [])
            if "podSelector" in p
        ]
        for other, deployment in pods.items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert any(_selects(p, labels) for p in peers) == (other == release), (release, other)


def test_a_single_install_keeps_its_endpoint_names(monkeypatch: pytest.MonkeyPatch):
    """A release named modelyard (the documented install) keeps modelyard-ep-<endpoint>."""
    deployment = _endpoint_deployment(render(CONTROLLER), monkeypatch)
    assert deployment["metadata"]["name"] == "modelyard-ep-fraud"


def test_a_changed_secret_value_rolls_the_endpoint_pods(monkeypatch: pytest.MonkeyPatch):
    """The chart rolls its own pods when a value it keeps in a Secret changes (checksum/secrets);
    the endpoint pods read the same Secret at start, so theirs must change with it."""

    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = _endpoint_deployment(render(values), monkeypatch)
        return deployment["spec"]["template"]["metadata"]["annotations"]

    def values(database_url: str, s3_secret_key: str) -> dict[str, Any]:
        controller = {"enabled": True, "podAnnotations": {"team": "fraud"}}
        return {
            "dev": {"enabled": False},
            "services": {"serving": {"controller": controller}},
            "database": {"url": database_url},
            "s3": {"endpoint": "s3.example", "accessKey": "ak", "secretKey": s3_secret_key},
        }

    first = annotations(values("postgresql://a@db/modelyard", "old"))
    second = annotations(values("postgresql://b@db/modelyard", "old"))
    third = annotations(values("postgresql://b@db/modelyard", "new"))
    assert second["checksum/secrets"] != third["checksum/secrets"]
    assert first["checksum/secrets"] != second["checksum/secrets"]
    assert first["team"] == second["team"] == "fraud"


def test_endpoint_pods_are_sized_by_the_values(monkeypatch):
    """A model bigger than the fixed 2Gi limit was OOM-killed on every load, with nothing in the
    values (or the settings) to give its endpoint pods more."""
    values = values_of("dev") or {}
    values["services"]["serving"]["controller"]["resources"] = {
        "requests": {"cpu": "1", "memory": "6Gi"},
        "limits": {"cpu": "4", "memory": "12Gi", "ephemeral-storage": "20Gi"},
    }
    (deployment, *_) = controller_objects(render(values), monkeypatch)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "6Gi"},
        "limits": {"cpu": "4", "memory": "12Gi", "ephemeral-storage": "20Gi"},
    }
    (deployment, *_) = controller_objects(render(values_of("dev")), monkeypatch)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}  # the defaults


def test_a_changed_setting_rolls_the_endpoint_pods(monkeypatch: pytest.MonkeyPatch):
    """Endpoint pods read the release's settings (log level, S3 endpoint, grace period...) from
    their environment Secret at start, as the chart's pods read the ConfigMap: a changed setting
    rolls the chart's pods (checksum/config), so it must roll the endpoint pods too, or they keep
    running with the old one until something else restarts them."""

    def values(log_level: str, s3_endpoint: str) -> dict[str, Any]:
        return {
            "logLevel": log_level,
            "services": {"serving": {"controller": {"enabled": True}}},
            "database": {"url": "postgresql://a@db/modelyard"},
            "s3": {"endpoint": s3_endpoint, "accessKey": "ak", "secretKey": "sk"},
        }

    def endpoint_pods(values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """The endpoint pods' environment Secret, and their annotations."""
        out = render(values)
        environment = out.get("Secret", "modelyard-endpoint-env")["stringData"]
        deployment = _endpoint_deployment(out, monkeypatch)
        return environment, deployment["spec"]["template"]["metadata"]["annotations"]

    env, first = endpoint_pods(values("INFO", "s3.example"))
    assert endpoint_pods(values("INFO", "s3.example"))[1] == first  # no roll without a change
    debug_env, debug = endpoint_pods(values("DEBUG", "s3.example"))
    assert (env["MODELYARD_LOG_LEVEL"], debug_env["MODELYARD_LOG_LEVEL"]) == ("INFO", "DEBUG")
    assert debug != first
    moved_env, moved = endpoint_pods(values("INFO", "s3.other.example"))
    assert moved_env["MODELYARD_S3__ENDPOINT"] == "s3.other.example"
    assert moved != first
    # The dev profile's key Job writes the same settings into the endpoint pods' Secret.
    dev = values_of("dev") or {}
    quiet = _endpoint_deployment(render({**dev, "logLevel": "WARNING"}), monkeypatch)
    loud = _endpoint_deployment(render({**dev, "logLevel": "DEBUG"}), monkeypatch)
    assert (
        quiet["spec"]["template"]["metadata"]["annotations"]
        != (loud["spec"]["template"]["metadata"]["annotations"])
    )


@pytest.mark.parametrize("policy", ["Always", "IfNotPresent", "Never"])
def test_endpoint_pods_pull_the_image_as_the_charts_pods_do(
    monkeypatch: pytest.MonkeyPatch, policy: str
):
    """image.pullPolicy Always (a mutable tag such as :main) re-pulls on every start of the
    chart's pods; endpoint pods kept IfNotPresent, so after a push they ran the old image the
    node had cached while the serving pod that made them ran the new one."""
    out = render({**CONTROLLER, "image": {"tag": "main", "pullPolicy": policy}})
    serving = out.get("Deployment", "modelyard-serving")
    (deployment, *_) = controller_objects(out, monkeypatch)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (own,) = serving["spec"]["template"]["spec"]["containers"]
    assert container["image"] == own["image"] == "ghcr.io/modelyard/modelyard:main"
    assert container["imagePullPolicy"] == own["imagePullPolicy"] == policy


@pytest.mark.parametrize("grace", [20, 60])
def test_endpoint_pods_drain_as_the_charts_serving_pods_do(
    monkeypatch: pytest.MonkeyPatch, grace: int
):
    """A new model version rolls an endpoint's pods. The chart's serving pods keep answering
    for a preStop pause while their Service endpoint goes away, then drain for
    gracePeriodSeconds, with room before the kill; endpoint pods had neither: calls routed to a
    stopping pod in that moment failed UNAVAILABLE on every rollout, and with gracePeriodSeconds
    over 30 the kubelet killed them mid-drain."""
    out = render({**CONTROLLER, "gracePeriodSeconds": grace})
    serving = out.get("Deployment", "modelyard-serving")["spec"]["template"]["spec"]
    (deployment, *_) = controller_objects(out, monkeypatch)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == serving["terminationGracePeriodSeconds"]
    assert pod["terminationGracePeriodSeconds"] > grace + 5
    (container,) = pod["containers"]
    assert container["lifecycle"] == serving["containers"][0]["lifecycle"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


@pytest.mark.parametrize(
    "security",
    [
        {},  # the chart's defaults: the image's user
        {"runAsUser": 20000, "runAsGroup": 20001, "fsGroup": 20002},
        # OpenShift's restricted SCC assigns each namespace's pods a user from its own range.
        {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
    ],
)
def test_endpoint_pods_run_as_the_charts_pods_do(
    monkeypatch: pytest.MonkeyPatch, security: dict[str, int | None]
):
    """Endpoint pods ran as 10001 whatever securityContext said: with another user they differed
    from the chart's pods, and where the cluster assigns users (null) they were refused while
    the chart's own pods ran."""
    out = render({**CONTROLLER, "securityContext": security})
    serving = out.get("Deployment", "modelyard-serving")["spec"]["template"]["spec"]
    (deployment, *_) = controller_objects(out, monkeypatch)
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod == serving["securityContext"]
    assert pod["runAsNonRoot"] is True
    for key, value in security.items():
        assert pod.get(key) == value


def test_endpoint_pods_can_be_placed_on_gpu_nodes(monkeypatch: pytest.MonkeyPatch):
    """GPU nodes (and spot or dedicated pools) are labelled and tainted: with no nodeSelector or
    tolerations for endpoint pods (the serving pod's own place only the serving pod) a model
    could not be served there; its pods stayed Pending or landed elsewhere."""
    values = values_of("dev") or {}
    controller = values["services"]["serving"]["controller"]
    controller["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    controller["tolerations"] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute",
         "tolerationSeconds": 60},
    ]  # fmt: skip
    (deployment, *_) = controller_objects(render(values), monkeypatch)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == controller["nodeSelector"]
    assert pod["tolerations"] == controller["tolerations"]
    kubernetes_validate.validate(deployment, "1.37.0", strict=True)
    (default, *_) = controller_objects(render(values_of("dev")), monkeypatch)
    assert "nodeSelector" not in default["spec"]["template"]["spec"]
    assert "tolerations" not in default["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    "resource", ["nvidia.com/gpu", "amd.com/gpu", "hugepages-2Mi", "example.com/fpga"]
)
def test_endpoint_and_serving_pods_may_ask_for_gpus(monkeypatch: pytest.MonkeyPatch, resource: str):
    """The schema allowed cpu, memory and ephemeral-storage only: a GPU model's endpoint (or the
    serving pod) could not ask for nvidia.com/gpu, and the install failed on the values."""
    sized = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "16Gi", resource: "1"}}
    values = values_of("dev") or {}
    values["services"]["serving"]["controller"]["resources"] = sized
    values["services"]["serving"]["resources"] = sized
    out = render(values)
    serving = out.get("Deployment", "modelyard-serving")["spec"]["template"]["spec"]
    assert serving["containers"][0]["resources"]["limits"][resource] == "1"
    (deployment, *_) = controller_objects(out, monkeypatch)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"][resource] == "1"
    for obj in (deployment, out.get("Deployment", "modelyard-serving")):
        kubernetes_validate.validate(obj, "1.37.0", strict=True)


@pytest.mark.parametrize("name", ["gpu", "nvidia.com/", "cpus", "nvidia.com/gpu/x"])
def test_a_misspelt_resource_is_still_refused(name: str):
    with pytest.raises(helm().HelmValuesError):
        render({"services": {"serving": {"resources": {"limits": {"memory": "1Gi", name: "1"}}}}})


def test_endpoint_pods_take_quantities_written_as_numbers(monkeypatch: pytest.MonkeyPatch):
    """`cpu: 2` and `nvidia.com/gpu: 1` are numbers in YAML, which the schema (and Kubernetes)
    accept; the serving pod read them into its settings as strings only, and with the controller
    on it stopped at start on "Input should be a valid string"."""
    values = values_of("dev") or {}
    values["services"]["serving"]["controller"]["resources"] = {
        "requests": {"cpu": 1, "memory": "1Gi"},
        "limits": {"cpu": 2.5, "memory": "2Gi", "nvidia.com/gpu": 1},
    }
    (deployment, *_) = controller_objects(render(values), monkeypatch)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "2.5", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    kubernetes_validate.validate(deployment, "1.37.0", strict=True)


def test_endpoints_get_the_disruption_budget_the_charts_pods_have(
    monkeypatch: pytest.MonkeyPatch,
):
    """Endpoint pods had no PodDisruptionBudget, so a node drain could evict every replica of an
    endpoint at once, while each of the chart's components had one. Both now allow one eviction
    at a time: maxUnavailable 1, never minAvailable, which with one replica would hold the
    drain of its node forever."""
    out = render(CONTROLLER)
    objects = controller_objects(out, monkeypatch)
    deployment, (budget,) = objects[0], [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert budget["metadata"]["name"] == deployment["metadata"]["name"]
    serving = out.get("PodDisruptionBudget", f"{RELEASE}-serving")
    for spec in (budget["spec"], serving["spec"]):
        assert "minAvailable" not in spec
        assert spec["maxUnavailable"] == 1
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(budget, version, strict=True)
