# syntax=docker/dockerfile:1
# One image for every Modelyard service: `modelyard serve <service>` is what each Deployment runs.
#
#   docker build -t modelyard:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 50051:50051 modelyard:0.1.0 serve tracking
#
# Two stages: the build stage installs the package into a virtualenv; the final stage holds only
# that virtualenv on a slim Python base, runs as an unprivileged user (10001) and works with a
# read-only root filesystem (state goes to MODELYARD_HOME, a volume in Kubernetes).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/modelyard
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY modelyard ./modelyard
COPY services ./services
# Every dependency ships manylinux wheels: no compiler is needed. The Alembic revision scripts
# (services/*/migrations/versions/, not Python packages) are copied in where the wheel lacks
# them, and the build fails if any service would start without its migrations. Bytecode is
# compiled here, since the running container cannot write it.
WORKDIR /tmp
RUN /opt/modelyard/bin/pip install --no-cache-dir /src \
    && site="$(/opt/modelyard/bin/python -c 'import modelyard.services as s, os; print(os.path.dirname(s.__file__))')" \
    && for versions in /src/services/*/migrations/versions; do \
         service="${versions#/src/services/}"; \
         cp -rn "$versions" "$site/${service%/versions}/"; \
       done \
    && /opt/modelyard/bin/python -m compileall -q "$site" \
    && /opt/modelyard/bin/python -c "import importlib; \
from modelyard.services.apps import SERVICES; \
from modelyard.services.common.db.migrations import head_revision; \
missing = [n for n, m in SERVICES.items() if head_revision(importlib.import_module(m).MIGRATIONS) is None]; \
assert not missing, f'no migrations installed for {missing}'" \
    && /opt/modelyard/bin/python -m pip uninstall --yes pip setuptools wheel \
    && /opt/modelyard/bin/modelyard --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="modelyard" \
      org.opencontainers.image.description="Modelyard ML platform services (gRPC)" \
      org.opencontainers.image.source="https://github.com/modelyard/modelyard" \
      org.opencontainers.image.licenses="Apache-2.0"
# No package manager tooling in the final image: drop the base image's pip, setuptools and wheel.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid 10001 modelyard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/modelyard --shell /usr/sbin/nologin modelyard \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/modelyard
COPY --from=build /opt/modelyard /opt/modelyard
ENV PATH=/opt/modelyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELYARD_HOME=/var/lib/modelyard \
    MODELYARD_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/modelyard
# gRPC (every service answers grpc.health.v1, for Kubernetes' native gRPC probes), and
# Prometheus /metrics when MODELYARD_METRICS_PORT is set.
EXPOSE 50051 9464
# Drain on SIGTERM: health turns NOT_SERVING, in-flight calls get MODELYARD_GRACE_PERIOD seconds.
STOPSIGNAL SIGTERM
# What the image is (OCI annotations, read by registries and scanners): VERSION is the package's
# (pyproject.toml; the chart's appVersion, the image tag it pulls), REVISION the commit built.
# Declared last, so a new commit does not invalidate the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENTRYPOINT ["modelyard"]
CMD ["serve", "tracking", "--host", "0.0.0.0", "--port", "50051"]
