#!/usr/bin/env bash
# The project's one test command: install what the tests need, then lint, type-check
# and run every test (root-only namespace tests run when this runs as root, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(iproute2 iputils-ping iperf3 wireguard-go wireguard-tools tcpdump frr e2fsprogs mount
              prometheus chromium chromium-driver)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

python -m pip install -q --disable-pip-version-check -e '.[test]'
ruff check src tests benchmarks
mypy
# PYTEST_WORKERS=N runs the tests on N pytest-xdist workers (root tests are safe in
# parallel: each makes uniquely named namespaces, labs and devices). One process by
# default: on a busy 2-core host two workers were slower (50 s vs 30 s for
# tests/protocol, routing and control). Arguments after the command come last and win.
python -m pytest -n "${PYTEST_WORKERS:-0}" --dist worksteal "$@"
