"""Where the shared real data lives (for tests, benchmarks and examples).

Theory of operation: the data is never copied into the repository; it sits beside the
checkout as ``../shared/data`` or wherever ``$VNSTITCH_DATA`` points. The search walks up
from a starting folder so a checkout nested at any depth (a git worktree, a CI clone)
finds it. Returns ``None`` when absent so callers can skip or exit with a clear reason.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir(start: Path | str | None = None) -> Path | None:
    """``$VNSTITCH_DATA`` if set, else the nearest ``shared/data`` above ``start``."""
    env = os.environ.get("VNSTITCH_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None
