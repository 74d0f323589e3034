"""The container image's recipe: multi-stage, a slim base, an unprivileged user the chart's pods
match, `modelyard` as the entry point, nothing to build with in the final stage, and a build
context holding only the package."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from tests.helm.conftest import CHART, ROOT


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages as (instruction, arguments) lists, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    result: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, arguments.strip()))
    return result


def test_build_and_runtime_are_separate_stages_on_a_slim_python():
    build, runtime = stages()
    assert build[0][1].endswith("AS build") and runtime[0][1].endswith("AS runtime")
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text())
    assert base and re.fullmatch(r"python:3\.11-slim(-\w+)?", base.group(1))
    # Only the installed virtualenv crosses into the final stage.
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=build /opt/modelyard /opt/modelyard"]


def test_final_stage_has_no_build_tools():
    _, runtime = stages()
    commands = " ".join(a for i, a in runtime if i == "RUN")
    for tool in ("apt-get", "apk", "gcc", "build-essential", "make ", "pip install"):
        assert tool not in commands, tool
    # The base image's own pip is removed; the virtualenv's is removed in the build stage.
    assert "pip uninstall --yes pip setuptools wheel" in commands
    build, _ = stages()
    assert "pip uninstall --yes pip setuptools wheel" in " ".join(a for i, a in build if i == "RUN")


def test_runs_modelyard_as_the_user_the_chart_expects():
    _, runtime = stages()
    instructions = dict(runtime)
    assert instructions["USER"] == "10001:10001"
    assert json.loads(instructions["ENTRYPOINT"]) == ["modelyard"]
    assert json.loads(instructions["CMD"])[:2] == ["serve", "tracking"]
    assert "50051" in instructions["EXPOSE"].split()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == 10001
    assert values["securityContext"]["runAsGroup"] == 10001


def _version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_image_and_chart_carry_the_packages_version():
    """The image said nothing of what it was (no OCI version or revision label), and nothing
    tied the chart's appVersion (the image tag its pods pull) to the package's version: a
    release that bumped one and not the other installed an image of another version."""
    import modelyard

    version = _version()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == version == modelyard.__version__
    _, runtime = stages()
    args = dict(a.partition("=")[::2] for i, a in runtime if i == "ARG")
    assert args["VERSION"] == version
    assert "REVISION" in args  # docker build --build-arg REVISION="$(git rev-parse HEAD)"
    labels = dict(
        re.findall(
            r'(org\.opencontainers\.image\.\w+)="([^"]*)"',
            " ".join(a for i, a in runtime if i == "LABEL"),
        )
    )
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.source"] == chart["sources"][0] == chart["home"]


def test_build_fails_when_migrations_are_missing_from_the_install():
    build, _ = stages()
    commands = " ".join(a for i, a in build if i == "RUN")
    assert "head_revision" in commands and "migrations/versions" in commands


def test_build_context_holds_only_the_package():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "setup.py", "README.md", "modelyard", "services"}
    for path in included:
        assert (ROOT / path).exists(), path
    copied = {
        part.rstrip("/")
        for instruction, arguments in stages()[0]
        if instruction == "COPY"
        for part in arguments.split()[:-1]
    }
    assert copied == included


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_builds_and_answers_health_checks(docker_engine: None) -> None:
    """Where a Docker engine is reachable: build the image, run `serve tracking` in it as the
    chart runs pods (read-only root, writable home and /tmp only), and ask grpc.health.v1."""
    import docker
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    client = docker.from_env()
    image, _logs = client.images.build(
        path=str(ROOT), tag="modelyard:test", rm=True, buildargs={"REVISION": "0" * 40}
    )
    assert image.labels["org.opencontainers.image.version"] == _version()
    assert image.labels["org.opencontainers.image.revision"] == "0" * 40
    container = client.containers.run(
        image.id,
        ["serve", "tracking", "--host", "0.0.0.0", "--port", "50051"],
        detach=True,
        ports={"50051/tcp": ("127.0.0.1", None)},
        read_only=True,
        tmpfs={"/tmp": "", "/var/lib/modelyard": "uid=10001,gid=10001"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["50051/tcp"][0]["HostPort"]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="modelyard.tracking.v1.TrackingService"),
                wait_for_ready=True,
                timeout=60,
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, container.logs()[-2000:]
    finally:
        container.remove(force=True)
