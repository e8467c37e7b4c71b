# syntax=docker/dockerfile:1
# The one image every exalb container runs (charts/exalb): exalb-controller, exalb-speaker,
# exalb-exabgp (ExaBGP's launcher) with ExaBGP and exalb-exabgp-bridge, exalb-bfdd (bfdd's
# launcher) with FRR's bfdd and vtysh, exalb-garp, exalbctl.
#   docker build -t <registry>/exalb:<tag> .
#   docker build --build-arg BASE=<registry>/python:3.11-slim -t ... .   (any Debian-based
#                                                                         Python 3.11+ image)
# The same layout is built without Docker by scripts/image.sh (Debian 12 + buildah), which
# is what the lab and the e2e tests run: a venv in /opt/exalb holding exalb and its runtime
# dependencies, byte-compiled, user 65532, read-only root file system at run time; users
# exalb-exabgp (65533) and exalb-garp (65531) for the speaker pod's other containers; the
# garp interpreter /opt/exalb/bin/python3-netraw with the file capability cap_net_raw; no
# setuid/setgid file.
ARG BASE=python:3.11-slim

# Wheels for exalb and its dependencies; the sources stay in this stage.
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/exalb \
    && /opt/exalb/bin/pip install --no-compile . \
    # the kubernetes client (exalbctl's port-forward and credential plugins) is used
    # synchronously; its asyncio twin and aiohttp are dead weight
    && site="$(/opt/exalb/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/kubernetes/aio" \
    && for p in aiohttp aiohttp_retry aiohappyeyeballs aiosignal frozenlist multidict propcache yarl attrs attr; do \
         rm -rf "$site/$p" "$site/$p"-*.dist-info; done \
    && /opt/exalb/bin/pip uninstall --yes pip setuptools wheel 2>/dev/null || true \
    && /opt/exalb/bin/python3 -m compileall -q --invalidation-mode unchecked-hash /opt/exalb/lib

FROM ${BASE}
ENV PATH=/opt/exalb/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The speaker finds ExaBGP and the bridge next to its own interpreter (/opt/exalb/bin), and
# renders that path into exabgp.conf; the ExaBGP container (same image) finds it there too.
COPY --from=build /opt/exalb /opt/exalb
# FRR's bfdd and vtysh for the speaker pod's bfd container (docs/bfd.md); no other FRR daemon
RUN apt-get update && apt-get install -y --no-install-recommends frr \
    && find /usr/lib/frr -maxdepth 1 -type f ! -name bfdd -delete \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 65532 exalb \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exalb \
    && useradd --system --uid 65533 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exalb-exabgp \
    && useradd --system --uid 65531 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exalb-garp \
    # garp needs NET_RAW as a non-root user: only a file capability gives it (see garp in
    # charts/exalb/values.yaml); on a copy of the interpreter, so nothing else gets it
    && cp "$(readlink -f /opt/exalb/bin/python3)" /opt/exalb/bin/python3-netraw \
    && python3 -c 'import os, struct; os.setxattr("/opt/exalb/bin/python3-netraw", \
         "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))' \
    && sed -i '1s|^#!.*$|#!/opt/exalb/bin/python3-netraw|' /opt/exalb/bin/exalb-garp \
    # the garp container may escalate (for that capability): nothing else may
    && find / -xdev -type f -perm /6000 -exec chmod ug-s {} +
# Non-root by default (the controller). The speaker pod's containers run as exalb,
# exalb-exabgp and exalb-garp; see charts/exalb/values.yaml.
USER 65532:65532
WORKDIR /
# No ENTRYPOINT: the chart sets each container's command.
CMD ["exalb-controller", "--help"]
