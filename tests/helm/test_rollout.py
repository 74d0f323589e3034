"""Upgrades roll the pods whose configuration changed, and only those."""

from __future__ import annotations

from typing import Any

from tests.helm.conftest import Rendered, containers, render

OLD = {
    "database": {"url": "postgresql://u:OLD@db.internal:5432/my"},
    "s3": {"accessKey": "AK1", "secretKey": "OLD"},
}
NEW = {
    "database": {"url": "postgresql://u:NEW@db.internal:5432/my"},
    "s3": {"accessKey": "AK2", "secretKey": "NEW"},
}


def _secrets_read(workload: dict[str, Any]) -> set[str]:
    return {
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in containers(workload)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def _pod_templates(out: Rendered) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in out.of_kind("Deployment")}


def test_changed_secret_values_roll_the_pods_that_read_them():
    """Environment from a Secret is read at pod start: without a change to the pod template,
    pods keep the old database password and S3 keys after `helm upgrade`."""
    old, new = render(OLD), render(NEW)
    readers = [
        d["metadata"]["name"]
        for d in old.of_kind("Deployment")
        if _secrets_read(d) & {"modelyard-database", "modelyard-s3"}
    ]
    assert {"modelyard-tracking", "modelyard-registry", "modelyard-serving"} <= set(readers)
    before, after = _pod_templates(old), _pod_templates(new)
    for name in readers:
        assert before[name] != after[name], f"{name} keeps its pods after a credentials change"


def test_unchanged_values_leave_the_pod_templates_alone():
    assert _pod_templates(render(OLD)) == _pod_templates(render(OLD))
    assert _pod_templates(render(None)) == _pod_templates(render(None))


def test_generated_dev_passwords_do_not_roll_the_pods():
    """Each render draws new dev passwords (an upgrade reads the stored ones back): were they
    hashed, the first upgrade after install would roll every pod for nothing."""
    dev = {"dev": {"enabled": True}}
    assert _pod_templates(render(dev)) == _pod_templates(render(dev))
