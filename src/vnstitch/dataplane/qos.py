"""Reading QoS and route priority back from the dataplane: class counters, route metrics.

Theory of operation: what the Route Manager *asked* for (HTB classes, u32 filters,
routes with a metric) is compared against the kernel by ``observe()``; this module reads
what the kernel *did* with it:

* :class:`ClassStats` -- per HTB class, cumulative bytes and packets sent and packets
  dropped by the class's queue (the kernel's ``TCA_STATS2``). A driver that can read them
  implements :class:`ClassCountingDriver` (``linux`` from the kernel, ``memory`` from
  counters a test sets);
* :func:`route_metrics` -- every route to one prefix in a namespace, each with its kernel
  metric and routing protocol, split into the stitched routes (installed by the Route
  Manager's driver, protocol :data:`~vnstitch.dataplane.linux.ROUTE_PROTO`) and the
  substrate's own (the IGP's, static ones), plus the route the kernel actually picks
  (``ip route get``). The lab demo and the root tests read the stitching-priority bands
  back with it: the stitched route's metric is below the substrate's for the same prefix.

Reads only; blocking netlink calls (run them in a worker thread inside asyncio).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from vnstitch.dataplane.base import DataplaneDriver, DataplaneError

#: rtnetlink protocol numbers worth a name in a report (linux/rtnetlink.h, FRR's zebra);
#: the Route Manager's own is named ``vnstitch`` (the linux driver's ``ROUTE_PROTO``).
PROTO_NAMES = {2: "kernel", 3: "boot", 4: "static", 186: "bgp", 188: "ospf", 189: "rip"}


@dataclass(frozen=True, slots=True)
class ClassStats:
    """Cumulative counters of one HTB class (``1:<class_id>`` on ``device``)."""

    device: str
    class_id: int
    bytes: int
    packets: int
    drops: int
    overlimits: int = 0


@runtime_checkable
class ClassCountingDriver(DataplaneDriver, Protocol):
    def class_stats(self, device: str) -> list[ClassStats]:
        """The HTB classes on ``device`` with their counters ([] without an HTB tree);
        :class:`DataplaneError` naming the device if it is missing."""
        ...


@dataclass(frozen=True, slots=True)
class KernelRoute:
    destination: str
    device: str
    metric: int
    protocol: str
    stitched: bool


@dataclass(frozen=True, slots=True)
class PrefixRoutes:
    """Every route to one prefix, and the device the kernel sends a packet to it on."""

    prefix: str
    routes: tuple[KernelRoute, ...]
    chosen_device: str | None

    @property
    def stitched_metric(self) -> int | None:
        return min((r.metric for r in self.routes if r.stitched), default=None)

    @property
    def substrate_metric(self) -> int | None:
        return min((r.metric for r in self.routes if not r.stitched), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "route_metric_stitched": self.stitched_metric,
                "route_metric_substrate": self.substrate_metric,
                "chosen_device": self.chosen_device,
                "routes": [{"device": r.device, "metric": r.metric, "protocol": r.protocol,
                            "stitched": r.stitched} for r in self.routes]}


def route_metrics(netns: str | None, prefix: str, stitched_proto: int | None = None
                  ) -> PrefixRoutes:
    """The routes to ``prefix`` (exact destination) in ``netns`` (None: this namespace),
    stitched = installed with routing protocol ``stitched_proto`` (default: the linux
    driver's)."""
    from pyroute2 import IPRoute  # noqa: PLC0415  (only the kernel readers need it)
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    from vnstitch.dataplane.linux import ROUTE_PROTO  # noqa: PLC0415  (linux imports us)

    ours = ROUTE_PROTO if stitched_proto is None else stitched_proto
    names_of_proto = {**PROTO_NAMES, ours: "vnstitch"}

    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        raise DataplaneError(f"route_metrics: not a prefix: {prefix!r}") from None
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    try:
        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            names = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()}
            found: list[KernelRoute] = []
            for r in ipr.get_routes(family=family, table=254):
                dst = r.get_attr("RTA_DST")
                if dst is None or int(r["dst_len"]) != net.prefixlen \
                        or ipaddress.ip_address(dst) != net.network_address:
                    continue
                proto = int(r["proto"])
                found.append(KernelRoute(
                    str(net), names.get(int(r.get_attr("RTA_OIF") or 0), "?"),
                    int(r.get_attr("RTA_PRIORITY") or 0),
                    names_of_proto.get(proto, str(proto)), proto == ours))
            chosen: str | None = None
            try:
                got = ipr.route("get", dst=str(net.network_address + (1 if net.num_addresses
                                                                       > 1 else 0)))
                oif = got[0].get_attr("RTA_OIF") if got else None
                chosen = names.get(int(oif)) if oif is not None else None
            except NetlinkError:
                chosen = None  # no route at all: nothing is chosen
    except (OSError, NetlinkError) as exc:
        raise DataplaneError(f"route_metrics {prefix} in netns {netns}: {exc}") from exc
    return PrefixRoutes(str(net), tuple(sorted(found, key=lambda r: (r.metric, r.device))),
                        chosen)
