#!/usr/bin/env bash
# Set up everything exalb's tests and demo need on a fresh Debian 12 machine (as root):
# Debian packages (FRR, BIRD 2, nftables, iproute2, arping, ping, tcpdump; for the real cluster: containerd,
# runc, the CNI plugins, iptables, conntrack; for the images: mmdebstrap, buildah; gcc for
# the pause program), a Python venv with exalb and its test tools. Idempotent: a second
# run only checks. (Go, for tests/controlplane/build.sh, and npm come with the machine.)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(frr frr-pythontools bird2 nftables iproute2 iputils-arping iputils-ping tcpdump time python3-venv
  containerd runc containernetworking-plugins iptables conntrack util-linux mount
  mmdebstrap buildah gcc libc6-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The lab starts its own containerd per node; a packaged one must not run in the host.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
  echo "setup: note: a containerd service runs on this host; the lab does not use it" >&2
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.exalb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing exalb and test tools into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
