#!/usr/bin/env bash
# MetalLB v0.16.2's controller and speaker from the Go module proxy (CGO_ENABLED=0), for the
# migration test. Prints progress on stderr and, as the last stdout line, the directory that
# holds the two binaries:
#     ${EXALB_CACHE:-~/.cache/exalb}/metallb-e2e/<key>/bin/{controller,speaker}
# <key> hashes go.sum and this directory's other inputs, so a warm run builds nothing.
# scripts/image.sh (image "metallb") runs this script and packs the binaries into an image.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "metallb build: no Go toolchain (set GO=)" >&2; exit 1; }

key="$(cat "$here/go.sum" "$here/go.mod" "$here/frrk8s/prepend.go" "$here/build.sh" \
    | sha256sum | cut -c1-16)"
dir="${EXALB_CACHE:-$HOME/.cache/exalb}/metallb-e2e/$key"
bin="$dir/bin"
done_() { [[ -x "$bin/controller" && -x "$bin/speaker" ]]; }
if done_; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
exec 8>"$dir/.lock"
flock 8 # one build per key (the cache is shared by worktrees)
if done_; then echo "$bin"; exit 0; fi

log="$dir/build.log"
work="$(mktemp -d "$dir/work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "metallb build: go build controller, speaker -> $bin (log: $log)" >&2
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS
(
    cd "$work"
    cp "$here/go.mod" "$here/go.sum" .
    src="$("$GO" mod download -json github.com/metallb/frr-k8s@v0.0.26 \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    api="$src/api/v1beta1"
    [[ -f "$api/frrconfiguration_types.go" ]] || { echo "frr-k8s v0.0.26 has no api/v1beta1"; exit 1; }
    mkdir -p frr-k8s/api
    cp "$src/go.mod" frr-k8s/
    cp -r "$api" frr-k8s/api/
    chmod -R u+w frr-k8s
    cp "$here/frrk8s/prepend.go" frr-k8s/api/v1beta1/
    types=frr-k8s/api/v1beta1/frrconfiguration_types.go
    # the field v0.0.27 adds to Advertise, as its first one
    sed -i '/^type Advertise struct {$/a\	PrefixesWithAsPathPrepend []AsPathPrependPrefixes `json:"withAsPathPrepend,omitempty"`' "$types"
    grep -q PrefixesWithAsPathPrepend "$types" || { echo "Advertise not found in $types"; exit 1; }
    mkdir -p out
    for prog in controller speaker; do
        "$GO" build -trimpath -ldflags "-s -w" -o "out/$prog" "go.universe.tf/metallb/$prog"
    done
    "$GO" list -m -f 'metallb {{.Version}}' go.universe.tf/metallb >out/VERSION
    rm -rf "$bin"
    mv out "$bin"
) >"$log" 2>&1 || { echo "metallb build failed; end of $log:" >&2; tail -n 20 "$log" >&2; exit 1; }
echo "metallb build: done in $((SECONDS - start)) s" >&2
echo "$bin"
