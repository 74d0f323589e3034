"""Secrets the Helm chart cannot template, kept by two small programs that run in the cluster.

`keys` (a pre-install/pre-upgrade hook Job): creates, once, the Ed25519 token-signing key pair
(`private.pem`, `public.pem`), the empty Secret that holds the services' tokens, the services'
TLS certificate with its private CA, the web UI's cookie-signing key, and with the dev profile
the in-chart PostgreSQL, MinIO and Redis passwords and the endpoint pods' environment (which holds
two of them). Existing Secrets are left alone (a key pair is checked to be one; an older chart's
are annotated so that GitOps syncs do not prune them); the endpoint pods' environment is
rewritten to the release's configuration. A template could make all but the
key pair, but only with `lookup` to keep them: rendered without a cluster (`helm template`, Argo
CD) each render would make new ones, and every sync would rotate the CA under running pods and
sign every user out, and the services' dev passwords would no longer open the databases they
initialised.

`service-tokens` (an init container of the auth pod, which holds the signing key and the database
URL, and the renewal CronJob, run as the auth pod's ServiceAccount): makes sure the Secret holds a
valid token of principal svc-<service> for every calling service, minting one through the auth
service's own code where it is missing, unreadable, signed by another key, revoked, unknown to
the database, or expires within 30 days.

The chart runs this file with `python -c`; tests import it. It prints no token.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import string
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RENEW_BEFORE_SECONDS = 30 * 24 * 3600
DATABASE_WAIT_SECONDS = 300.0
CONFLICT_RETRIES = 5


def log(message: str) -> None:
    print(f"modelyard-bootstrap: {message}", file=sys.stderr, flush=True)


def _core(api: Any) -> Any:
    from kubernetes import client

    if api is None:
        from kubernetes import config

        config.load_incluster_config()
        api = client.ApiClient()
    return client.CoreV1Api(api)


def _read(core: Any, name: str, namespace: str) -> Any | None:
    from kubernetes.client.rest import ApiException

    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _create(
    core: Any,
    name: str,
    namespace: str,
    data: dict[str, bytes],
    labels: dict,
    secret_type: str = "Opaque",
) -> bool:
    """Create the Secret; False when someone else created it first."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        type=secret_type,
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def _decoded(secret: Any) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _labels(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    return {key: value for key, value in pairs}


# -- keys ----------------------------------------------------------------------------------------


def check_keypair(private_pem: bytes, public_pem: bytes) -> None:
    """Raise ValueError unless the two PEM blocks are one Ed25519 key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError("private.pem is not an Ed25519 key (openssl genpkey -algorithm ed25519)")
    derived = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    given = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if derived != given:
        raise ValueError("public.pem is not the public half of private.pem")


def ensure_keys(
    core: Any,
    namespace: str,
    signing_key_secret: str | None,
    tokens_secret: str | None,
    labels: dict[str, str],
) -> list[str]:
    """Create what is missing; return what was created."""
    from modelyard.services.common.auth.tokens import generate_keypair

    created = []
    if signing_key_secret:
        existing = _read(core, signing_key_secret, namespace)
        if existing is None:
            private, public = generate_keypair()
            data = {"private.pem": private, "public.pem": public}
            if _create(core, signing_key_secret, namespace, data, labels):
                created.append(signing_key_secret)
            existing = _read(core, signing_key_secret, namespace)
        keys = _decoded(existing)
        missing = {"private.pem", "public.pem"} - keys.keys()
        if missing:
            raise ValueError(f"Secret {signing_key_secret} lacks {', '.join(sorted(missing))}")
        check_keypair(keys["private.pem"], keys["public.pem"])
    if (
        tokens_secret
        and _read(core, tokens_secret, namespace) is None
        and _create(core, tokens_secret, namespace, {}, labels)
    ):
        created.append(tokens_secret)
    return created


def make_tls(dns_names: Sequence[str], days: int, name: str) -> dict[str, bytes]:
    """A private CA and one certificate, signed by it, naming every service (and 127.0.0.1):
    what a kubernetes.io/tls Secret holds (tls.crt, tls.key, ca.crt)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "tls.crt": cert.public_bytes(pem),
        "tls.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "ca.crt": ca.public_bytes(pem),
    }


def make_session_key() -> dict[str, bytes]:
    """The web UI's cookie-signing key."""
    return {"sessionSecret": secrets.token_urlsafe(36).encode()}


def ensure_generated(
    core: Any,
    namespace: str,
    name: str,
    make: Callable[[], dict[str, bytes]],
    labels: dict[str, str],
    secret_type: str = "Opaque",
) -> bool:
    """Create the Secret from make() unless it exists; True when created."""
    existing = _read(core, name, namespace)
    if existing is not None:
        keep_through_prunes(core, namespace, existing)
        return False
    return _create(core, name, namespace, make(), labels, secret_type)


