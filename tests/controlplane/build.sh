#!/usr/bin/env bash
# Build the Kubernetes programs exalb's tests and lab run, from the Go modules:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (all
#   k8s.io/kubernetes v1.37.2), etcd, and the pod sandbox's `pause` (C, from the same module).
#
# Binaries land in ${EXALB_CACHE:-$HOME/.cache/exalb}/controlplane/<hash of go.sum>/bin/,
# so a version bump (which changes go.sum) gets a fresh directory and an unchanged go.sum
# reuses what is there: a second run is a no-op that only prints the path. Only missing
# programs are built, all Go ones in ONE `go build` (shared packages compile once).
#
# Needs Go (see go.mod for the version), the Go module proxy, and gcc with a static libc
# (Debian's gcc + libc6-dev) for pause. The Go build is CGO_ENABLED=0. The go toolchain's
# output goes to <dir>/build.log; the terminal shows one elapsed-time line. The last line
# printed is the bin directory (`export EXALB_CONTROLPLANE_BIN=$(... | tail -1)`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib/progress.sh
source "$here/../../scripts/lib/progress.sh"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then
    echo "build.sh: no Go toolchain found (set GO=/path/to/go)" >&2
    exit 1
fi

cache_root="${EXALB_CACHE:-$HOME/.cache/exalb}"
sum_hash="$(sha256sum "$here/go.sum" | cut -c1-16)"
out_dir="$cache_root/controlplane/$sum_hash"
bin_dir="$out_dir/bin"

# program name -> Go package (pause is C, handled apart)
declare -A GO_PROGRAMS=(
    [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
    [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
    [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
    [kubelet]=k8s.io/kubernetes/cmd/kubelet
    [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
    [etcd]=go.etcd.io/etcd/server/v3
)
missing() {
    local name
    for name in "${!GO_PROGRAMS[@]}" pause; do
        [[ -x "$bin_dir/$name" ]] || echo "$name"
    done | sort
}

if [[ -z "$(missing)" ]]; then
    echo "build.sh: already built" >&2
    echo "$bin_dir"
    exit 0
fi

mkdir -p "$bin_dir"
# One builder at a time per go.sum; a second caller waits and then finds the binaries.
exec 9>"$out_dir/.lock"
flock 9
todo="$(missing)"
if [[ -z "$todo" ]]; then
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
# (etcd has no such variables; -X on an absent symbol is ignored.)
vpkg=k8s.io/component-base/version
ldflags="-s -w \
 -X $vpkg.gitVersion=$k8s_version \
 -X $vpkg.gitMajor=$k8s_major \
 -X $vpkg.gitMinor=$k8s_minor \
 -X $vpkg.gitTreeState=archive \
 -X $vpkg.buildDate=$build_date"

tmp_bin="$(mktemp -d "$out_dir/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp_bin"' EXIT
log="$out_dir/build.log"
timing="$out_dir/build-time.txt"
timed() { # timed WHAT CMD...: CMD, appending its wall time and peak RSS to $timing
    local what=$1
    shift
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -a -o "$timing" -f "$what: %e s wall, %M KiB peak RSS" "$@"
    else
        "$@"
    fi
}

todo_words="$(echo $todo)"
pkgs=()
for name in $todo; do [[ -n "${GO_PROGRAMS[$name]:-}" ]] && pkgs+=("${GO_PROGRAMS[$name]}"); done
echo "build.sh: building $todo_words (k8s $k8s_version, etcd $etcd_version) into $bin_dir" >&2
if ((${#pkgs[@]})); then
    # `go build -o DIR` names each program after its package's last element ("server" for
    # etcd's .../server/v3), so build into a scratch directory and rename.
    run_logged "go build (${#pkgs[@]} programs; first build on 2 cores: 6 to 20 minutes)" "$log" \
        timed "go build $todo_words" "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp_bin/" "${pkgs[@]}"
    [[ -e "$tmp_bin/server" ]] && mv "$tmp_bin/server" "$tmp_bin/etcd"
fi
if grep -qx pause <<<"$todo"; then
    # The pod sandbox's pause program, from the module's own source (build/pause/linux).
    src="$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$k8s_version/build/pause/linux/pause.c"
    [[ -f "$src" ]] || "$GO" mod download k8s.io/kubernetes >>"$log" 2>&1
    run_logged "gcc pause.c" "$log" \
        gcc -Os -static -DVERSION="$k8s_version-exalb" -o "$tmp_bin/pause" "$src"
    strip "$tmp_bin/pause"
fi

for f in "$tmp_bin"/*; do
    chmod 0755 "$f"
    mv -f "$f" "$bin_dir/"
done
printf 'kubernetes %s\netcd %s\nbuilt %s\n' "$k8s_version" "$etcd_version" "$build_date" \
    >"$bin_dir/VERSIONS"
[[ -f "$timing" ]] && sed 's/^/build.sh: /' "$timing" | tail -n 2 >&2
echo "$bin_dir"
