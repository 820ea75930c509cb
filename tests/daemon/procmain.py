"""Run one daemon with the test-double core as a process: ``-m tests.daemon.procmain CFG``."""

from __future__ import annotations

import asyncio
import sys

from tests.daemon.fakecore import fake_core_factory
from vnstitch.daemon.config import load_config
from vnstitch.daemon.coreadapter import make_driver
from vnstitch.daemon.runtime import RouteManagerDaemon, run_daemon


def main() -> int:
    cfg = load_config(sys.argv[1])
    asyncio.run(run_daemon(RouteManagerDaemon(cfg, fake_core_factory, make_driver(cfg))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