# What keeps a Secret that an older chart rendered (a Helm release object) through a GitOps sync
# that renders this chart: the chart renders it from the cluster (`lookup`) for Helm, but Argo CD
# and Flux render without one, find it no longer in the manifests and prune it; the next sync's
# key Job would then make a new CA, cookie key or dev passwords, the rotation this Job prevents.
KEEP_THROUGH_PRUNES = {
    "argocd.argoproj.io/sync-options": "Prune=false",
    "argocd.argoproj.io/compare-options": "IgnoreExtraneous",  # not shown out of sync either
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
}


def keep_through_prunes(core: Any, namespace: str, secret: Any) -> Any:
    """Annotate a Secret an older chart rendered so GitOps tools do not prune it (this Job runs
    before a sync's prune: Argo CD runs Helm's pre-upgrade hooks as PreSync); the Secret as
    stored now."""
    from kubernetes.client.rest import ApiException

    name = secret.metadata.name
    for _ in range(CONFLICT_RETRIES):
        annotations = secret.metadata.annotations or {}
        if "meta.helm.sh/release-name" not in annotations:
            return secret  # made by this Job: never in the manifests, never pruned
        if KEEP_THROUGH_PRUNES.items() <= annotations.items():
            return secret
        secret.metadata.annotations = {**annotations, **KEEP_THROUGH_PRUNES}
        try:
            stored = core.replace_namespaced_secret(name, namespace, secret)
            log(f"Secret {name} (an older chart's) is kept through GitOps prunes")
            return stored
        except ApiException as exc:
            if exc.status != 409:
                raise
        secret = _read(core, name, namespace)
        if secret is None:
            return None
    raise RuntimeError(f"Secret {name} kept changing under us; giving up")


ALPHANUMERIC = string.ascii_letters + string.digits


def _random(length: int, alphabet: str = ALPHANUMERIC) -> str:
    """Letters and digits only, so a password needs no quoting inside a URL."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def make_password(url_key: str, url_format: str) -> dict[str, bytes]:
    """A password and the URL that holds it ({password} in url_format), as the dev PostgreSQL
    and Redis read one and the services the other."""
    password = _random(32)
    return {
        url_key: url_format.replace("{password}", password).encode(),
        "password": password.encode(),
    }


def make_s3_keys() -> dict[str, bytes]:
    """The dev MinIO's root user and password, which the services use as their S3 keys."""
    access = "modelyard-" + _random(12, string.ascii_lowercase + string.digits)
    return {"accessKey": access.encode(), "secretKey": _random(40).encode()}


def write_endpoint_env(
    core: Any,
    namespace: str,
    name: str,
    config: dict[str, str],
    database_secret: str,
    s3_secret: str,
    labels: dict[str, str],
) -> bool:
    """Make the endpoint pods' environment: config plus the database URL and S3 keys read from
    their Secrets. Rewritten whenever it differs, so an upgrade's configuration reaches it;
    True when it changed."""
    from kubernetes.client.rest import ApiException

    database = _decoded(_read(core, database_secret, namespace))
    s3 = _decoded(_read(core, s3_secret, namespace))
    env = {
        **config,
        "MODELYARD_BACKEND_STORE_URI": database["url"].decode(),
        "MODELYARD_S3__ACCESS_KEY": s3["accessKey"].decode(),
        "MODELYARD_S3__SECRET_KEY": s3["secretKey"].decode(),
    }
    data = {key: value.encode() for key, value in env.items()}
    for _ in range(CONFLICT_RETRIES):
        existing = _read(core, name, namespace)
        if existing is None:
            if _create(core, name, namespace, data, labels):
                return True
            continue
        existing = keep_through_prunes(core, namespace, existing)
        if existing is None:
            continue
        if _decoded(existing) == data:
            return False
        existing.data = {k: base64.b64encode(v).decode() for k, v in data.items()}
        existing.string_data = None
        try:
            core.replace_namespaced_secret(name, namespace, existing)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        return True
    raise RuntimeError(f"Secret {name} kept changing under us; giving up")


# -- service tokens ------------------------------------------------------------------------------


