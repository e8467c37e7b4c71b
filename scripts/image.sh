#!/usr/bin/env bash
# Build exalb's container images without Docker and without any registry, as root on Debian 12:
#
#   exalb    the runtime: exalb-controller, exalb-speaker, exalb-exabgp (the ExaBGP launcher),
#            exalb-exabgp-bridge, exalb-bfdd (the bfdd launcher), exalb-garp, exalbctl, ExaBGP,
#            and FRR's bfdd and vtysh (Debian's frr, its other daemons removed). A Debian 12 root
#            filesystem from Debian packages (mmdebstrap: python3 and what it needs), a venv in
#            /opt/exalb holding the exalb wheel and its runtime dependencies from PyPI,
#            byte-compiled (the root filesystem is read-only at run time). User 65532; the
#            speaker pod's containers run as exalb (65532), exalb-exabgp (65533) and
#            exalb-garp (65531), the bfd container as root (bfdd insists). exalb-garp runs
#            /opt/exalb/bin/python3-netraw, a copy of the interpreter carrying the file
#            capability cap_net_raw (the only way Kubernetes gives NET_RAW to a non-root
#            process); no file in the image is setuid/setgid.
#   backend  a small HTTP server for the lab's Service backends: Debian's busybox-static
#            (`httpd`), answering "pod=<pod> node=<node>", and an echo port (`nc`) for
#            long-lived connections. User 65534.
#   pause    the pod sandbox: `pause` compiled by tests/controlplane/build.sh from the
#            Kubernetes module's build/pause/linux/pause.c.
#   metallb  MetalLB's /controller and /speaker (for the migration test only; never built by
#            default): the binaries come from the build script $METALLB_BUILD (default
#            lab/metallb/build.sh), whose last stdout line is their directory.
#
# buildah (STORAGE_DRIVER=vfs, BUILDAH_ISOLATION=chroot, a private storage directory that is
# removed afterwards) turns each root filesystem into an image and writes a docker-archive,
# which both `ctr images import` and `docker load` accept. Archives are cached in
# ${EXALB_CACHE:-~/.cache/exalb}/images/ under a hash of everything that goes into them, so
# a warm run builds nothing. Output, one line per image on stdout:
#     <name> <image reference> <archive path> <size in bytes>
# Build logs go to the cache's images/logs/; the terminal shows an elapsed-time line.
#
#   scripts/image.sh [exalb|backend|pause|metallb ...]      (default: exalb backend pause)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/progress.sh
source "$root/scripts/lib/progress.sh"
cd "$root"

cache="${EXALB_CACHE:-$HOME/.cache/exalb}/images"
logs="$cache/logs"
mkdir -p "$cache" "$logs"
PY="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
SUITE=bookworm
VENV=/opt/exalb

cleanup_dirs=()
trap 'rm -rf "${cleanup_dirs[@]}"' EXIT
# new_workdir NAME: sets $work to a scratch directory in the cache (same file system as the
# archives), removed at exit.
new_workdir() {
    work="$(mktemp -d "$cache/.work-$1.XXXXXX")"
    cleanup_dirs+=("$work")
}

need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "image.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
    done
}

# Top-level package directories the wheel ships (pyproject's setuptools include list).
package_dirs() {
    "$PY" - "$root" <<'PY'
import sys, tomllib
from pathlib import Path
root = Path(sys.argv[1])
conf = tomllib.loads((root / "pyproject.toml").read_text())
for pattern in conf["tool"]["setuptools"]["packages"]["find"]["include"]:
    top = pattern.rstrip("*").rstrip(".")
    if "." not in top and (root / top).is_dir():
        print(top)
PY
}

