#!/usr/bin/env bash
# The whole test suite, after all set-up: lint, types, then every test (including
# the real-Prometheus, promtool, browser, container and soak tests).
# Extra arguments go to pytest, e.g. scripts/test.sh -k config
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
mypy --strict
echo "== lint-imports (the layers, no import cycle)"
lint-imports
echo "== hadolint"
hadolint Dockerfile
echo "== pytest"
exec python -m pytest -p no:cacheprovider --durations=15 "$@"
