"""The daemon's log output: human text or one JSON object per line (``--log-format``).

Theory of operation: :func:`configure_logging` installs one stream handler on the root
logger with either the plain text format or :class:`JsonFormatter`, which writes each
record as a single JSON line -- ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``msg``
(the formatted message), ``exc`` when an exception is attached, and any ``extra=``
fields a caller passed -- so journald, Loki or ``jq`` read it without parsing text.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else came from ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, default=str)


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Route the root logger to ``stream`` (stderr) at ``level`` in format ``fmt``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
