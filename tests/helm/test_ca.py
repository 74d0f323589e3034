"""Private certificate authorities: pods that connect to PostgreSQL (sslmode=verify-full) or a
privately signed S3 endpoint find the CA the chart was given, mounted where their settings say."""

from __future__ import annotations

import datetime
import posixpath
import socket
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.services.common.settings import Settings
from modelyard.services.serving.app import cluster_config
from modelyard.services.serving.cluster import build_objects
from tests.helm.conftest import Rendered, containers, env_of, pod_spec, render, values_of

CAS = {
    "database": {
        "url": "postgresql://u:p@pg.internal:5432/my?sslmode=verify-full",
        "caSecret": "pg-ca",
    },
    "s3": {"accessKey": "AK", "secretKey": "SK", "caSecret": "s3-ca", "caSecretKey": "bundle.pem"},
    "services": {"serving": {"controller": {"enabled": True}}},
}


def _file_source(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret, key) a file of the container comes from."""
    directory, name = posixpath.split(path)
    (mount,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = [i for i in volume["secret"]["items"] if i["path"] == name]
    return volume["secret"]["secretName"], item["key"]


def _users(out: Rendered, variable: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (w["metadata"]["name"], pod_spec(w), c)
        for w in out.workloads()
        for c in containers(w)
        if variable in env_of(c)
    ]


def test_pods_that_reach_the_database_verify_it_against_its_ca():
    out = render(CAS)
    users = _users(out, "MODELYARD_BACKEND_STORE_URI")
    assert {"modelyard-migrations", "modelyard-auth", "modelyard-tracking"} <= {
        n for n, *_ in users
    }
    for name, pod, container in users:
        path = env_of(container).get("PGSSLROOTCERT")
        assert path, f"{name}/{container['name']}: libpq finds no CA for verify-full"
        assert _file_source(pod, container, path) == ("pg-ca", "ca.crt"), name


def test_pods_that_reach_s3_trust_its_private_ca():
    out = render(CAS)
    users = _users(out, "MODELYARD_S3__ACCESS_KEY")
    assert {"modelyard-tracking", "modelyard-registry", "modelyard-serving"} <= {
        n for n, *_ in users
    }
    for name, pod, container in users:
        path = env_of(container)["MODELYARD_S3__CA_FILE"]
        assert _file_source(pod, container, path) == ("s3-ca", "bundle.pem"), name
    assert "MODELYARD_S3__CA_FILE" not in env_of(
        containers(render(None).get("Deployment", "modelyard-tracking"))[0]
    )


def test_endpoint_pods_get_the_cas_too(monkeypatch: pytest.MonkeyPatch):
    out = render(CAS)
    serving = out.get("Deployment", "modelyard-serving")
    for name, value in env_of(containers(serving)[0]).items():
        if name.startswith("MODELYARD_SERVING__CLUSTER__") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    config = cluster_config(Settings(), "ml")
    endpoint = Endpoint("fraud", (ServedModel("models:/fraud/1", 100, name="f", version=1),))
    from kubernetes import client as k8s

    deployment = k8s.ApiClient().sanitize_for_serialization(build_objects(endpoint, config)[0])
    pod = deployment["spec"]["template"]["spec"]
    environment = out.get("Secret", config.env_secret or "")["stringData"]
    for variable, source in (
        ("PGSSLROOTCERT", ("pg-ca", "ca.crt")),
        ("MODELYARD_S3__CA_FILE", ("s3-ca", "bundle.pem")),
    ):
        assert _file_source(pod, pod["containers"][0], environment[variable]) == source


def test_the_production_example_mounts_the_database_ca():
    """Its database URL says sslmode=verify-full."""
    values = values_of("production")
    assert values is not None and values["database"]["caSecret"]
    out = render(values)
    for name, pod, container in _users(out, "MODELYARD_BACKEND_STORE_URI"):
        path = env_of(container)["PGSSLROOTCERT"]
        assert _file_source(pod, container, path)[0] == values["database"]["caSecret"], name


def _ca_file(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _verify_full_error(monkeypatch: pytest.MonkeyPatch, home: Path, ca: Path | None) -> str:
    """libpq's error against a server that accepts TLS and hangs up (before any certificate)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(8)
        conn.sendall(b"S")
        conn.recv(1024)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("HOME", str(home))
    if ca:
        monkeypatch.setenv("PGSSLROOTCERT", str(ca))
    port = server.getsockname()[1]
    with pytest.raises(psycopg.OperationalError) as failure:
        psycopg.connect(
            f"postgresql://u:p@127.0.0.1:{port}/d?sslmode=verify-full", connect_timeout=5
        )
    server.close()
    return str(failure.value)


def test_libpq_takes_the_ca_the_chart_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """PGSSLROOTCERT is what libpq reads for sslrootcert: without it, verify-full in a pod (HOME
    an emptyDir) stops at the missing ~/.postgresql/root.crt."""
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    assert "root certificate file" in _verify_full_error(monkeypatch, tmp_path, None)
    assert "root certificate file" not in _verify_full_error(
        monkeypatch, tmp_path, _ca_file(tmp_path)
    )
