#!/usr/bin/env bash
# Set up everything exalb's tests and demo need on a fresh Debian 12 machine (as root):
# Debian packages (FRR, BIRD 2, nftables, iproute2, arping, ping, tcpdump; for the real cluster: containerd,
# runc, the CNI plugins, iptables, conntrack; for the images: mmdebstrap, buildah; gcc for
# the pause program), a Python venv with exalb and its test tools. Idempotent: a second
# run only checks. npm comes from Debian when the machine has none; Go >= 1.26 (for
# tests/controlplane/build.sh) must come with the machine: Debian 12's golang is 1.19.
# Long steps write to log files and show an elapsed-time line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/progress.sh
source scripts/lib/progress.sh
logs="${EXALB_CACHE:-$HOME/.cache/exalb}/logs"

APT_PACKAGES=(frr frr-pythontools bird2 nftables iproute2 iputils-arping iputils-ping tcpdump time python3-venv
  containerd runc containernetworking-plugins iptables conntrack util-linux mount
  mmdebstrap buildah gcc libc6-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  run_logged "apt-get update" "$logs/setup-apt.log" apt-get update -q
  run_logged "apt-get install (${#missing[@]} packages)" "$logs/setup-apt.log" \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
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
  run_logged "pip install --upgrade pip" "$logs/setup-pip.log" .venv/bin/pip install --upgrade pip
  run_logged "pip install -e .[test]" "$logs/setup-pip.log" .venv/bin/pip install -e '.[test]'
  touch "$stamp"
fi
