"""s3.existingSecret "": the pods reach S3 as their own cloud identity (IRSA and the like)."""

from __future__ import annotations

import kubernetes_validate

from tests.helm.conftest import containers, env_of, render

ROLE = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/modelyard"}
IRSA = {
    "s3": {"existingSecret": ""},
    "serviceAccount": {"annotations": ROLE},
    "dev": {"enabled": False},
    "database": {"url": "postgresql://u:p@db.internal:5432/my"},
    "services": {"serving": {"controller": {"enabled": True}}},
}


def test_the_pods_that_reach_s3_run_as_the_annotated_identity():
    out = render(IRSA)
    s3_users = {"tracking", "registry", "serving", "features", "endpoint"}
    for account in out.of_kind("ServiceAccount"):
        kubernetes_validate.validate(account, "1.37.0", strict=True)
        component = account["metadata"]["labels"]["app.kubernetes.io/component"]
        annotations = account["metadata"].get("annotations", {})
        assert (annotations == ROLE) == (component in s3_users), component
    for name in ("modelyard-tracking", "modelyard-serving"):
        deployment = out.get("Deployment", name)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        # No keys: the server's S3 client takes the pod's credentials chain.
        assert "MODELYARD_S3__ACCESS_KEY" not in env_of(containers(deployment)[0])


def test_no_annotations_by_default():
    out = render(None)
    for account in out.of_kind("ServiceAccount"):
        assert not set(account["metadata"].get("annotations") or {}) & set(ROLE)
