"""``vnstitch routemgr feed``: push a VN's user-behaviour series to a running daemon.

Theory of operation: the file is read here with the forecasting layer's loader (the same
rules as traffic traces: ``timestamp,value`` CSV, bad rows refused with
``FILE:LINE:COL``, gaps repaired and reported) and sent through the control socket as
``{"cmd": "feed", "vnid": N, "rows": [[unix time, users], ...]}``. The daemon's live
PRA keeps it (state database) and uses it as an exogenous regressor of that VN's
forecasts; rows later than now are taken as a plan.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vnstitch.cli.argtypes import bounded_int
from vnstitch.cli.daemonclient import add_target_args, send
from vnstitch.cli.output import add_json_flag, console, print_json
from vnstitch.model.ids import VNID_MAX


def register(rsub: Any) -> None:
    feed = rsub.add_parser("feed", help="send a VN's active users or sessions over time to "
                                        "a running daemon's predictive allocator")
    feed.add_argument("--vnid", required=True, type=bounded_int(0, VNID_MAX),
                      help=f"the VN the activity belongs to (0..{VNID_MAX})")
    feed.add_argument("--file", required=True, type=Path,
                      help="timestamp,value CSV (users or sessions per interval)")
    add_target_args(feed)
    add_json_flag(feed)
    feed.set_defaults(handler=_feed)


def _feed(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415  (the daemon's CLI starts without numpy)

    from vnstitch.forecast.data import load_series  # noqa: PLC0415

    data = load_series(args.file)
    secs = data.times.astype("datetime64[s]").astype(np.int64)
    rows = [[int(t), float(v)] for t, v in zip(secs, data.values[:, 0], strict=True)]
    result = send(args, {"cmd": "feed", "vnid": args.vnid, "rows": rows})
    if args.json:
        print_json({**result, "repairs": list(data.repairs)})
    else:
        console().print(f"VN {result['vnid']}: {result['rows']} row(s) of user activity sent"
                        + (f" ({len(data.repairs)} gap(s) repaired)" if data.repairs else ""))
    return 0
