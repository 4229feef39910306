# Detour's container image (docs/image.md). Build it with `scripts/build-image`, or directly with
#   docker build -t detour .      (BuildKit: the default since Docker 23)
#   buildah bud --layers -t detour .
#   podman build -t detour .
#
# BASE_IMAGE is any image with Python >= 3.11 and its venv module (`python3 -m venv` must give a venv
# with pip) and the C++ runtime libstdc++ (grpcio's manylinux wheel links it; Debian-based images
# have it through apt): the official python image by default, a mirrored or internal one where
# registries are closed. Both stages use it, so the wheels are built for the interpreter that runs
# them.
ARG BASE_IMAGE=python:3.12-slim

# --- builder: wheels for the project and every dependency -------------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Dependencies first, from pyproject.toml alone behind a stub package: editing the code then reuses
# this layer instead of downloading every dependency again.
#
# This is the only step that reaches the network. Behind a TLS-inspecting proxy, give it the CA
# bundle as the build secret `ca_bundle` (docs/image.md): a secret is mounted for this step only and
# never lands in a layer, and it works the same with docker build, buildah bud and podman build.
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv /opt/build; \
    python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
        > /tmp/build-requires.txt; \
    /opt/build/bin/pip install --index-url "$PIP_INDEX_URL" --requirement /tmp/build-requires.txt; \
    mkdir sidecar; touch sidecar/__init__.py README.md; \
    /opt/build/bin/pip wheel --index-url "$PIP_INDEX_URL" --no-build-isolation --wheel-dir /wheels .; \
    rm -rf /wheels/detour-*.whl sidecar README.md build *.egg-info

# The project's own wheel: offline, with the build requirements installed above.
COPY README.md ./
COPY sidecar ./sidecar
RUN /opt/build/bin/pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /wheels .

# --- runtime: the base plus one venv, nothing else ---------------------------------------------------
FROM ${BASE_IMAGE}
# The root filesystem is read-only at run time: Python must not try to write bytecode (everything is
# compiled below), and output must not wait in a buffer when the container is killed.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/detour/bin:$PATH \
    HOME=/tmp

# The wheels are bind-mounted from the builder rather than copied, so they cost no layer. pip leaves
# the venv once it has done its work: nothing installs anything at run time. Bytecode is compiled
# here for the venv and for the base's standard library (the official python images ship it without
# bytecode); a file of the base this Python cannot compile (test data, say) only stays uncached.
# The Kubernetes client's asyncio copy (kubernetes.aio, about a fifth of the image) goes too: Detour
# uses the synchronous client only. The last command proves that everything Detour imports is there,
# gRPC included (loaded only when serving, and the one native library a slim base may lack).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    set -eu; \
    python3 -m venv /opt/detour; \
    /opt/detour/bin/pip install --no-index --no-cache-dir --disable-pip-version-check --no-compile \
        --find-links /wheels detour; \
    /opt/detour/bin/pip uninstall --yes --quiet pip setuptools; \
    rm -rf /opt/detour/lib/python3*/site-packages/kubernetes/aio; \
    /opt/detour/bin/python -m compileall -q -j0 /opt/detour; \
    /opt/detour/bin/python -m compileall -q -j0 \
        "$(/opt/detour/bin/python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" >/dev/null || true; \
    /opt/detour/bin/detour --help >/dev/null; \
    /opt/detour/bin/python -c 'import sidecar.cli.serve, sidecar.ingress.grpc.server, sidecar.kube.client, kubernetes.client, kubernetes.watch'

# scripts/build-image fills these from sidecar/__init__.py, git and the clock.
ARG BASE_IMAGE
ARG VERSION=""
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="detour" \
      org.opencontainers.image.description="LLM-routing sidecar for Kubernetes: OpenAI and Anthropic APIs, rule-based routing, 429 failover inside the request." \
      org.opencontainers.image.url="https://github.com/detour-dev/detour" \
      org.opencontainers.image.source="https://github.com/detour-dev/detour" \
      org.opencontainers.image.documentation="https://github.com/detour-dev/detour/blob/main/docs/image.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A numeric UID:GID, so Kubernetes can verify runAsNonRoot without a passwd entry (distroless' nonroot).
USER 65532:65532
ENTRYPOINT ["detour"]
CMD ["serve"]
