#!/usr/bin/env bash
# The demo, on a fresh Debian 12 machine, as root: installs what it needs (Debian packages,
# the venv, helm and kubectl), builds (or reuses) the Kubernetes programs from the Go modules
# and the images (scripts/image.sh), then runs a real cluster in network namespaces and
# installs exalb on it with helm: BGP with ECMP and a node failure, then L2 with the legacy
# ConfigMap and a failover seen from a client. Everything is torn down at the end.
#   scripts/demo.sh [--keep] [--requests N]
# Build output goes to log files under ~/.cache/exalb; the terminal shows elapsed times.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== setup (Debian packages, Python venv)"
scripts/setup.sh
echo "== helm and kubectl"
tests/controlplane/install-tools.sh >/dev/null
echo "== Kubernetes programs (first build: 6 to 20 minutes on 2 cores; then cached)"
tests/controlplane/build.sh >/dev/null
echo "== images (first build: under a minute; then cached)"
scripts/image.sh >/dev/null
echo
exec scripts/lab demo "$@"
