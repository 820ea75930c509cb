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
# Two pytest phases at once, so CI's two cores are kept busy (pytest's wall time is the
# longer of the two):
# * root tests (namespaces, live daemons, wireguard-go, iperf3) mostly wait on protocol
#   timers and kernel state, so they run on ROOT_WORKERS (default 2) xdist workers, one
#   test at a time each (every test builds its own uniquely named lab); their output is
#   printed when they are done;
# * the other tests are mostly CPU-bound: two workers (PYTEST_WORKERS), whole files per
#   worker (--dist loadfile) so module fixtures are built once, under `nice` so the
#   timing-sensitive root tests (deadlines on probes, leases, handshakes) keep the CPU
#   when they need it and these soak up the rest.
# N=0 for one process in either phase. Arguments after the command go to both phases and
# win; exit status 5 (nothing collected in a phase) is not a failure.
root_log=$(mktemp -t vnstitch-root-tests.XXXXXX)
trap 'rm -f "$root_log"' EXIT
started=$SECONDS
python -m pytest -n "${ROOT_WORKERS:-2}" --dist load -m root "$@" >"$root_log" 2>&1 &
root_pid=$!
status=0
nice -n 10 python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -m "not root" "$@" \
  || status=$?
[ "$status" = 5 ] && status=0
root_status=0
wait "$root_pid" || root_status=$?
[ "$root_status" = 5 ] && root_status=0
echo "---- root tests (ran alongside the tests above) ----"
cat "$root_log"
echo "test phases took $((SECONDS - started)) s of wall time together"
[ "$status" = 0 ] && [ "$root_status" = 0 ]
