"""The chart's in-cluster bootstrap (helm/modelyard/files/bootstrap.py): the key hook Job and the
auth pod's service-token init container, run against a fake Kubernetes API for Secrets, a real
auth database, and a real auth server that must accept the tokens it mints."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kubernetes import client as k8s
from sqlalchemy.exc import OperationalError

from modelyard import Client
from modelyard.client._transport import Transport
from modelyard.client.auth import AuthClient
from modelyard.errors import Unauthenticated
from modelyard.services.common.auth.tokens import TokenSigner, TokenVerifier, generate_keypair
from modelyard.services.common.settings import AuthSettings, Settings, TLSSettings
from tests.conftest import free_port, running_server
from tests.fake_kube import FakeKube
from tests.helm.conftest import CHART, Rendered, pod_spec, render, values_of

SCRIPT = CHART / "files" / "bootstrap.py"
NS = "ml"
LABELS = {"app.kubernetes.io/instance": "modelyard"}


@pytest.fixture(scope="module")
def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modelyard_chart_bootstrap", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kube() -> Iterator[tuple[FakeKube, k8s.ApiClient]]:
    fake = FakeKube().start()
    configuration = k8s.Configuration()
    configuration.host = fake.url
    with k8s.ApiClient(configuration) as api:
        yield fake, api
    fake.stop()


def secret_data(fake: FakeKube, name: str) -> dict[str, bytes]:
    stored = fake.secrets[(NS, name)]
    return {k: base64.b64decode(v) for k, v in (stored.get("data") or {}).items()}


# -- keys (the pre-install hook Job) --------------------------------------------------------------


def test_keys_creates_a_signing_key_pair_and_an_empty_token_secret_once(bootstrap, kube):
    fake, api = kube
    argv = ["keys", "--signing-key-secret=sk", "--tokens-secret=tok", "--labels=a=b,c=d"]
    assert bootstrap.main(argv, api=api, namespace=NS) == 0
    keys = secret_data(fake, "sk")
    bootstrap.check_keypair(keys["private.pem"], keys["public.pem"])
    token, _ = TokenSigner(keys["private.pem"]).sign("svc-tracking", 60)
    assert TokenVerifier(keys["public.pem"]).verify(token).principal == "svc-tracking"
    assert secret_data(fake, "tok") == {}
    assert fake.secrets[(NS, "tok")]["metadata"]["labels"] == {"a": "b", "c": "d"}
    # Upgrades run the Job again: nothing changes.
    assert bootstrap.main(argv, api=api, namespace=NS) == 0
    assert secret_data(fake, "sk") == keys
    assert [m for m, _ in fake.requests].count("POST") == 2


def test_keys_leaves_a_given_pair_alone_and_rejects_a_broken_one(bootstrap, kube):
    fake, api = kube
    core = k8s.CoreV1Api(api)
    private, public = generate_keypair()
    bootstrap._create(core, "sk", NS, {"private.pem": private, "public.pem": public}, LABELS)
    assert bootstrap.ensure_keys(core, NS, "sk", None, LABELS) == []
    assert secret_data(fake, "sk")["private.pem"] == private
    _, other_public = generate_keypair()
    bootstrap._create(core, "bad", NS, {"private.pem": private, "public.pem": other_public}, {})
    with pytest.raises(ValueError, match="not the public half"):
        bootstrap.ensure_keys(core, NS, "bad", None, LABELS)
    bootstrap._create(core, "half", NS, {"public.pem": public}, {})
    with pytest.raises(ValueError, match=r"lacks private\.pem"):
        bootstrap.ensure_keys(core, NS, "half", None, LABELS)


def test_the_chart_runs_the_file_with_python_c():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(), "keys", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--signing-key-secret" in result.stdout


def keys_job_args(out: Rendered) -> list[str]:
    """The arguments the chart's key hook Job runs this file with."""
    (container,) = pod_spec(out.get("Job", "modelyard-keys"))["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-c", SCRIPT.read_text()]
    return command[3:]


