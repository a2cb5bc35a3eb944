#!/usr/bin/env bash
# The whole test suite, after all set-up: lint, types, layers, then every test
# (including the real-Prometheus, promtool, Alertmanager, browser, container and
# soak tests): a parallel pass (pytest-xdist, one file per worker at a time), then
# the timing-sensitive tests (marker `serial`) alone.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --fast     ruff and the unit tier only: no child process, no
#                              real server, no real waiting (tests/tiers.py)
#
# Extra arguments go to pytest, e.g. scripts/test.sh -k config. TEST_WORKERS sets
# the parallel pass's workers (default 4: most tests wait on sockets and child
# processes, so two cores keep four busy).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=false
if [ "${1:-}" = "--fast" ]; then
  fast=true
  shift
fi
scripts/setup.sh --test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check .
pytest=(python -m pytest -p no:cacheprovider)
if $fast; then
  echo "== pytest: the unit tier"
  exec "${pytest[@]}" -q -m unit "$@"
fi
echo "== mypy --strict"
mypy --strict
echo "== lint-imports (the layers, no import cycle)"
lint-imports
echo "== hadolint"
hadolint Dockerfile

# pytest exits 5 when a selection (-k ...) leaves a pass with no test: not a failure.
run_pass() {
  local status=0
  "${pytest[@]}" "$@" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
  fi
}
echo "== pytest: in parallel"
run_pass -n "${TEST_WORKERS:-4}" --dist loadfile --durations=15 -m "not serial" "$@"
echo "== pytest: the timing-sensitive tests, alone"
run_pass --durations=5 -m serial "$@"
