#!/usr/bin/env bash
# The demo: the exporter against its embedded Lynx simulator on http://localhost:9877/
# Extra arguments go to the exporter, e.g. scripts/demo.sh --web.listen-address=:9900
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/nayax-ev-exporter --demo "$@"
