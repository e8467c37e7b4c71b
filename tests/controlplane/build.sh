#!/usr/bin/env bash
# Build kube-apiserver and etcd for exalb's Kubernetes tests.
#
# Binaries land in ${EXALB_CACHE:-$HOME/.cache/exalb}/controlplane/<hash of go.sum>/bin/,
# so a version bump (which changes go.sum) gets a fresh directory and an unchanged go.sum
# reuses what is there: a second run is a no-op that only prints the path.
#
# Needs only Go (see go.mod for the version) and the Go module proxy. The build is
# CGO_ENABLED=0, so no C toolchain is required. On 2 cores a cold build takes several
# minutes; the last line printed is the bin directory (handy for
# `export EXALB_CONTROLPLANE_BIN=$(tests/controlplane/build.sh | tail -1)`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
    echo "build.sh: no Go toolchain found (set GO=/path/to/go)" >&2
    exit 1
fi

cache_root="${EXALB_CACHE:-$HOME/.cache/exalb}"
sum_hash="$(sha256sum "$here/go.sum" | cut -c1-16)"
out_dir="$cache_root/controlplane/$sum_hash"
bin_dir="$out_dir/bin"

if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" ]]; then
    echo "build.sh: already built" >&2
    echo "$bin_dir"
    exit 0
fi

mkdir -p "$out_dir"
# One builder at a time per go.sum; a second caller waits and then finds the binaries.
exec 9>"$out_dir/.lock"
flock 9
if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" ]]; then
    echo "$bin_dir"
    exit 0
fi

cd "$here"
export CGO_ENABLED=0
# -mod=mod: go.mod/go.sum are committed, but allow the toolchain to fill the module cache.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod -buildvcs=false"

mod_version() { "$GO" list -m -f '{{.Version}}' "$1"; }
k8s_version="$(mod_version k8s.io/kubernetes)"        # e.g. v1.37.2
etcd_version="$(mod_version go.etcd.io/etcd/server/v3)" # e.g. v3.7.0
k8s_major="${k8s_version#v}"; k8s_major="${k8s_major%%.*}"
k8s_minor="${k8s_version#v*.}"; k8s_minor="${k8s_minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# The module proxy carries no commit id, so gitCommit stays empty and the tree state is
# "archive", which is what Kubernetes itself reports for builds from a source archive.
vpkg=k8s.io/component-base/version
k8s_ldflags="-s -w \
 -X $vpkg.gitVersion=$k8s_version \
 -X $vpkg.gitMajor=$k8s_major \
 -X $vpkg.gitMinor=$k8s_minor \
 -X $vpkg.gitTreeState=archive \
 -X $vpkg.buildDate=$build_date"

tmp_bin="$(mktemp -d "$out_dir/bin.tmp.XXXXXX")"
chmod 0755 "$tmp_bin"
trap 'rm -rf "$tmp_bin"' EXIT

echo "build.sh: building kube-apiserver $k8s_version and etcd $etcd_version into $bin_dir" >&2
"$GO" build -trimpath -ldflags "$k8s_ldflags" -o "$tmp_bin/kube-apiserver" \
    k8s.io/kubernetes/cmd/kube-apiserver
"$GO" build -trimpath -ldflags "-s -w" -o "$tmp_bin/etcd" go.etcd.io/etcd/server/v3

printf 'kube-apiserver %s\netcd %s\nbuilt %s\n' "$k8s_version" "$etcd_version" "$build_date" \
    >"$tmp_bin/VERSIONS"
rm -rf "$bin_dir"
mv "$tmp_bin" "$bin_dir"
trap - EXIT
echo "$bin_dir"
