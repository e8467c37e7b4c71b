#!/usr/bin/env bash
# Build MetalLB's controller and speaker (v0.16.2, from the Go module proxy) for
# bench/vs_metallb.py and, packed into an image by scripts/image.sh metallb, the migration test.
#
# Binaries land in ${EXALB_CACHE:-$HOME/.cache/exalb}/metallb/<hash>/bin/, where <hash> covers
# go.mod, go.sum, the frr-k8s stub and this script: a version bump gets a fresh directory, an
# unchanged module reuses what is there (a second run only prints the path). Progress goes to
# <hash>/build.log; the last line printed is the bin directory.
#
# Needs only Go and the module proxy; CGO_ENABLED=0. The replace module for frr-k8s (see
# go.mod) is assembled in the build directory from v0.0.26's api/v1beta1 in the module cache
# plus frrk8s/aspathprepend.go; nothing of MetalLB or frr-k8s is kept in the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
    echo "build.sh: no Go toolchain found (set GO=/path/to/go)" >&2
    exit 1
fi

cache_root="${EXALB_CACHE:-$HOME/.cache/exalb}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/frrk8s/aspathprepend.go" "$here/build.sh" \
    | sha256sum | cut -c1-16)"
out_dir="$cache_root/metallb/$key"
bin_dir="$out_dir/bin"

built() { [[ -x "$bin_dir/controller" && -x "$bin_dir/speaker" ]]; }
if built; then
    echo "build.sh: already built" >&2
    echo "$bin_dir"
    exit 0
fi

mkdir -p "$out_dir"
exec 9>"$out_dir/.lock"
flock 9
if built; then
    echo "$bin_dir"
    exit 0
fi

log="$out_dir/build.log"
work="$(mktemp -d "$out_dir/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "build.sh: building MetalLB into $bin_dir (progress: $log)" >&2

export CGO_ENABLED=0 GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod -buildvcs=false"
started=$SECONDS
{
    cp "$here/go.mod" "$here/go.sum" "$work/"
    # The frr-k8s replace module: v0.0.26's go.mod and api/v1beta1, plus the stub.
    frr_dir="$(cd "$out_dir" && "$GO" mod download -json github.com/metallb/frr-k8s@v0.0.26 \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$frr_dir/api/v1beta1" ]] || { echo "frr-k8s v0.0.26 not in the module cache"; exit 1; }
    mkdir -p "$work/frr-k8s/api"
    cp "$frr_dir/go.mod" "$work/frr-k8s/"
    cp -r "$frr_dir/api/v1beta1" "$work/frr-k8s/api/"
    chmod -R u+w "$work/frr-k8s"
    cp "$here/frrk8s/aspathprepend.go" "$work/frr-k8s/api/v1beta1/"
    types="$work/frr-k8s/api/v1beta1/frrconfiguration_types.go"
    # One field appended to Advertise: the line after its PrefixesWithCommunity field.
    anchor='PrefixesWithCommunity []CommunityPrefixes `json:"withCommunity,omitempty"`'
    grep -qF "$anchor" "$types" || { echo "Advertise.PrefixesWithCommunity not found"; exit 1; }
    awk -v a="$anchor" '{ print } index($0, a) {
        print "\tPrefixesWithAsPathPrepend []AsPathPrependPrefixes `json:\"withAsPathPrepend,omitempty\"`"
    }' "$types" >"$types.new"
    mv "$types.new" "$types"
    cd "$work"
    version="$("$GO" list -m -f '{{.Version}}' go.universe.tf/metallb)"
    ldflags="-s -w"  # internal/version carries the release number itself
    tmp_bin="$work/bin"
    mkdir -p "$tmp_bin"
    echo "go build controller speaker ($version)"
    "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp_bin/controller" go.universe.tf/metallb/controller
    "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp_bin/speaker" go.universe.tf/metallb/speaker
    printf 'metallb %s\nfrr-k8s v0.0.26 + stub\nbuilt %s in %ss\n' "$version" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - started))" >"$tmp_bin/VERSIONS"
    rm -rf "$bin_dir"
    mv "$tmp_bin" "$bin_dir"
} >"$log" 2>&1 || { echo "build.sh: build failed; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; }
echo "build.sh: built in $((SECONDS - started))s" >&2
echo "$bin_dir"
