"""The live Route Manager daemon: asyncio runtime around the sans-I/O core.

Theory of operation: :mod:`~vnstitch.daemon.config` validates the YAML config;
:mod:`~vnstitch.daemon.identity` reads and writes Ed25519 key files;
:mod:`~vnstitch.daemon.state` persists stitches, reservations, tunnel keys, the
sequence-number high-water mark and the core's exported state in SQLite (WAL);
:mod:`~vnstitch.daemon.runtime` runs one core on an asyncio loop (UDP transport, timers
from ``next_timer()``, actions executed through a dataplane driver);
:mod:`~vnstitch.daemon.control` serves the local JSON-lines control socket.
"""

from vnstitch.daemon.errors import ConfigError, ControlError, DaemonError, KeyFileError, StateError

__all__ = ["ConfigError", "ControlError", "DaemonError", "KeyFileError", "StateError"]