def dns_names(cert_pem: bytes) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def test_the_key_job_makes_the_certificate_and_cookie_key_once(bootstrap, kube, tmp_path):
    """Made in the cluster, once, not by a template: a render without a cluster (`helm
    template`, Argo CD) would make new ones every time, rotating the CA under running pods."""
    from cryptography import x509

    fake, api = kube
    args = keys_job_args(render(None))
    assert bootstrap.main(args, api=api, namespace=NS) == 0
    tls = secret_data(fake, "modelyard-tls")
    assert fake.secrets[(NS, "modelyard-tls")]["type"] == "kubernetes.io/tls"
    session = secret_data(fake, "modelyard-ui")["sessionSecret"]
    assert len(session) >= 32
    # Every upgrade (every Argo CD sync) runs the Job again: nothing changes.
    assert bootstrap.main(args, api=api, namespace=NS) == 0
    assert secret_data(fake, "modelyard-tls") == tls
    assert secret_data(fake, "modelyard-ui")["sessionSecret"] == session

    ca = x509.load_pem_x509_certificate(tls["ca.crt"])
    x509.load_pem_x509_certificate(tls["tls.crt"]).verify_directly_issued_by(ca)
    names = dns_names(tls["tls.crt"])
    for component in ("auth", "tracking", "registry", "serving", "features", "ui", "gateway"):
        assert f"modelyard-{component}" in names
        assert f"modelyard-{component}.ml.svc.cluster.local" in names
    assert "localhost" in names  # kubectl port-forward
    assert not any(n.startswith("*") for n in names)  # no wildcard without endpoint pods

    # A service serving it, and a client trusting the CA, as the pods are given them.
    for key, value in tls.items():
        (tmp_path / key).write_bytes(value)
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        tls=TLSSettings(cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key"),
    )
    with (
        running_server(settings, ("tracking",)) as server,
        Client(f"grpcs://{server.address}", tls_ca=str(tmp_path / "ca.crt")) as client,
    ):
        assert client.create_experiment("over-tls")


def test_with_the_endpoint_controller_the_certificate_covers_endpoint_services(bootstrap, kube):
    fake, api = kube
    assert bootstrap.main(keys_job_args(render(values_of("dev"))), api=api, namespace=NS) == 0
    names = dns_names(secret_data(fake, "modelyard-tls")["tls.crt"])
    assert {"*.ml.svc", "*.ml.svc.cluster.local"} <= names  # modelyard-ep-<endpoint>.ml.svc


def test_a_tls_secret_of_your_own_is_not_made(bootstrap, kube):
    fake, api = kube
    out = render({"tls": {"existingSecret": "cert-manager-made"}})
    assert bootstrap.main(keys_job_args(out), api=api, namespace=NS) == 0
    assert not {name for _, name in fake.secrets} & {"modelyard-tls", "cert-manager-made"}


def test_the_key_job_makes_the_dev_passwords_once_and_the_pods_find_them(bootstrap, kube):
    """The dev profile's PostgreSQL, MinIO and Redis passwords are made once in the cluster: made
    by templates, every render without a cluster gave the services passwords the running
    databases were never initialised with."""
    fake, api = kube
    dev = values_of("dev")
    assert dev is not None
    out = render(dev)
    args = keys_job_args(out)
    assert bootstrap.main(args, api=api, namespace=NS) == 0
    made = {
        name: secret_data(fake, name)
        for name in ("modelyard-database", "modelyard-s3", "modelyard-redis")
    }
    password = made["modelyard-database"]["password"].decode()
    assert len(password) == 32 and password.isalnum()
    assert made["modelyard-database"]["url"].decode() == (
        f"postgresql://modelyard:{password}@modelyard-postgresql:5432/modelyard"
    )
    redis = made["modelyard-redis"]["password"].decode()
    assert made["modelyard-redis"]["uri"].decode() == f"redis://:{redis}@modelyard-redis:6379/0"
    assert made["modelyard-s3"]["accessKey"].startswith(b"modelyard-")
    assert len(made["modelyard-s3"]["secretKey"]) == 40
    env = secret_data(fake, "modelyard-endpoint-env")
    assert env["MODELYARD_BACKEND_STORE_URI"] == made["modelyard-database"]["url"]
    assert env["MODELYARD_S3__ACCESS_KEY"] == made["modelyard-s3"]["accessKey"]
    assert env["MODELYARD_S3__SECRET_KEY"] == made["modelyard-s3"]["secretKey"]
    assert env["MODELYARD_MIGRATE_ON_START"] == b"false"
    assert env["MODELYARD_LOG_LEVEL"] == b"INFO"
    assert "MODELYARD_HOME" not in env

    # Every key the dev StatefulSets and the services read from these Secrets is there.
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for workload in out.workloads()
        for c in pod_spec(workload).get("containers", [])
        + pod_spec(workload).get("initContainers", [])
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    ref_names = {r["name"] for r in refs}
    assert {"modelyard-database", "modelyard-s3", "modelyard-redis"} <= ref_names
    for ref in refs:
        if ref["name"] in made:
            assert ref["key"] in made[ref["name"]], ref

    # Every upgrade (every Argo CD sync) runs the Job again: the passwords stay, and the
    # endpoint pods' environment follows the configuration.
    upgraded = keys_job_args(render({**dev, "logLevel": "DEBUG"}))
    assert bootstrap.main(upgraded, api=api, namespace=NS) == 0
    for name, data in made.items():
        assert secret_data(fake, name) == data
    env_after = secret_data(fake, "modelyard-endpoint-env")
    assert env_after == {**env, "MODELYARD_LOG_LEVEL": b"DEBUG"}