# Everything under the packages the wheel ships (pyproject's setuptools include list), plus
# the files that decide how the image is made.
exalb_inputs_hash() {
    "$PY" - "$root" <<'PY'
import hashlib, sys, tomllib
from pathlib import Path
root = Path(sys.argv[1])
conf = tomllib.loads((root / "pyproject.toml").read_text())
include = conf["tool"]["setuptools"]["packages"]["find"]["include"]
tops = sorted({p.rstrip("*").rstrip(".") for p in include})
files = [root / f for f in ("pyproject.toml", "README.md", "scripts/image.sh")]
for top in tops:
    d = root / top
    if d.is_dir():
        files += sorted(p for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
h = hashlib.sha256()
for f in files:
    h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
print(h.hexdigest()[:16])
PY
}

app_version() {
    "$PY" -c 'import sys,tomllib;print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
        "$root/pyproject.toml"
}

# buildah in a private storage; $1 rootfs tar, $2 reference, $3 archive, rest: `buildah config` args
buildah_image() {
    local tarball=$1 ref=$2 out=$3
    shift 3
    local store
    store="$(mktemp -d "$cache/.buildah.XXXXXX")"
    local b=(buildah --root "$store/root" --runroot "$store/runroot" --storage-driver vfs)
    export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
    (
        trap 'rm -rf "$store"' EXIT
        ctr="$("${b[@]}" from scratch)"
        "${b[@]}" add "$ctr" "$tarball" /
        "${b[@]}" config "$@" "$ctr"
        "${b[@]}" commit --quiet --format docker --rm "$ctr" "$ref" >/dev/null
        rm -f "$out.tmp"
        "${b[@]}" push --quiet "$ref" "docker-archive:$out.tmp:$ref"
        "${b[@]}" rmi --all >/dev/null
    )
    mv -f "$out.tmp" "$out"
}

prune() { # prune NAME: keep the 4 newest archives of an image (the cache is shared by worktrees)
    ls -1t "$cache/$1"-*.tar 2>/dev/null | tail -n +5 | while read -r old; do
        rm -f "$old" "${old%.tar}.sizes"
    done
}

report() { # name ref archive
    printf '%s %s %s %s\n' "$1" "$2" "$3" "$(stat -c %s "$3")"
}

# ---------------------------------------------------------------- exalb
build_exalb() {
    local hash ref out
    hash="$(exalb_inputs_hash)"
    ref="localhost/exalb:$(app_version)-$hash"
    out="$cache/exalb-$hash.tar"
    if [[ -s "$out" ]]; then
        report exalb "$ref" "$out"
        return
    fi
    need mmdebstrap buildah tar
    local work
    new_workdir exalb
    echo "image.sh: building $ref" >&2
    # From a copy of just what the wheel is made of: an in-tree build would leave build/ behind,
    # whose stale modules a later wheel could pick up.
    mkdir -p "$work/src"
    local top
    for top in pyproject.toml README.md $(package_dirs); do cp -a "$root/$top" "$work/src/"; done
    run_logged "exalb wheel + runtime dependencies (pip)" "$logs/exalb-$hash.log" \
        "$PY" -m pip wheel --quiet --wheel-dir "$work/wheels" "$work/src"
    local mirror=()
    [[ -f /etc/apt/sources.list.d/debian.sources ]] && mirror=(/etc/apt/sources.list.d/debian.sources)
    # essential: dpkg's Essential set (libc, coreutils, bash, ...) plus python3; no apt, no
    # docs, no man pages, no locales. The merged-usr hook instead of the usrmerge package,
    # which would pull in a full perl (47 MB).
    run_logged "Debian $SUITE root filesystem (mmdebstrap)" "$logs/exalb-$hash.log" \
        mmdebstrap --quiet --variant=essential --include=python3,frr \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "$SUITE" "$work/rootfs" "${mirror[@]}"
    local rootfs="$work/rootfs"
    run_logged "venv $VENV with exalb and its dependencies" "$logs/exalb-$hash.log" \
        install_exalb "$rootfs" "$work/wheels"
    sizes "$rootfs" >"$cache/exalb-$hash.sizes"
    # --xattrs: the file capability of python3-netraw is an extended attribute
    tar -C "$rootfs" --numeric-owner --xattrs --xattrs-include=security.capability \
        -cf "$work/rootfs.tar" .
    run_logged "image (buildah)" "$logs/exalb-$hash.log" \
        buildah_image "$work/rootfs.tar" "$ref" "$out" \
        --env "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
        --user 65532:65532 --workingdir / --cmd '["exalb-controller", "--help"]' \
        --label org.opencontainers.image.title=exalb \
        --label "org.opencontainers.image.version=$(app_version)"
    sed 's/^/  /' "$cache/exalb-$hash.sizes" >&2
    prune exalb
    report exalb "$ref" "$out"
}

# What takes the room in the exalb image, largest first (MiB, uncompressed).
sizes() {
    local rootfs=$1 site="$1$VENV/lib/python3.11/site-packages"
    printf 'image content: %s MiB\n' "$(du -sm "$rootfs" | cut -f1)"
    printf '  %-44s %4s MiB\n' "Debian: libc, coreutils, dpkg, bash ..." \
        "$(($(du -sm "$rootfs/usr" | cut -f1) - $(du -sm "$rootfs/usr/lib/python3.11" | cut -f1)))"
    printf '  %-44s %4s MiB\n' "Debian: python3.11 standard library" \
        "$(du -sm "$rootfs/usr/lib/python3.11" | cut -f1)"
    # sed, not head: head exits early and, under pipefail, sort's SIGPIPE would fail the build
    du -sm "$site"/* | sort -rn | sed -n '1,6p' | while read -r mib path; do
        printf '  %-44s %4s MiB\n' "venv: ${path#"$site/"}" "$mib"
    done
}

install_exalb() {
    local rootfs=$1 wheels=$2
    # The venv is made by the image's own python3 (so its paths are the image's); the host's
    # pip (same Debian python3.11) installs into it through --root, then the shebangs that
    # name the host interpreter are pointed at the venv's.
    chroot "$rootfs" python3 -m venv --without-pip "$VENV"
    "$PY" -m pip install --quiet --no-index --find-links "$wheels" --root "$rootfs" \
        --prefix "$VENV" --ignore-installed --no-compile --no-warn-script-location exalb
    # The kubernetes client ships an asyncio twin of itself (kubernetes/aio, 41 MB) that pulls
    # in aiohttp and its stack. The controller and the speaker use exalb's own client
    # (exalb/k8s/client.py); the package serves exalbctl's port-forward and kubeconfig
    # credential plugins (exalb/k8s/official.py), synchronously, and nothing outside
    # kubernetes/aio imports aiohttp.
    local site="$rootfs$VENV/lib/python3.11/site-packages" p
    rm -rf "$site/kubernetes/aio"
    for p in aiohttp aiohttp_retry aiohappyeyeballs aiosignal frozenlist multidict propcache \
        yarl attrs attr; do
        rm -rf "${site:?}/$p" "$site/$p"-*.dist-info
    done
    local f
    for f in "$rootfs$VENV"/bin/*; do
        if [[ -f "$f" && ! -L "$f" && "$(head -c2 "$f")" == '#!' ]]; then
            sed -i "1s|^#!.*python.*$|#!$VENV/bin/python3|" "$f"
        fi
    done
    # The root filesystem is read-only at run time: compile once, with hashes (not mtimes), so
    # the .pyc files stay valid whatever the image's file times.
    chroot "$rootfs" python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        "$VENV/lib" >/dev/null
    # FRR: the speaker pod's bfd container runs bfdd (BFD next to ExaBGP) and the speaker
    # configures it with vtysh; no other FRR daemon runs in the image.
    find "$rootfs/usr/lib/frr" -maxdepth 1 -type f ! -name bfdd -delete
    rm -f "$rootfs/usr/bin/mtracebis"
    # Fixed users (the chart's runAsUser), no home, no shell: exalb for the controller and
    # the speaker, one each for ExaBGP and the garp sidecar; one group, the speaker pod's
    # fsGroup, which owns the volumes two of them share.
    {
        echo "exalb:x:65532:65532:exalb:/nonexistent:/usr/sbin/nologin"
        echo "exalb-exabgp:x:65533:65532:exalb ExaBGP:/nonexistent:/usr/sbin/nologin"
        echo "exalb-garp:x:65531:65532:exalb garp sidecar:/nonexistent:/usr/sbin/nologin"
    } >>"$rootfs/etc/passwd"
    echo "exalb:x:65532:" >>"$rootfs/etc/group"
    netraw_interpreter "$rootfs"
    # The garp container may escalate (its file capability needs it): nothing else may, so
    # no setuid/setgid file stays (su, newgrp, unix_chkpwd, ...).
    find "$rootfs" -xdev -type f -perm /6000 -exec chmod ug-s {} +
    # Not needed at run time: package manager caches and logs, and dpkg's own helpers' docs.
    rm -rf "$rootfs"/var/cache/* "$rootfs"/var/log/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/tmp/* "$rootfs"/usr/share/doc/*/changelog* "$rootfs"/usr/share/bash-completion
    chroot "$rootfs" "$VENV/bin/exalb-speaker" --help >/dev/null
    chroot "$rootfs" "$VENV/bin/exabgp" version >/dev/null
    chroot "$rootfs" /usr/lib/frr/bfdd --version >/dev/null
}

# The garp sidecar's interpreter: a copy of python3.11 (a copy, so that no other program gets
# the capability) with the file capability cap_net_raw=ep, written as the security.capability
# xattr (struct vfs_cap_data, revision 2, effective bit; CAP_NET_RAW is bit 13), and
# exalb-garp's shebang pointing at it. The venv is found from the copy's path like from the
# symlinks next to it.
netraw_interpreter() {
    local rootfs=$1 exe="$1$VENV/bin/python3-netraw"
    cp "$rootfs/usr/bin/python3.11" "$exe"
    chmod 0755 "$exe"
    "$PY" -c 'import os, struct, sys
os.setxattr(sys.argv[1], "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))' "$exe"
    sed -i "1s|^#!.*$|#!$VENV/bin/python3-netraw|" "$rootfs$VENV/bin/exalb-garp"
    chroot "$rootfs" "$VENV/bin/exalb-garp" --help >/dev/null
}

# ---------------------------------------------------------------- backend
build_backend() {
    need apt-get dpkg-deb buildah
    local version hash ref out
    version="$(apt-cache show --no-all-versions busybox-static 2>/dev/null | sed -n 's/^Version: //p')"
    [[ -n "$version" ]] || { apt-get update -qq && version="$(apt-cache show --no-all-versions busybox-static | sed -n 's/^Version: //p')"; }
    hash="$( (echo "$version"; sed -n '/^build_backend()/,/^}/p' "$0") | sha256sum | cut -c1-16)"
    ref="localhost/exalb-backend:$hash"
    out="$cache/backend-$hash.tar"
    if [[ -s "$out" ]]; then
        report backend "$ref" "$out"
        return
    fi
    local work
    new_workdir backend
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root busybox-static >/dev/null)
    local rootfs="$work/rootfs"
    mkdir -p "$rootfs"/{bin,etc,tmp}
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
    cp "$work/deb/bin/busybox" "$rootfs/bin/busybox"
    ln -s busybox "$rootfs/bin/sh"
    echo "nobody:x:65534:65534:nobody:/nonexistent:/bin/false" >"$rootfs/etc/passwd"
    echo "nogroup:x:65534:" >"$rootfs/etc/group"
    # POD_NAME and NODE_NAME come from the Deployment (downward API); /tmp is an emptyDir.
    cat >"$rootfs/bin/serve" <<'SH'
#!/bin/sh
# Answer every GET with this pod's and node's names; port $PORT (default 8080). Echo every
# byte back on $ECHO_PORT (default 9000): the lab's long-lived connections.
mkdir -p /tmp/www
echo "pod=${POD_NAME:-?} node=${NODE_NAME:-?}" >/tmp/www/index.html
/bin/busybox nc -ll -p "${ECHO_PORT:-9000}" -e /bin/busybox cat &
exec /bin/busybox httpd -f -p "${PORT:-8080}" -h /tmp/www
SH
    chmod 0755 "$rootfs/bin/serve"
    chmod 1777 "$rootfs/tmp"
    tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
    buildah_image "$work/rootfs.tar" "$ref" "$out" --user 65534:65534 --cmd '["/bin/serve"]' \
        --label org.opencontainers.image.title=exalb-backend >>"$logs/backend-$hash.log" 2>&1
    report backend "$ref" "$out"
}

# ---------------------------------------------------------------- pause
build_pause() {
    need buildah
    local bin hash ref out
    bin="$("$root/tests/controlplane/build.sh" | tail -n 1)"
    hash="$(cat "$bin/pause" <(sed -n '/^build_pause()/,/^}/p' "$0") | sha256sum | cut -c1-16)"
    ref="localhost/exalb-pause:$hash"
    out="$cache/pause-$hash.tar"
    if [[ -s "$out" ]]; then
        report pause "$ref" "$out"
        return
    fi
    local work
    new_workdir pause
    mkdir -p "$work/rootfs"
    install -m 0755 "$bin/pause" "$work/rootfs/pause"
    tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
    buildah_image "$work/rootfs.tar" "$ref" "$out" --user 65535:65535 --entrypoint '["/pause"]' \
        --label org.opencontainers.image.title=exalb-pause >>"$logs/pause-$hash.log" 2>&1
    report pause "$ref" "$out"
}

# ---------------------------------------------------------------- metallb
build_metallb() {
    need buildah
    local script="${METALLB_BUILD:-$root/lab/metallb/build.sh}" bin version hash ref out
    bin="$("$script" | tail -n 1)"
    [[ -x "$bin/controller" && -x "$bin/speaker" ]] || { echo "image.sh: $script gave no binaries" >&2; exit 1; }
    version="$(sed -n 's/^metallb //p' "$bin/VERSIONS" 2>/dev/null || true)"
    hash="$(cat "$bin/controller" "$bin/speaker" <(sed -n '/^build_metallb()/,/^}/p' "$0") \
        | sha256sum | cut -c1-16)"
    ref="localhost/exalb-metallb:${version:-unknown}-$hash"
    out="$cache/metallb-$hash.tar"
    if [[ -s "$out" ]]; then
        report metallb "$ref" "$out"
        return
    fi
    local work
    new_workdir metallb
    mkdir -p "$work/rootfs/tmp"
    chmod 1777 "$work/rootfs/tmp"
    install -m 0755 "$bin/controller" "$bin/speaker" "$work/rootfs/"
    tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
    # No entrypoint: the pod names /controller or /speaker (MetalLB's chart: *.command).
    buildah_image "$work/rootfs.tar" "$ref" "$out" --user 65534:65534 \
        --label org.opencontainers.image.title=exalb-metallb >>"$logs/metallb-$hash.log" 2>&1
    prune metallb
    report metallb "$ref" "$out"
}

targets=("$@")
((${#targets[@]})) || targets=(exalb backend pause)
exec 9>"$cache/.lock"
flock 9 # one builder at a time (shared cache)
for t in "${targets[@]}"; do
    case "$t" in
    exalb) build_exalb ;;
    backend) build_backend ;;
    pause) build_pause ;;
    metallb) build_metallb ;;
    *) echo "image.sh: unknown image $t (exalb, backend, pause, metallb)" >&2; exit 2 ;;
    esac
done
