"""Shared fixtures: where the real data lives, and skipping when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path | None:
    env = os.environ.get("VNSTITCH_DATA")
    candidates = [Path(env)] if env else []
    # The data sits beside the checkout (../shared/data); walk up so git worktrees
    # nested deeper find it too.
    candidates += [p / "shared" / "data" for p in Path(__file__).resolve().parents[1:]]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data folder absent (set VNSTITCH_DATA or put shared/data beside repo)")
    return d
