#!/usr/bin/env bash
# Set up everything and run every check and test (what CI runs). As root on Debian 12.
#   scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -x tests/controlplane/install-tools.sh ]; then tests/controlplane/install-tools.sh; fi
if [ -x tests/controlplane/build.sh ]; then tests/controlplane/build.sh; fi
# The images the e2e cluster runs (cached by content; build output in a log file).
scripts/image.sh >/dev/null

step() { printf '\n== %s\n' "$*"; }
# Every check runs, and any failing one fails the run. (A check must not sit on the left of
# `&&`: `set -e` ignores a failure there, which once let a ruff error pass CI.)
failed=()
check() {
    local name=$1
    shift
    step "$name"
    "$@" || failed+=("$name")
}
check "ruff" .venv/bin/ruff check .
check "ruff format" .venv/bin/ruff format --check .
check "mypy --strict" .venv/bin/mypy
check "import rules" .venv/bin/lint-imports
step "pytest"
set +e
.venv/bin/pytest -ra --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; fi
if ((${#failed[@]})); then
    echo "scripts/test.sh: failed: ${failed[*]}" >&2
    if [ "$rc" -eq 0 ]; then rc=1; fi
fi
exit "$rc"
