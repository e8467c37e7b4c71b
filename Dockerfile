# syntax=docker/dockerfile:1
# The one image every exalb container runs (charts/exalb): exalb-controller, exalb-speaker,
# ExaBGP with its launcher and bridge (python -m speaker.exabgp.launch, exalb-exabgp-bridge),
# and the garp sidecar (exalb-garp). Build (BuildKit): docker build -t <registry>/exalb:<tag> .
# Not built in CI (needs a container engine).

# Wheels for exalb and its dependencies; the sources stay in this stage.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exalb ./exalb
COPY controller ./controller
COPY speaker ./speaker
COPY garp ./garp
COPY exabgp_conf ./exabgp_conf
COPY exalbctl ./exalbctl
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Installed into the system interpreter, so every console script, `exabgp` and the bridge
# live in /usr/local/bin: the speaker renders the bridge's absolute path into exabgp.conf and
# the ExaBGP container (same image) finds it at the same place.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels exalb \
    && groupadd --system --gid 65532 exalb \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exalb
# Non-root by default (the controller). The speaker pod runs as UID 0 with every capability
# dropped except NET_RAW for garp; see speaker.podSecurityContext in charts/exalb/values.yaml.
USER 65532:65532
WORKDIR /
# No ENTRYPOINT: the chart sets each container's command.
CMD ["exalb-controller", "--help"]
