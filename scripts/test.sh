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
# Two phases. Tests that do not touch the kernel run on two pytest-xdist workers (CI runs
# on a fresh 2-core machine and they are mostly CPU-bound and single-threaded, so one
# process leaves a core idle); whole files go to one worker (--dist loadfile), so
# module-scoped fixtures are built once. Root tests (namespaces, wireguard-go, iperf3)
# then run in one process: they wait on kernel state with deadlines, and a second
# CPU-bound worker beside them only makes those waits longer. PYTEST_WORKERS=N for N
# workers in the first phase, 0 for one process. Arguments after the command come last
# and win; exit status 5 (nothing collected in a phase) is not a failure.
status=0
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -m "not root" "$@" || status=$?
[ "$status" = 5 ] && status=0
root_status=0
python -m pytest -m root "$@" || root_status=$?
[ "$root_status" = 5 ] && root_status=0
[ "$status" = 0 ] && [ "$root_status" = 0 ]
