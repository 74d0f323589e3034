"""Settings come from flags, then MODELYARD_* environment variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelyard.services.common.settings import Settings


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path / 'modelyard.db'}"
    assert s.artifact_root == (tmp_path / "artifacts").as_uri()
    assert s.address == "127.0.0.1:50051"


def test_environment_and_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "6000")
    monkeypatch.setenv("MODELYARD_BACKEND_STORE_URI", "postgresql://u@db/m")
    monkeypatch.setenv("MODELYARD_S3__ENDPOINT", "https://minio:9000")
    monkeypatch.setenv("MODELYARD_S3__SECRET_KEY", "s3cret")
    s = Settings()
    assert s.port == 6000
    assert s.database_url == "postgresql://u@db/m"
    assert s.s3.endpoint == "https://minio:9000"
    assert s.s3.secret_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert Settings(port=7000).port == 7000  # a flag wins over the environment


def test_bad_values_fail_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "99999")
    with pytest.raises(ValidationError, match="port"):
        Settings()
    monkeypatch.delenv("MODELYARD_PORT")
    with pytest.raises(ValidationError, match="typo"):
        Settings(s3={"endpoint": "x", "typo": 1})


def test_a_relative_home_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(home="state")
    assert settings.home_dir == tmp_path / "state"
    assert settings.artifact_root == (tmp_path / "state" / "artifacts").as_uri()


def test_source_locations_come_from_json_and_must_name_a_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "MODELYARD_FEATURES__SOURCE_LOCATIONS", '["s3://warehouse/features", "/data/features"]'
    )
    assert Settings().features.source_locations == ["s3://warehouse/features", "/data/features"]
    # An empty entry would otherwise stand for the server's working directory.
    for entry, said in (("", "names no path"), ("file://", "names no path"), ("s3://", "bucket")):
        with pytest.raises(ValidationError, match=said):
            Settings(features={"source_locations": [entry]})


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ({"port": 7000, "health_port": 7000}, "MODELYARD_HEALTH_PORT and MODELYARD_PORT are both"),
        ({"port": 7000, "metrics_port": 7000}, "MODELYARD_METRICS_PORT and MODELYARD_PORT"),
        (
            {"port": 7000, "health_port": 7001, "metrics_port": 7001},
            "MODELYARD_METRICS_PORT and MODELYARD_HEALTH_PORT are both 7001",
        ),
    ],
)
def test_ports_that_clash_are_refused_naming_both(ports: dict, message: str) -> None:
    """A clash failed only when the second listener was bound, blaming the gRPC port
    ('pick another with --port')."""
    with pytest.raises(ValidationError, match=message):
        Settings(**ports)
    Settings(port=0, health_port=0, metrics_port=0)  # ephemeral ports never clash
