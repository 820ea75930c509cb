"""Allow ``python -m vnstitch``."""

from vnstitch.cli import main

raise SystemExit(main())
