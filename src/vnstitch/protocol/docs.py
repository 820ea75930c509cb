"""Generated parts of PROTOCOL.md: state-machine tables and timer defaults, from code.

Theory of operation: :func:`generated_section` renders the transition tables and the
:class:`~vnstitch.protocol.config.Timers` defaults; PROTOCOL.md embeds its output
verbatim and a test checks the two still agree (run this module to print it).
"""

from __future__ import annotations

import dataclasses

from vnstitch.protocol.config import Timers
from vnstitch.protocol.fsm import render_table
from vnstitch.protocol.negotiation import STITCH_TRANSITIONS
from vnstitch.protocol.reservation import RESERVATION_TRANSITIONS
from vnstitch.protocol.resize import RESIZE_TRANSITIONS
from vnstitch.protocol.tunnels import TUNNEL_TRANSITIONS
from vnstitch.routing.monitor import TRANSITIONS as LINK_TRANSITIONS


def generated_section() -> str:
    parts = [render_table("Stitch request (origin)", STITCH_TRANSITIONS),
             render_table("Reservation (every RM on the path)", RESERVATION_TRANSITIONS),
             render_table("Tunnel (both ends)", TUNNEL_TRANSITIONS),
             render_table("Resize attempt (origin)", RESIZE_TRANSITIONS),
             render_table("Link congestion (each RM, its own links; CONGESTION is sent "
                          "while congested)", LINK_TRANSITIONS)]
    rows = ["#### Timer defaults (`vnstitch.protocol.config.Timers`)", "",
            "| name | default |", "|---|---|"]
    for f in dataclasses.fields(Timers):
        rows.append(f"| `{f.name}` | {f.default} |")
    parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(generated_section(), end="")
