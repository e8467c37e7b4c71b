#!/usr/bin/env bash
# The lab demo, on a fresh Debian 12 machine, as root: installs what it needs, builds (or
# reuses) kube-apiserver + etcd from the Go modules, then runs exalb for real in network
# namespaces: one FRR router, three nodes (ExaBGP + exalb-speaker + exalb-garp each), a
# client, the controller, and a LoadBalancer Service whose traffic spreads over the nodes by
# ECMP, until a node fails and the traffic moves. Everything is torn down at the end.
#   scripts/demo.sh [--keep] [--requests N]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== setup (Debian packages, Python venv)"
scripts/setup.sh
echo "== helm and kubectl"
tests/controlplane/install-tools.sh
echo "== kube-apiserver and etcd (first build: about 8 minutes on 2 cores; then cached)"
tests/controlplane/build.sh
echo
exec scripts/lab demo "$@"