def test_secrets_an_older_chart_rendered_are_kept_through_gitops_prunes(bootstrap, kube):
    """Upgrading from a chart whose templates made the TLS, cookie-key and dev Secrets: Argo CD
    and Flux render the new chart without a cluster, no longer find them in the manifests and
    would prune them, and the next sync's Job would make a new CA, cookie key and passwords.
    The Job marks them not to be pruned, keeping their data; its own Secrets are never in the
    manifests and get no marks."""
    fake, api = kube
    core = k8s.CoreV1Api(api)
    release = {"meta.helm.sh/release-name": "modelyard", "meta.helm.sh/release-namespace": NS}
    older = ("modelyard-tls", "modelyard-s3", "modelyard-endpoint-env")
    for name in older:
        data = {"accessKey": b"AK", "secretKey": b"SK"} if name == "modelyard-s3" else {"x": b"1"}
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, annotations=release, labels=LABELS),
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        )
        core.create_namespaced_secret(NS, body)
    before = {name: secret_data(fake, name) for name in ("modelyard-tls", "modelyard-s3")}
    fake.conflicts = 1  # another writer in between: retried
    out = render(values_of("dev"))
    assert bootstrap.main(keys_job_args(out), api=api, namespace=NS) == 0
    # The Job's Role lets it update exactly those it may have to mark.
    role = out.get("Role", "modelyard-keys")
    updatable = {n for r in role["rules"] if "update" in r["verbs"] for n in r["resourceNames"]}
    assert set(older) <= updatable
    assert "modelyard-signing-key" not in updatable

    for name in older:
        annotations = fake.secrets[(NS, name)]["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/sync-options"] == "Prune=false", name
        assert annotations["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous", name
        assert annotations["kustomize.toolkit.fluxcd.io/prune"] == "disabled", name
        assert release.items() <= annotations.items(), name
    for name, data in before.items():
        assert secret_data(fake, name) == data
    env = secret_data(fake, "modelyard-endpoint-env")
    assert env["MODELYARD_S3__ACCESS_KEY"] == b"AK"  # rewritten as before, marks kept
    made = fake.secrets[(NS, "modelyard-ui")]["metadata"]
    assert not made.get("annotations")


# -- service tokens (the auth pod's init container) -----------------------------------------------


@pytest.fixture
def auth_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment the chart gives the init container: database URL and key files."""
    private, public = generate_keypair()
    (tmp_path / "private.pem").write_bytes(private)
    (tmp_path / "public.pem").write_bytes(public)
    env = {
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'modelyard.db'}",
        "MODELYARD_AUTH__ENABLED": "true",
        "MODELYARD_AUTH__PRIVATE_KEY_FILE": str(tmp_path / "private.pem"),
        "MODELYARD_AUTH__PUBLIC_KEY_FILE": str(tmp_path / "public.pem"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def mint(bootstrap, kube, services: str = "tracking,registry") -> list[str]:
    fake, api = kube
    if (NS, "tok") not in fake.secrets:
        bootstrap._create(k8s.CoreV1Api(api), "tok", NS, {}, LABELS)
    before = {k: v for k, v in secret_data(fake, "tok").items()}
    assert (
        bootstrap.main(
            ["service-tokens", "--secret=tok", f"--services={services}"], api=api, namespace=NS
        )
        == 0
    )
    after = secret_data(fake, "tok")
    return sorted(k for k in after if after[k] != before.get(k))


def test_minted_tokens_are_accepted_by_the_auth_server(bootstrap, kube, auth_env: Settings):
    assert mint(bootstrap, kube) == ["registry", "tracking"]
    tokens = {k: v.decode() for k, v in secret_data(kube[0], "tok").items()}
    verifier = TokenVerifier(auth_env.auth.public_key_file.read_bytes())
    assert verifier.verify(tokens["tracking"]).principal == "svc-tracking"
    assert verifier.verify(tokens["registry"]).principal == "svc-registry"
    settings = auth_env.model_copy(update={"host": "127.0.0.1", "port": 0, "grace_period": 0})
    with running_server(settings, ("auth",)) as server:
        state = AuthClient(Transport(server.address, tokens["tracking"])).get_auth_state()
        assert "svc-tracking" in {p.name for p in state.principals}
        with pytest.raises(Unauthenticated):
            AuthClient(Transport(server.address, tokens["tracking"] + "x")).get_auth_state()


def test_valid_tokens_are_kept_and_bad_ones_replaced(bootstrap, kube, auth_env: Settings):
    fake, _ = kube
    assert mint(bootstrap, kube) == ["registry", "tracking"]
    # A restart with every token valid changes nothing.
    assert mint(bootstrap, kube) == []
    # A revoked token is replaced, and only that one.
    tokens = {k: v.decode() for k, v in secret_data(fake, "tok").items()}
    verifier = TokenVerifier(auth_env.auth.public_key_file.read_bytes())
    service = bootstrap.open_auth_service(auth_env)
    try:
        service.store.revoke_token(verifier.verify(tokens["registry"]).token_id)
        # A token about to expire is replaced too.
        soon = TokenSigner(auth_env.auth.private_key_file.read_bytes())
        short, claims = soon.sign("svc-tracking", 3600)
        service.store.add_token(
            claims.token_id, "svc-tracking", "short", int(claims.expires_at * 1000)
        )
    finally:
        service.store.close()
    data = {**tokens, "tracking": short}
    stored = fake.secrets[(NS, "tok")]
    stored["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    assert mint(bootstrap, kube) == ["registry", "tracking"]
    # Signed with another key, garbage, or another service's token: replaced.
    other_private, _ = generate_keypair()
    foreign, _ = TokenSigner(other_private).sign("svc-serving", 10**7)
    current = {k: v.decode() for k, v in secret_data(fake, "tok").items()}
    bad = {"tracking": foreign, "registry": "not-a-token", "serving": current["tracking"]}
    stored = fake.secrets[(NS, "tok")]
    stored["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in bad.items()}
    assert mint(bootstrap, kube, "tracking,registry,serving") == ["registry", "serving", "tracking"]


def test_a_concurrent_writer_is_retried(bootstrap, kube, auth_env: Settings):
    fake, _ = kube
    fake.conflicts = 1  # the other auth replica wrote first
    assert mint(bootstrap, kube) == ["registry", "tracking"]
    assert [m for m, _ in fake.requests].count("PUT") == 2


def test_a_missing_token_secret_is_an_error(bootstrap, kube, auth_env: Settings):
    _, api = kube
    with pytest.raises(LookupError, match="key hook Job creates it"):
        bootstrap.main(
            ["service-tokens", "--secret=nope", "--services=tracking"], api=api, namespace=NS
        )


def test_waits_for_the_database_then_gives_up(bootstrap, tmp_path: Path):
    settings = Settings(
        home=tmp_path,
        # Nothing listens there: PostgreSQL is not up yet.
        backend_store_uri=f"postgresql://modelyard@127.0.0.1:{free_port()}/modelyard",
        auth=AuthSettings(enabled=True),
    )
    now = [time.monotonic()]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(OperationalError):
        bootstrap.open_auth_service(settings, wait_seconds=40, clock=lambda: now[0], sleep=sleep)
    assert slept == [1.0, 2.0, 4.0, 8.0, 15.0]
