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
# Two pytest-xdist workers by default (CI runs on a fresh 2-core machine; the suite is
# mostly CPU-bound and single-threaded, so one process leaves a core idle);
# PYTEST_WORKERS=N for N, PYTEST_WORKERS=0 for one process (better on a host whose cores
# are already busy: each worker imports and collects everything). Whole files go to one
# worker (--dist loadfile), so module-scoped fixtures are built once. Root tests are safe
# in parallel: each makes uniquely named namespaces, labs and devices. Arguments after
# the command come last and win.
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
