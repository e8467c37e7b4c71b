#!/usr/bin/env bash
# The main job on the bundled examples: check MetalLB configs (both formats), convert a legacy
# ConfigMap to CRDs, and plan a pool edit without churn. (The full lab demo with routers and
# a control plane comes with the later issues.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctl=.venv/bin/exalbctl
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "The three legacy MetalLB ConfigMap examples, accepted unchanged"
for f in examples/legacy/*.yaml; do echo "-- $f"; "$ctl" config check "$f"; done
say "The same legacy BGP config as metallb.io objects"
"$ctl" config convert examples/legacy/bgp.yaml
say "A set of metallb.io CRD objects"
"$ctl" config check examples/crds/*.yaml
say "Plan: the Services under the current config"
"$ctl" plan --config examples/plan/config-v1.yaml --services examples/plan/services.yaml
say "Plan: shrinking pool 'web' keeps every IP; prod/shop is flagged out-of-pool, not moved"
"$ctl" plan --config examples/plan/config-v2.yaml --services examples/plan/services.yaml
