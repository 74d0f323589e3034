"""TLS and mutual TLS round trips, with certificates made in the test (the cryptography package)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelyard import Client
from modelyard.errors import NoServer, Unavailable
from modelyard.services.common.settings import Settings, TLSSettings
from tests.conftest import running_server
from tests.ui.http import WebSession, serving_ui


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class CA:
    def __init__(self, directory: Path, name: str = "modelyard-test-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file, _ = _write(directory / name, self.key, self.cert)
        self.directory = directory

    def issue(self, name: str, *, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return _write(self.directory / name, key, builder.sign(self.key, hashes.SHA256()))


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


def logged_model(client: Client) -> str:
    rid = client.create_run("0").info.run_id
    client.log_text(rid, "m", "model/MLmodel")
    return rid


def _tls_settings(ca: CA, home: Path) -> Settings:
    """A server with a certificate `ca` issued, which trusts `ca`'s clients."""
    cert, key = ca.issue("server", server=True)
    tls = TLSSettings(cert_file=cert, key_file=key, ca_file=ca.cert_file)
    return Settings(home=home, port=0, grace_period=0, tls=tls)


def test_tls_round_trip_through_every_service(ca: CA, tmp_path: Path) -> None:
    settings = _tls_settings(ca, tmp_path)
    with running_server(settings) as server:
        address = f"grpcs://{server.address}"
        with Client(address, tls_ca=str(ca.cert_file)) as client:
            rid = logged_model(client)
            # The registry reaches tracking over TLS too.
            assert client.create_model_version("tls", f"runs:/{rid}/model").status == "READY"
        with Client(address) as untrusting, pytest.raises(Unavailable):
            untrusting.search_experiments()  # the test CA is not in the system's trust store
        with Client(server.address, timeout=5) as plaintext, pytest.raises(Unavailable):
            plaintext.search_experiments()


def test_mutual_tls(ca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = ca.issue("server", server=True)
    client_cert, client_key = ca.issue("client", server=False)
    other_ca = CA(tmp_path, "another-ca")
    rogue_cert, rogue_key = other_ca.issue("rogue", server=False)
    settings = Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        tls=TLSSettings(
            cert_file=cert,
            key_file=key,
            client_ca_file=ca.cert_file,
            ca_file=ca.cert_file,
            client_cert_file=client_cert,
            client_key_file=client_key,
        ),
    )
    with running_server(settings) as server:
        address = f"grpcs://{server.address}"
        with (
            Client(address, tls_ca=str(ca.cert_file), timeout=5) as anonymous,
            pytest.raises(Unavailable),
        ):
            anonymous.search_experiments()  # no client certificate
        monkeypatch.setenv("MODELYARD_TLS_CERT", str(rogue_cert))
        monkeypatch.setenv("MODELYARD_TLS_KEY", str(rogue_key))
        with (
            Client(address, tls_ca=str(ca.cert_file), timeout=5) as rogue,
            pytest.raises(Unavailable),
        ):
            rogue.search_experiments()  # a certificate from a CA the server does not trust
        monkeypatch.setenv("MODELYARD_TLS_CERT", str(client_cert))
        monkeypatch.setenv("MODELYARD_TLS_KEY", str(client_key))
        with Client(address, tls_ca=str(ca.cert_file)) as client:
            rid = logged_model(client)
            assert client.create_model_version("mtls", f"runs:/{rid}/model").status == "READY"


