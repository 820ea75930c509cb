"""How many Hypothesis examples a property test runs: fewer by default, more on demand.

The default test command runs each property on a fifth of its examples (at least 20), so
the suite stays fast; ``HYPOTHESIS_PROFILE=ci-long`` runs the full count (a nightly or
pre-release run). The profiles are registered in ``tests/conftest.py``; a test writes
``@settings(max_examples=examples(300))``, naming its full count.
"""

from __future__ import annotations

import os

#: Profile that runs every property test on its full number of examples.
LONG_PROFILE = "ci-long"
DEFAULT_SHARE = 5  # the default profile runs 1/DEFAULT_SHARE of the examples
MIN_EXAMPLES = 20


def long_run() -> bool:
    return os.environ.get("HYPOTHESIS_PROFILE", "") == LONG_PROFILE


def examples(full: int) -> int:
    """``full`` under the ``ci-long`` profile, else a fifth of it (at least 20)."""
    return full if long_run() else min(full, max(MIN_EXAMPLES, full // DEFAULT_SHARE))
