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
step "ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
step "mypy --strict"; .venv/bin/mypy
step "import rules"; .venv/bin/lint-imports
step "pytest"
set +e
.venv/bin/pytest -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; fi
exit "$rc"
