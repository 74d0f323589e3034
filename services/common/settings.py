"""The one settings object of a server process.

Values come from keyword arguments (the CLI's flags), then `MODELYARD_*` environment variables
(nested: `MODELYARD_S3__ENDPOINT`), then defaults. Nothing below the composition root reads the
environment: the settings object is passed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelyard.errors import InvalidArgument
from modelyard.services.common.cpu_affinity import parse_cpus

# How the SQLite store commits (see Settings.sqlite_synchronous).
SQLiteSynchronous = Literal["normal", "full"]
# The user and groups the image runs as (Dockerfile: USER 10001:10001), for the pods the serving
# endpoint controller makes.
# A Kubernetes resource quantity: YAML and JSON give `cpu: 2` and `nvidia.com/gpu: 1` as numbers,
# which Kubernetes takes as they are.
Quantity = Annotated[str, BeforeValidator(lambda v: str(v) if type(v) in (int, float) else v)]
PodUserKey = Literal["runAsUser", "runAsGroup", "fsGroup"]
DEFAULT_POD_USER: dict[PodUserKey, int] = {
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
}


class S3Settings(BaseModel):
    """Connection to an S3-compatible object store (MinIO, AWS S3, Ceph, rclone serve s3, ...)."""

    model_config = {"extra": "forbid"}

    # host:port, or a URL whose scheme (http/https) also sets `secure`.
    endpoint: str = "s3.amazonaws.com"
    # Endpoint put into presigned URLs, when clients reach S3 by another name than the server does.
    public_endpoint: str | None = None
    # No access_key: credentials from the environment, ~/.aws or the cloud identity (IRSA, ECS,
    # EC2 instance profile), as the AWS SDKs find them.
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    session_token: SecretStr | None = None
    region: str | None = None
    secure: bool = True
    # Custom CA bundle for a TLS endpoint with a private certificate authority.
    ca_file: Path | None = None
    # Lifetime of presigned URLs handed to clients.
    presign_expiry_seconds: int = Field(default=300, ge=1, le=3600)
    # Multipart part size for uploads of unknown length (streamed through UploadArtifact). Each
    # such upload holds one part in server memory while it runs: budget the pod's memory for
    # part_size_mb x the concurrent streamed uploads (presigned uploads hold none).
    part_size_mb: int = Field(default=16, ge=5, le=5120)


class RegistrySettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Where the registry reaches the tracking service; None means this process (modelyard up).
    tracking_uri: str | None = None
    # Threads copying new versions' files into registry storage.
    copy_workers: int = Field(default=4, ge=1, le=64)


class ClusterSettings(BaseModel):
    """The endpoint controller: serve each endpoint as its own Deployment (in a cluster)."""

    model_config = {"extra": "forbid"}

    enabled: bool = False
    # Defaults to the namespace this pod runs in.
    namespace: str | None = None
    # This install's name (the chart passes its release's fullname): endpoint objects are named
    # <instance>-ep-<endpoint> and labelled with it, and the controller manages only those, so
    # two releases can share a namespace. The default keeps a single install's names.
    instance: str = Field(default="modelyard", pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
    image: str = "modelyard:latest"
    # The endpoint pods' imagePullPolicy (the chart passes image.pullPolicy: a mutable tag
    # pulled Always by the chart's pods must be pulled Always by the endpoint pods too).
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # The endpoint pods' user and groups (the chart passes its securityContext, so they run as its
    # own pods do); a key left out is left to the cluster, as OpenShift assigns one per namespace.
    pod_security_context: dict[PodUserKey, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: dict(DEFAULT_POD_USER)
    )
    service_account: str | None = None
    env_secret: str | None = None
    # {path in an endpoint pod: "<secret>/<key>"}: the files it reads (public signing key, TLS).
    secret_files: dict[str, str] = Field(default_factory=dict)
    # Secret with the serving service token (key `serving`), the endpoint pods' identity.
    service_token_secret: str | None = None
    # Annotations of the endpoint pods. The chart puts the checksum of the Secret values it
    # holds here: a pod reads its environment at start, so a changed value must roll the pods.
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    registry_uri: str = "modelyard-registry:50051"
    features_uri: str = "modelyard-features:50051"
    # Requests and limits of each endpoint pod (Kubernetes quantities: {"cpu": "2", "memory":
    # "8Gi"}); its models are loaded in its memory.
    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "512Mi"}
    )
    limits: dict[str, Quantity] = Field(default_factory=lambda: {"cpu": "2", "memory": "2Gi"})
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=5, ge=1)
    target_cpu_percent: int = Field(default=70, ge=1, le=100)
    # Where endpoint pods may run (Kubernetes nodeSelector and tolerations, as the API spells
    # them), e.g. GPU nodes, which are usually tainted.
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str | int]] = Field(default_factory=list)
    resync_seconds: float = Field(default=30.0, gt=0)


class ServingSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Serve only these endpoints (an endpoint's own pods); None serves all of them.
    endpoints: list[str] | None = None
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    # Where serving reaches the registry; None means this process (modelyard up).
    registry_uri: str | None = None
    # Where serving looks features up for models trained from a feature service; None: this
    # process.
    features_uri: str | None = None
    # Downloaded model versions, keyed by content digest; default <home>/model-cache.
    cache_dir: Path | None = None
    # Threads loading model versions in the background.
    load_workers: int = Field(default=4, ge=1, le=64)
    # ModelStreamInfer: requests of one stream read ahead and answered at once (so that they are
    # batched together, as concurrent ModelInfer calls are); its further requests wait unread.
    stream_window: int = Field(default=16, ge=1, le=1024)
    # Threads answering the requests of all streams; beyond this many at once, requests wait.
    stream_workers: int = Field(default=32, ge=1, le=1024)


class FeaturesSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # sqlite:///path.db (default <home>/online.db) or redis://host:6379/0.
    online_store_uri: str | None = None
    # DuckDB worker threads for training sets; None uses every core.
    duckdb_threads: int | None = Field(default=None, ge=1)
    # The memory a training set's or materialization's join may take before DuckDB spills it
    # to duckdb_temp_directory, e.g. "4GB"; None: DuckDB's default, 80% of the machine's RAM.
    duckdb_memory_limit: str | None = Field(
        default=None, pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    # Where DuckDB spills; None: <home>/duckdb-tmp (DuckDB's own default is the server's
    # working directory).
    duckdb_temp_directory: Path | None = None
    # Definitions are cached this long; another replica's apply shows here within it.
    definitions_cache_seconds: float = Field(default=5.0, ge=0)
    # Where callers without the admin role may point feature view sources (the server reads
    # them with its own access): URI prefixes such as s3://warehouse/features, /data/features,
    # postgresql://warehouse.internal/analytics. Empty: only admins may set a source (with
    # authentication off, everyone is one).
    source_locations: list[str] = Field(default_factory=list)

    @field_validator("source_locations")
    @classmethod
    def _places(cls, value: list[str]) -> list[str]:
        """Checked here, so a bad entry is a settings error at start, not a refusal later."""
        from modelyard.services.feature_store.source_locations import location_of

        for entry in value:
            try:
                location_of(entry)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}; list places such as s3://bucket/prefix, /data/features or "
                    "postgresql://host/database"
                ) from None
        return value


class AuthSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Check a bearer token on every call. `modelyard up` defaults to off (and says so); the Helm
    # chart turns it on.
    enabled: bool = False
    # Ed25519 key pair (PEM). The auth service signs with the private key; every service
    # verifies with the public key. Unset under `modelyard up`: a pair is kept in <home>/auth.
    private_key_file: Path | None = None
    public_key_file: Path | None = None
    # Where the auth service listens when it is not in this process.
    auth_uri: str | None = None
    # This process's identity towards other services (a token of principal svc-<service>): the
    # token itself, or a file holding it, read again whenever it changes (a mounted Secret that
    # is renewed while the process runs; services/common/service_token.py). Not both.
    service_token: SecretStr | None = None
    service_token_file: Path | None = None
    # How often revocations and role changes are pulled; the bound on revocation delay.
    refresh_seconds: float = Field(default=5.0, gt=0, le=300)
    # Aliases whose moves need MANAGE on the model (others need EDIT).
    protected_aliases: list[str] = Field(default_factory=lambda: ["champion", "production", "prod"])

    @model_validator(mode="after")
    def _one_token_source(self) -> AuthSettings:
        if self.service_token is not None and self.service_token_file is not None:
            raise ValueError(
                "set one of MODELYARD_AUTH__SERVICE_TOKEN and MODELYARD_AUTH__SERVICE_TOKEN_FILE, "
                "not both"
            )
        return self


class TLSSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Serve TLS with this certificate chain and key (PEM).
    cert_file: Path | None = None
    key_file: Path | None = None
    # Require client certificates signed by this CA (mutual TLS).
    client_ca_file: Path | None = None
    # For calls to other services: the CA to trust, and this process's client certificate.
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class UISettings(BaseModel):
    model_config = {"extra": "forbid"}

    # `modelyard up` serves the web UI too (`modelyard ui` runs it on its own).
    enabled: bool = True
    # Defaults to the services' host.
    host: str | None = None
    port: int = Field(default=5000, ge=0, le=65535)
    # Where the UI reaches the services; None: this process (`modelyard up`).
    services_uri: str | None = None
    # Signs session cookies; default: a random key kept in <home>/ui/session.key.
    session_secret: SecretStr | None = None
    # Send cookies only over HTTPS (set when the UI sits behind a TLS ingress); always so when
    # the UI serves HTTPS itself (with tls.cert_file and tls.key_file).
    secure_cookies: bool = False
    # Host names the UI answers to besides localhost and its own addresses: the names it is
    # reached by (an ingress host, a DNS alias). Requests for any other name are refused, as a
    # page fetched under an attacker's name resolving here (DNS rebinding) would be.
    allowed_hosts: list[str] = []
    # Seconds a page waits for each call to a service. A hung service (its port open, no
    # answer) fails the page with 504 and that service's name after this long, and frees the
    # worker thread; without a bound each page waited the SDK's minute.
    call_timeout: float = Field(default=10.0, gt=0, le=600)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    # Also answer grpc.health.v1 checks, in plaintext, on this port (kubelets probe without TLS).
    health_port: int | None = Field(default=None, ge=0, le=65535)
    # State for the embedded defaults (SQLite database, local artifacts).
    home: Path = Path("~/.modelyard")
    # SQLAlchemy URL of the metadata store; default sqlite:///<home>/modelyard.db.
    backend_store_uri: str | None = None
    # SQLite store only: "normal" (WAL, no fsync per commit: acknowledged writes survive a crash
    # of the server, a power loss can drop the last ones) or "full" (an fsync per commit: they
    # survive a power loss too). PostgreSQL follows its own synchronous_commit.
    sqlite_synchronous: SQLiteSynchronous = "normal"
    # Root of artifact storage (file:///path or s3://bucket/prefix); default file://<home>/artifacts.
    artifact_uri: str | None = None
    s3: S3Settings = Field(default_factory=S3Settings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    ui: UISettings = Field(default_factory=UISettings)
    # Apply pending database migrations at start-up (`modelyard db upgrade` does it on demand).
    migrate_on_start: bool = True
    # Prometheus /metrics port; None turns the HTTP exporter off.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Seconds in-flight RPCs get to finish on SIGTERM before they are cancelled.
    grace_period: float = Field(default=10.0, ge=0)
    # Threads that run RPCs (services/common/thread_pool.py): `core_workers` take the calls;
    # more, up to `max_workers`, join only when calls are queued and none has finished for a
    # few ms (threads held by streaming RPCs, such as artifact transfers and change feeds, or by
    # calls waiting on other calls). Fewer busy threads cost less CPU per call under many small
    # concurrent calls (bench/README.md).
    core_workers: int = Field(default=4, ge=1)
    max_workers: int = Field(default=32, ge=1)
    max_message_mb: int = Field(default=64, ge=4)
    # Pin the server process to these CPUs ("0", "0-3", "0,2-3"); None leaves placement to the
    # kernel. Worth it where a server shares a few cores with its clients
    # (services/common/cpu_affinity.py).
    cpu_affinity: str | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def max_message_bytes(self) -> int:
        """The largest message the server receives or sends (max_message_mb)."""
        return self.max_message_mb * 1024 * 1024

    @field_validator("backend_store_uri")
    @classmethod
    def _usable_database_url(cls, value: str | None) -> str | None:
        """Checked here, so a bad URL is a settings error before anything connects."""
        if value is not None:
            from modelyard.services.common.db.engine import normalize_url  # imports Settings

            try:
                normalize_url(value)
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        """Checked here: a clash would fail only at bind, blaming the gRPC port."""
        ports = {"MODELYARD_PORT": self.port}
        for name, port in (
            ("MODELYARD_HEALTH_PORT", self.health_port),
            ("MODELYARD_METRICS_PORT", self.metrics_port),
        ):
            clash = [other for other, p in ports.items() if port and p == port]
            if clash:
                raise ValueError(f"{name} and {clash[0]} are both {port}; give each its own port")
            if port:
                ports[name] = port
        return self

    @field_validator("cpu_affinity")
    @classmethod
    def _known_cpus(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpus(value)
        return value

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().absolute()  # file:// URIs need an absolute path

    @property
    def database_url(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.home_dir / 'modelyard.db'}"

    @property
    def artifact_root(self) -> str:
        return self.artifact_uri or (self.home_dir / "artifacts").as_uri()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