def open_auth_service(
    settings: Any,
    wait_seconds: float = DATABASE_WAIT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """The auth service's own object on its database, waiting for the database to answer."""
    from modelyard.services.auth.app import open_service
    from modelyard.services.common.runtime import Runtime

    deadline = clock() + wait_seconds
    delay = 1.0
    while True:
        try:
            return open_service(settings, Runtime(settings))
        except Exception as exc:
            if clock() + delay > deadline:
                raise
            log(f"database not ready ({type(exc).__name__}: {exc}); retrying in {delay:.0f}s")
            sleep(delay)
            delay = min(delay * 2, 15.0)


def token_problem(service: Any, verifier: Any, name: str, token: str | None, now: float) -> str:
    """Why `token` cannot stay the token of svc-`name` ('' when it can)."""
    from modelyard.errors import ModelyardError

    if not token:
        return "missing"
    try:
        claims = verifier.verify(token)
    except ModelyardError as exc:
        return f"invalid ({exc})"
    if claims.principal != f"svc-{name}":
        return f"belongs to {claims.principal}"
    if claims.expires_at - now < RENEW_BEFORE_SECONDS:
        return "expires within 30 days"
    try:
        info = service.store.get_token(claims.token_id)
    except ModelyardError:
        return "unknown to the database"
    if info.revoked:
        return "revoked"
    return ""


def ensure_service_tokens(
    core: Any,
    namespace: str,
    secret_name: str,
    services: Sequence[str],
    auth_service: Any,
    public_pem: bytes,
) -> list[str]:
    """Fill the Secret; return the services whose token was (re)minted."""
    from kubernetes.client.rest import ApiException

    from modelyard.services.common.auth.tokens import TokenVerifier

    verifier = TokenVerifier(public_pem)
    for _attempt in range(CONFLICT_RETRIES):
        secret = _read(core, secret_name, namespace)
        if secret is None:
            raise LookupError(
                f"Secret {secret_name} does not exist (the chart's key hook Job creates it)"
            )
        tokens = {k: v.decode() for k, v in _decoded(secret).items()}
        minted = []
        now = time.time()
        for name in services:
            problem = token_problem(auth_service, verifier, name, tokens.get(name), now)
            if problem:
                log(f"svc-{name}: token {problem}; minting a new one")
                tokens[name] = auth_service.mint_service_token(name)
                minted.append(name)
        if not minted:
            return []
        secret.data = {k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()}
        try:
            core.replace_namespaced_secret(secret_name, namespace, secret)
        except ApiException as exc:
            if exc.status == 409:  # another auth pod wrote first: check its tokens
                continue
            raise
        return minted
    raise RuntimeError(f"Secret {secret_name} kept changing under us; giving up")


# -- command line --------------------------------------------------------------------------------


def main(argv: Sequence[str], api: Any = None, namespace: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelyard-bootstrap")
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys")
    keys.add_argument("--signing-key-secret")
    keys.add_argument("--tokens-secret")
    keys.add_argument("--labels", default="")
    keys.add_argument("--tls-secret")
    keys.add_argument("--tls-names", default="")
    keys.add_argument("--tls-days", type=int, default=730)
    keys.add_argument("--ui-secret")
    keys.add_argument("--database-secret", help="dev PostgreSQL: keys url and password")
    keys.add_argument("--database-url", default="", help="the URL, with {password}")
    keys.add_argument("--redis-secret", help="dev Redis: keys uri and password")
    keys.add_argument("--redis-url", default="", help="the URI, with {password}")
    keys.add_argument("--s3-secret", help="dev MinIO: keys accessKey and secretKey")
    keys.add_argument("--endpoint-env-secret")
    keys.add_argument("--endpoint-env", default="{}", help="JSON: the environment but credentials")
    tokens = commands.add_parser("service-tokens")
    tokens.add_argument("--secret", required=True)
    tokens.add_argument("--services", default="")
    args = parser.parse_args(argv)

    core = _core(api)
    namespace = namespace or NAMESPACE_FILE.read_text().strip()
    if args.command == "keys":
        labels = _labels(args.labels)
        created = ensure_keys(core, namespace, args.signing_key_secret, args.tokens_secret, labels)
        if args.tls_secret:
            names = [n for n in args.tls_names.split(",") if n]
            tls = partial(make_tls, names, args.tls_days, args.tls_secret.removesuffix("-tls"))
            if ensure_generated(core, namespace, args.tls_secret, tls, labels, "kubernetes.io/tls"):
                created.append(args.tls_secret)
        if args.ui_secret and ensure_generated(
            core, namespace, args.ui_secret, make_session_key, labels
        ):
            created.append(args.ui_secret)
        passwords: list[tuple[str | None, Callable[[], dict[str, bytes]]]] = [
            (args.database_secret, partial(make_password, "url", args.database_url)),
            (args.redis_secret, partial(make_password, "uri", args.redis_url)),
            (args.s3_secret, make_s3_keys),
        ]
        for secret_name, make in passwords:
            if secret_name and ensure_generated(core, namespace, secret_name, make, labels):
                created.append(secret_name)
        if args.endpoint_env_secret and write_endpoint_env(
            core,
            namespace,
            args.endpoint_env_secret,
            json.loads(args.endpoint_env),
            args.database_secret,
            args.s3_secret,
            labels,
        ):
            created.append(args.endpoint_env_secret)
        log(f"created {', '.join(created)}" if created else "nothing to create")
        return 0

    from modelyard.services.common.auth.setup import public_key
    from modelyard.services.common.runtime import Runtime
    from modelyard.services.common.settings import Settings

    settings = Settings()
    services = [s for s in args.services.split(",") if s]
    auth_service = open_auth_service(settings)
    try:
        minted = ensure_service_tokens(
            core, namespace, args.secret, services, auth_service, public_key(Runtime(settings))
        )
    finally:
        auth_service.store.close()
    log(f"minted tokens for {', '.join(minted)}" if minted else "every service token is valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