def test_plaintext_health_port_beside_tls(ca: CA, tmp_path: Path) -> None:
    """Kubelets probe gRPC health without TLS: health_port answers health checks only."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.conftest import free_port

    cert, key = ca.issue("server", server=True)
    health_port = free_port()
    settings = Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        health_port=health_port,
        tls=TLSSettings(cert_file=cert, key_file=key),
    )
    with running_server(settings, ("tracking",)) as server:
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            tracking = "modelyard.tracking.v1.TrackingService"
            reply = health.Check(health_pb2.HealthCheckRequest(service=tracking), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            other = channel.unary_unary(f"/{tracking}/SearchExperiments")
            with pytest.raises(grpc.RpcError) as err:
                other(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # nothing else is there
        with pytest.raises(Unavailable):  # and the main port still insists on TLS
            Client(server.address).search_experiments()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for localhost, as `openssl req -x509` makes one."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(_name("localhost"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(directory / "self-signed", key, cert)


def test_the_ui_serves_https_with_the_services_certificate(tmp_path: Path) -> None:
    """`modelyard up --tls-cert/--tls-key` serves the UI with the same certificate, and its
    session cookie is sent over HTTPS only."""
    cert, key = _self_signed(tmp_path)
    settings = Settings(
        home=tmp_path, port=0, grace_period=0, tls=TLSSettings(cert_file=cert, key_file=key)
    )
    with running_server(settings) as server, serving_ui(settings, server.address) as url:
        assert url.startswith("https://127.0.0.1:")
        web = WebSession(url, ca_file=str(cert))
        assert web.get("/experiments").status == 200  # and the UI reached the services over TLS
        (cookie,) = (c for c in web.set_cookies if c.startswith("modelyard_session="))
        assert "secure" in cookie.lower().split("; ")
        with pytest.raises(urllib3.exceptions.HTTPError):
            WebSession(url.replace("https://", "http://")).get("/experiments")


def test_an_untrusted_certificate_says_which_ca_to_give(ca: CA, tmp_path: Path) -> None:
    """A server that answers with a certificate the client does not trust is not a missing
    server: the error names the address and the CA setting, not `modelyard up`."""
    settings = _tls_settings(ca, tmp_path)
    with running_server(settings) as server:
        address = f"grpcs://{server.address}"
        with Client(address, timeout=5) as untrusting, pytest.raises(Unavailable) as refused:
            untrusting.search_experiments()
    assert not isinstance(refused.value, NoServer)
    message = str(refused.value)
    assert "certificate check failed" in message and address in message
    assert "MODELYARD_TLS_CA" in message and "tls_ca=" in message
    assert "modelyard up" not in message
    assert refused.value.field == "tls_ca"


def _mount_secret(directory: Path, files: dict[str, Path], version: str) -> None:
    """Put `files` into `directory` as the kubelet puts a Secret's keys into a volume: each name
    links to ..data/<name>, and an update swaps the ..data link to a new directory at once."""
    import os
    import shutil

    directory.mkdir(exist_ok=True)
    data = directory / f"..{version}"
    data.mkdir()
    for name, source in files.items():
        shutil.copy(source, data / name)
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    swap = directory / "..data_tmp"
    swap.symlink_to(data.name)
    os.replace(swap, directory / "..data")


def _presented_serial(address: str, ca: CA) -> int:
    """The serial number of the certificate the server presents to a new connection."""
    import socket
    import ssl

    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_certificate_is_served_without_a_restart(ca: CA, tmp_path: Path) -> None:
    """cert-manager renews the certificate in the TLS Secret (tls.existingSecret) before it
    expires and the kubelet swaps the new files into the running pods; a server that read them
    once at start presented the old certificate until it expired, and every client refused it."""
    first_cert, first_key = ca.issue("first", server=True)
    mounted = tmp_path / "tls"
    _mount_secret(mounted, {"tls.crt": first_cert, "tls.key": first_key}, "2026_01_01")
    tls = TLSSettings(
        cert_file=mounted / "tls.crt", key_file=mounted / "tls.key", ca_file=ca.cert_file
    )
    settings = Settings(home=tmp_path, port=0, grace_period=0, tls=tls)
    serial = x509.load_pem_x509_certificate(first_cert.read_bytes()).serial_number
    with running_server(settings, ("tracking",)) as server:
        assert _presented_serial(server.address, ca) == serial
        renewed_cert, renewed_key = ca.issue("renewed", server=True)
        _mount_secret(mounted, {"tls.crt": renewed_cert, "tls.key": renewed_key}, "2026_03_01")
        renewed = x509.load_pem_x509_certificate(renewed_cert.read_bytes()).serial_number
        assert _presented_serial(server.address, ca) == renewed != serial
        with Client(f"grpcs://{server.address}", tls_ca=str(ca.cert_file)) as client:
            assert client.search_experiments() is not None
        # Files that cannot be read (mid-way through a change by hand) leave the current ones.
        (mounted / "..data").unlink()
        assert _presented_serial(server.address, ca) == renewed


def test_the_ui_serves_a_renewed_certificate_without_a_restart(ca: CA, tmp_path: Path) -> None:
    """The UI serves HTTPS with the services' certificate; uvicorn read it once at start, so
    after cert-manager renewed it the UI presented the old one until it expired."""
    first_cert, first_key = ca.issue("first", server=True)
    mounted = tmp_path / "tls"
    _mount_secret(mounted, {"tls.crt": first_cert, "tls.key": first_key}, "2026_01_01")
    tls = TLSSettings(
        cert_file=mounted / "tls.crt", key_file=mounted / "tls.key", ca_file=ca.cert_file
    )
    settings = Settings(home=tmp_path, port=0, grace_period=0, tls=tls)
    with (
        running_server(settings, ("tracking",)) as server,
        serving_ui(settings, server.address) as url,
    ):
        address = url.removeprefix("https://")
        first = x509.load_pem_x509_certificate(first_cert.read_bytes()).serial_number
        assert _presented_serial(address, ca) == first
        renewed_cert, renewed_key = ca.issue("renewed", server=True)
        _mount_secret(mounted, {"tls.crt": renewed_cert, "tls.key": renewed_key}, "2026_03_01")
        renewed = x509.load_pem_x509_certificate(renewed_cert.read_bytes()).serial_number
        assert _presented_serial(address, ca) == renewed != first
        assert WebSession(url, ca_file=str(ca.cert_file)).get("/healthz").status == 200
        (mounted / "..data").unlink()  # unreadable mid-change: the current one stays
        assert _presented_serial(address, ca) == renewed


def test_a_rotated_ca_is_trusted_without_a_restart(
    ca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA that signs the internal certificates is rotated by swapping ca.crt (and the
    certificates it signed) in the mounted Secret. Clients read the CA file once, when their
    channel was made, so every process that started before the rotation refused the new
    certificates until it was restarted; a server with mutual TLS must verify clients against
    the new CA too."""
    mounted = tmp_path / "tls"

    def mount(authority: CA, version: str) -> None:
        cert, key = authority.issue(f"server-{version}", server=True)
        client_cert, client_key = authority.issue(f"client-{version}", server=False)
        files = {"ca.crt": authority.cert_file, "tls.crt": cert, "tls.key": key}
        _mount_secret(
            mounted, {**files, "client.crt": client_cert, "client.key": client_key}, version
        )

    mount(ca, "2026_01_01")
    settings = Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        tls=TLSSettings(
            cert_file=mounted / "tls.crt",
            key_file=mounted / "tls.key",
            ca_file=mounted / "ca.crt",
            client_ca_file=mounted / "ca.crt",
            client_cert_file=mounted / "client.crt",
            client_key_file=mounted / "client.key",
        ),
    )
    monkeypatch.setenv("MODELYARD_TLS_CERT", str(mounted / "client.crt"))
    monkeypatch.setenv("MODELYARD_TLS_KEY", str(mounted / "client.key"))
    with running_server(settings) as server:
        address = f"grpcs://{server.address}"
        # Made before the rotation: its channel has read the old CA and client certificate.
        client = Client(address, tls_ca=str(mounted / "ca.crt"), timeout=10)
        mount(CA(tmp_path, "rotated-ca"), "2026_06_01")
        with client:
            rid = logged_model(client)
            # The registry's channel to tracking (made at start) presents the new client
            # certificate and trusts the new CA as well.
            assert client.create_model_version("rotated", f"runs:/{rid}/model").status == "READY"
        # The server verifies clients against the new CA: the old one's certificates are refused.
        old = mounted / "..2026_01_01"  # the swapped-out Secret's files
        monkeypatch.setenv("MODELYARD_TLS_CERT", str(old / "client.crt"))
        monkeypatch.setenv("MODELYARD_TLS_KEY", str(old / "client.key"))
        with (
            Client(address, tls_ca=str(mounted / "ca.crt"), timeout=5) as stale,
            pytest.raises(Unavailable),
        ):
            stale.search_experiments()
