"""The server's S3 client signs with the configured keys, or, without them, with the credentials
the pod or machine has (environment, ~/.aws, IRSA / instance identity): never anonymously."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from minio.credentials import Credentials, IamAwsProvider

from modelyard.services.common.artifacts.s3 import make_client
from modelyard.services.common.settings import S3Settings

AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "AWS_SHARED_CREDENTIALS_FILE",
)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws/credentials


def _signed_by(settings: S3Settings) -> dict[str, str]:
    """Who a presigned URL (made offline: the region is known) is signed as."""
    url = make_client(settings).presigned_get_object("bucket", "key")
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    return {
        "key": query["X-Amz-Credential"].split("/")[0],
        "token": query.get("X-Amz-Security-Token", ""),
    }


def test_configured_keys_sign_requests(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    settings = S3Settings(region="eu-west-1", access_key="AKIACONFIGURED", secret_key="s")
    assert _signed_by(settings)["key"] == "AKIACONFIGURED"


def test_without_keys_the_environment_signs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert _signed_by(S3Settings(region="eu-west-1"))["key"] == "AKIAFROMENV"


def test_without_keys_the_pods_cloud_identity_signs(monkeypatch: pytest.MonkeyPatch):
    """IRSA (web identity token), ECS/EKS container credentials and EC2 instance profiles are
    IamAwsProvider's; stood in for here, as they need AWS."""
    monkeypatch.setattr(
        IamAwsProvider,
        "retrieve",
        lambda self: Credentials("ASIAFROMIRSA", "irsa-secret", session_token="irsa-token"),
    )
    assert _signed_by(S3Settings(region="eu-west-1")) == {
        "key": "ASIAFROMIRSA",
        "token": "irsa-token",
    }
