# syntax=docker/dockerfile:1
# Container image for `syncer`: `docker build -t syncer .`
#
# Two stages: the first builds wheels of syncer and all its dependencies, the second
# installs them from those wheels alone (--no-index), so the runtime image carries no
# compiler, build backend, source tree or pip cache.
#
# The base is pinned by tag (Python minor + Debian release). For byte-for-byte
# reproducible builds pass a digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from: README.md is the package's readme in pyproject.toml.
COPY pyproject.toml README.md ./
COPY syncer ./syncer
# Wheels for the dependencies too, so the final stage never talks to an index.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# Declared again: an ARG from before the first FROM is visible to FROM lines only, and the
# base.name label below would otherwise be empty.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="syncer" \
      org.opencontainers.image.description="Container registry mirroring job: copy only what is missing, cheaply and safely." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# The wheels are bind-mounted for this one step only: they never become a layer.
# pip still byte-compiles what it installs (PYTHONDONTWRITEBYTECODE only affects the
# interpreter), which is what a read-only root filesystem wants: no .pyc written later.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    pip install --no-index --find-links=/wheels /wheels/syncer-*.whl \
 && syncer --version

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SYNCER_CONFIG=/etc/syncer/sync.yaml \
    SYNCER_LOG_FORMAT=json \
    DOCKER_CONFIG=/etc/syncer/docker \
    HOME=/tmp
# HOME=/tmp: uid 65532 has no passwd entry, and anything that looks up a home
# directory must find a writable one (an emptyDir under Kubernetes).
WORKDIR /tmp

# A numeric user, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
# `syncer schedule --metrics-port 9090` serves /metrics and /healthz here.
EXPOSE 9090
ENTRYPOINT ["syncer"]
CMD ["sync"]
