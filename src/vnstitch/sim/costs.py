"""What a Route Manager's work costs in time: handling a message, bringing a tunnel end up.

Theory of operation. The simulator's cores answer in zero time; a live Route Manager
does not. Two costs, each a property of one RM and measured on this project's machines
(the scenario's ``costs:`` section; without it the run is cost-free, as before):

* ``message_ms`` -- handling one datagram: decode, signature check, the core's step,
  the state database's commit, signing and sending what it answers. Every datagram an
  RM sends leaves that long after the input that caused it.
* ``tunnel_up_ms`` / ``tunnel_down_ms`` -- one dataplane pass that creates (removes) one
  tunnel end: the WireGuard interface and its wireguard-go process, VXLAN port, bridge
  port, FDB entry, HTB class and route. An RM runs one pass at a time (the daemon's
  reconciler), so passes queue; and, as the daemon does, every datagram of a step that
  changed the dataplane -- and any sent while a pass is still due -- is held until the
  pass is over (the target's COMMIT_ACK must not reach the origin before its WireGuard
  device listens).

Defaults: ``benchmarks/daemon_stitch.py`` (three real daemons over UDP, stitch through
one transit, 12 datagrams on the critical path: 26.4 ms median at load 8.6 on 2 cores)
gives 2.2 ms per datagram; ``benchmarks/tunnel_install.py`` (the Linux driver's pass for
one tunnel end in a namespace, 10 runs at load 8.9) gave 382 ms up and 336 ms down --
a second run at load 10.8 gave 152 and 161 ms (``benchmarks/results/tunnel_install.*``):
wall times on a shared host, they move with what else runs. The defaults are the first
run's, taken before any comparison with the lab.

:class:`CostClock` is the engine's bookkeeping: given a step's outputs and ``now``, when
its datagrams leave. Pure; virtual time only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vnstitch.dataplane.objects import WireguardInterface
from vnstitch.protocol.api import DataplaneChange, Output

#: Measured defaults (module docstring).
MESSAGE_MS = 2.2
TUNNEL_UP_MS = 382.0
TUNNEL_DOWN_MS = 336.0


@dataclass(frozen=True, slots=True)
class RmCosts:
    """Time costs of one Route Manager's work, in milliseconds."""

    message_ms: float = MESSAGE_MS
    tunnel_up_ms: float = TUNNEL_UP_MS
    tunnel_down_ms: float = TUNNEL_DOWN_MS


class CostClock:
    """Per RM: its dataplane passes (the running one and at most one queued, which takes
    every change made meanwhile, as the daemon's reconciler coalesces them) and when a
    step's datagrams leave."""

    def __init__(self, costs: RmCosts, rms: int) -> None:
        self.costs = costs
        self.pass_start = [0.0] * rms  # of the last pass scheduled (running or queued)
        self.pass_end = [0.0] * rms

    def departure(self, rm: int, outs: Sequence[Output], now: float) -> float:
        """The time the datagrams among ``outs`` (one step of ``rm`` at ``now``) leave;
        schedules the step's dataplane pass if it creates or removes tunnel ends."""
        c = self.costs
        up = down = False
        for o in outs:
            if isinstance(o, DataplaneChange):
                up = up or any(isinstance(x, WireguardInterface) for x in o.add)
                down = down or any(k.startswith("wg:") for k in o.remove)
        if up or down:
            cost = (c.tunnel_up_ms if up else c.tunnel_down_ms) / 1e3
            if now >= self.pass_end[rm]:  # idle: a pass starts now
                self.pass_start[rm], self.pass_end[rm] = now, now + cost
            elif now >= self.pass_start[rm]:  # one is running: the next one is queued
                self.pass_start[rm] = self.pass_end[rm]
                self.pass_end[rm] += cost
            else:  # the queued pass takes this change too
                self.pass_end[rm] = max(self.pass_end[rm], self.pass_start[rm] + cost)
        return max(now + c.message_ms / 1e3, self.pass_end[rm])

    def crashed(self, rm: int) -> None:
        """The RM is gone, and its passes with it."""
        self.pass_start[rm] = self.pass_end[rm] = 0.0
