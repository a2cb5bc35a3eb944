#!/usr/bin/env bash
# Set-up shared by scripts/demo.sh and scripts/test.sh: a virtualenv in .venv with
# the package installed editable. With --test, also the test extras and the
# Debian packages the tests drive for real (as root; otherwise it says what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# Quiet unless something fails: pip's notes and build warnings go to a log that is
# printed only when the step fails.
quietly() {
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  [ "$status" = 0 ] || { echo "setup: failed: $*" >&2; cat "$log" >&2; }
  rm -f "$log"
  return "$status"
}

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$want_test" = 1 ]; then
  apt_packages=(prometheus prometheus-alertmanager buildah podman debootstrap chromium chromium-driver ca-certificates faketime)
  missing=()
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing Debian packages: ${missing[*]}"
      quietly apt-get update
      quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
      echo "setup: missing Debian packages: ${missing[*]}" >&2
      echo "setup: run: sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  quietly "$python" -m venv .venv
fi
stamp=.venv/.installed-$( (cat pyproject.toml; echo "$want_test") | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
  quietly .venv/bin/python -m pip install --upgrade pip
  if [ "$want_test" = 1 ]; then
    quietly .venv/bin/python -m pip install -e '.[test]'
  else
    quietly .venv/bin/python -m pip install -e .
  fi
  touch "$stamp"
fi
