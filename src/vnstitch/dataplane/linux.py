r"""Linux kernel dataplane driver: VXLAN over (user-space) WireGuard, bridges, FDB, routes, HTB.

Theory of operation: :class:`LinuxDataplane` drives one network namespace (or the current
one) through pyroute2's ``IPRoute`` only -- no ``ip``/``tc`` subprocesses; the one
subprocess is ``wireguard-go`` (see :mod:`vnstitch.dataplane.wireguard_go`).

*Ownership.* Every link the driver creates carries the interface alias
``vnstitch:<owner>``; ``observe()`` reports only those links and what hangs off them:
bridge ports whose master is one of our bridges (the enslaved port may be a host port we
did not create -- removing the :class:`BridgePort` releases it, never deletes it), FDB
entries with a remote VTEP on our VXLAN devices, HTB classes under the root qdisc ``1:``
of our devices, and routes through our devices installed with routing protocol
:data:`ROUTE_PROTO`. Routes and rate limits may only use devices the driver owns (a
:class:`DataplaneError` otherwise). Anything else in the namespace is left alone, except
the root qdisc of the ``shaped`` devices named at construction (substrate interfaces the
Route Manager owns for QoS, made by someone else): their HTB tree is observed and
applied like our own devices', the devices themselves never touched.

*Canonical observe.* The kernel and wireguard-go report things in their own spelling
(peer order, ``/32`` suffixes, learned endpoints of passive peers, HTB rates rounded to
bytes/s). The driver remembers what it applied; when the kernel's view is equivalent
to that, ``observe()`` returns the applied object itself, so ``plan`` finds nothing to
do and applying a plan twice is a no-op. After a restart (no memory) an equivalent
object may be replaced once; WireGuard replaces are non-disruptive (UAPI ``set`` without
``replace_peers``), so an established tunnel does not flap.

*Rate limits and filters.* A :class:`RateLimit` is an HTB class ``1:<class_id>``; the
one with the largest id on a device is the default class, so alone it shapes all traffic
leaving the device. More RateLimits on the device share a parent class and borrow its
spare by ``prio``, and :class:`U32Filter`\ s steer packets into them (the tree is
described in :mod:`vnstitch.dataplane.tc`).

Every failure is a :class:`~vnstitch.dataplane.base.DataplaneError` naming the op; ``apply``
tries every op and reports the failed ones together (``DataplaneApplyError``), so one
object the kernel refuses never keeps the others out of the kernel.
Calls block (netlink round trips, process start); inside an asyncio program run them
with ``asyncio.to_thread`` -- called on the loop's thread they raise DataplaneError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.dataplane import tc, wireguard_go
from vnstitch.dataplane.base import DataplaneApplyError, DataplaneError, DeviceCounters
from vnstitch.dataplane.objects import (
    PIN_RULE_PRIORITY,
    PIN_TABLE_BASE,
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    Op,
    OpKind,
    PathPin,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
)
from vnstitch.dataplane.qos import ClassStats

#: rtnetlink protocol number stamped on (and identifying) the routes this driver installs.
ROUTE_PROTO = 0x56
_ALIAS_PREFIX = "vnstitch:"
#: How long an observe() stands for the kernel in the same thread's next apply().
SEEN_VALID_S = 5.0


def _bytes_per_s(mbps: float) -> int:
    return round(mbps * 1_000_000 / 8)


def _mbps(bytes_per_s: int) -> float:
    return bytes_per_s * 8 / 1_000_000


def _net(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def _canon(obj: DataplaneObject) -> object:
    """A spelling-independent form: equal canon means the kernel state is what was asked."""
    if isinstance(obj, WireguardInterface):
        peers = tuple(sorted(
            (p.public_key, p.endpoint, tuple(sorted(_net(a) for a in p.allowed_ips)),
             p.keepalive_s) for p in obj.peers))
        return (obj.name, wireguard_go.clamped(obj.private_key), obj.listen_port,
                ipaddress.ip_interface(obj.address) if obj.address else None, obj.mtu, peers)
    if isinstance(obj, RateLimit):
        return (obj.device, obj.class_id, _bytes_per_s(obj.rate_mbps),
                _bytes_per_s(obj.ceil_mbps))
    if isinstance(obj, U32Filter):
        return (obj.device, obj.prio, obj.handle, obj.class_id, tc.u32_bytes(obj.matches))
    if isinstance(obj, Route):
        return (_net(obj.destination), obj.device, obj.metric,
                ipaddress.ip_address(obj.gateway) if obj.gateway else None, obj.table)
    if isinstance(obj, FdbEntry):
        return (obj.device, ipaddress.ip_address(obj.remote_vtep), obj.mac.lower())
    if isinstance(obj, VxlanPort):
        return (obj.name, obj.vni, ipaddress.ip_address(obj.local_ip), obj.underlay,
                obj.dstport, obj.mtu)
    return obj


def _equivalent(applied: DataplaneObject, seen: DataplaneObject) -> bool:
    if isinstance(applied, WireguardInterface) and isinstance(seen, WireguardInterface):
        # A passive peer (endpoint None) learns its endpoint from the handshake.
        learned = {p.public_key: p.endpoint for p in seen.peers}
        peers = tuple(replace(p, endpoint=learned.get(p.public_key)) if p.endpoint is None
                      else p for p in applied.peers)
        applied = replace(applied, peers=peers)
    return type(applied) is type(seen) and _canon(applied) == _canon(seen)


class LinuxDataplane:
    """The kernel driver for namespace ``netns`` (``None``: the current namespace).

    ``owner`` names this driver instance in the alias of every link it creates; two
    drivers with different owners in one namespace never touch each other's links.
    WireGuard interface names are host-global (wireguard-go's control socket path), so
    the caller must make them unique per host, e.g. ``f"vw{segment}{n}"`` (<= 15 chars).
    """

    def __init__(self, netns: str | None = None, owner: str = "routemgr",
                 shaped: Sequence[str] = ()) -> None:
        if not owner or len(_ALIAS_PREFIX + owner) > 120:
            raise DataplaneError(f"LinuxDataplane: bad owner tag {owner!r}")
        self.netns = netns
        self.shaped = frozenset(shaped)
        self.marker = _ALIAS_PREFIX + owner
        self._applied: dict[str, DataplaneObject] = {}
        # The netlink socket of the current observe()/apply() call, per thread: the
        # reconcile and a reader of counters (show qos, /metrics) run in two worker
        # threads at once, and one must never use (or close) the other's socket.
        self._session_of = threading.local()

    # -- plumbing ---------------------------------------------------------------------
    def _rt_guard(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop in this thread: the sync pyroute2 API may run its own
        else:
            raise DataplaneError("LinuxDataplane blocks and runs pyroute2's own event loop: "
                                 "call it from a worker thread (asyncio.to_thread)")

    def _rt(self) -> Any:
        ipr = getattr(self._session_of, "ipr", None)
        if ipr is None:
            raise DataplaneError("LinuxDataplane: netlink used outside observe()/apply()")
        return ipr

    @contextmanager
    def _session(self) -> Iterator[None]:
        """One netlink socket per observe()/apply() call, opened and closed in the calling
        thread: pyroute2's sync API ties a socket to the thread's event loop, and callers
        (asyncio.to_thread) may use a different worker thread each time."""
        if getattr(self._session_of, "ipr", None) is not None:  # nested: apply() observes
            yield
            return
        self._rt_guard()
        try:
            self._session_of.ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        except (OSError, NetlinkError) as exc:
            raise DataplaneError(f"netns {self.netns}: cannot open netlink: {exc}") from exc
        try:
            yield
        finally:
            ipr, self._session_of.ipr = self._session_of.ipr, None
            ipr.close()

    def close(self) -> None:
        """Nothing stays open between calls; kept so ``with LinuxDataplane(...)`` reads well."""

    def __enter__(self) -> LinuxDataplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _index(self, name: str, what: str) -> int:
        found = self._rt().link_lookup(ifname=name)
        if not found:
            raise DataplaneError(f"{what}: missing device(s) [{name!r}]")
        return int(found[0])

    # -- observe ----------------------------------------------------------------------
    def counters(self, device: str) -> DeviceCounters:
        """Byte counters of any device in the namespace (owned or not), IFLA_STATS64."""
        what = f"counters {device}"
        try:
            with self._session():
                link = self._rt().get_links(self._index(device, what))[0]
        except (OSError, NetlinkError) as exc:
            raise DataplaneError(f"{what}: {exc}") from exc
        stats = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS")
        if stats is None:
            raise DataplaneError(f"{what}: the kernel reported no link statistics")
        return DeviceCounters(device, int(stats["rx_bytes"]), int(stats["tx_bytes"]))

    def class_stats(self, device: str) -> list[ClassStats]:
        """Counters of the HTB classes on any device in the namespace (kernel TCA_STATS2)."""
        what = f"class stats {device}"
        try:
            with self._session():
                return tc.class_stats(self._rt(), self._index(device, what), device)
        except (OSError, NetlinkError) as exc:
            raise DataplaneError(f"{what}: {exc}") from exc

    def observe(self) -> DataplaneState:
        try:
            with self._session():
                raw = self._observe_raw()
        except (OSError, NetlinkError) as exc:
            raise DataplaneError(f"observe netns {self.netns}: {exc}") from exc
        out = []
        for obj in raw:
            applied = self._applied.get(obj.key)
            out.append(applied if applied is not None and _equivalent(applied, obj) else obj)
        state = DataplaneState(out)
        # reconcile()'s apply() follows in this thread: it plans against this view
        # rather than reading the kernel again (a second observe doubled each pass).
        self._session_of.seen = (time.monotonic(), state)
        return state

    def _observe_raw(self) -> list[DataplaneObject]:
        ipr = self._rt()
        links = list(ipr.get_links())
        name_of = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in links}
        objs: list[DataplaneObject] = []
        owned: dict[int, str] = {}  # ifindex -> kind
        for m in links:
            if m.get_attr("IFLA_IFALIAS") != self.marker:
                continue
            info = m.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            idx, name = int(m["index"]), name_of[int(m["index"])]
            owned[idx] = str(kind)
            if kind == "tun":
                objs.append(self._observe_wg(idx, name, int(m.get_attr("IFLA_MTU"))))
            elif kind == "vxlan":
                data = info.get_attr("IFLA_INFO_DATA")
                objs.append(VxlanPort(
                    name=name, vni=int(data.get_attr("IFLA_VXLAN_ID")),
                    local_ip=str(data.get_attr("IFLA_VXLAN_LOCAL")),
                    underlay=name_of.get(int(data.get_attr("IFLA_VXLAN_LINK") or 0), "?"),
                    dstport=int(data.get_attr("IFLA_VXLAN_PORT")),
                    mtu=int(m.get_attr("IFLA_MTU"))))
                for f in ipr.fdb("dump", ifindex=idx):
                    dst = f.get_attr("NDA_DST")
                    if dst is not None and int(f["ifindex"]) == idx:
                        objs.append(FdbEntry(name, str(dst), str(f.get_attr("NDA_LLADDR"))))
            elif kind == "bridge":
                objs.append(Bridge(name))
        for m in links:
            master = m.get_attr("IFLA_MASTER")
            if master is not None and owned.get(int(master)) == "bridge":
                objs.append(BridgePort(name_of[int(master)], name_of[int(m["index"])]))
        shaped = [i for i, n in name_of.items() if n in self.shaped and i not in owned]
        for idx in [*owned, *shaped]:
            limits, filters = tc.observe(ipr, idx, name_of[idx])
            objs += limits
            objs += filters
        objs += self._observe_pins(name_of)
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.get_routes(family=family, table=None, proto=ROUTE_PROTO):
                oif = int(r.get_attr("RTA_OIF") or 0)
                if r["proto"] != ROUTE_PROTO or oif not in owned:
                    continue
                dst = r.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                gw = r.get_attr("RTA_GATEWAY")
                objs.append(Route(
                    destination=f"{dst}/{r['dst_len']}",
                    device=name_of[oif],
                    metric=int(r.get_attr("RTA_PRIORITY") or 0),
                    gateway=str(gw) if gw else None,
                    table=int(r.get_attr("RTA_TABLE") or r["table"])))
        return objs

    def _observe_pins(self, name_of: dict[int, str]) -> list[DataplaneObject]:
        """Our path pins: rules at PIN_RULE_PRIORITY into a pin table, with its route (a
        rule whose route the kernel dropped with its link is seen with no gateway)."""
        ipr = self._rt()
        pins: list[DataplaneObject] = []
        for r in ipr.get_rules(family=socket.AF_INET):
            table = int(r.get_attr("FRA_TABLE") or r["table"])
            if r.get_attr("FRA_PRIORITY") != PIN_RULE_PRIORITY or table < PIN_TABLE_BASE:
                continue
            sport = table - PIN_TABLE_BASE
            dst, gw, dev, src = "", "", "", ""
            for rt in ipr.get_routes(family=socket.AF_INET, table=table):
                if int(rt.get_attr("RTA_TABLE") or rt["table"]) != table:
                    continue
                dst = f"{rt.get_attr('RTA_DST') or '0.0.0.0'}/{rt['dst_len']}"
                gw = str(rt.get_attr("RTA_GATEWAY") or "")
                dev = name_of.get(int(rt.get_attr("RTA_OIF") or 0), "")
                src = str(rt.get_attr("RTA_PREFSRC") or "")
            if r.get_attr("FRA_IIFNAME") != "lo":
                # A rule that also steers forwarded packets is not the pin we want:
                # seen with no destination, so the reconcile replaces it.
                dst = ""
            pins.append(PathPin(sport, dst, gw, dev, src))
        return pins

    def _pin_rule(self, pin: PathPin) -> dict[str, Any]:
        """The pin rule's selectors. A delete names no ``iif``: the kernel then removes
        the rule with or without one."""
        return {"family": socket.AF_INET, "table": pin.table, "priority": PIN_RULE_PRIORITY,
                "FRA_IP_PROTO": socket.IPPROTO_UDP,
                "FRA_SPORT_RANGE": f"{pin.sport}:{pin.sport}"}

    def _create_pin(self, pin: PathPin, what: str) -> None:
        ipr = self._rt()
        extra = {"prefsrc": pin.source} if pin.source else {}
        ipr.route("replace", dst=_net(pin.destination), gateway=pin.gateway,
                  oif=self._index(pin.device, what), table=pin.table, proto=ROUTE_PROTO,
                  **extra)
        # iif lo: only packets this host sends. A transit router forwards other Route
        # Managers' tunnels, whose outer UDP may leave from the same port number; a
        # rule without it sent those into this pin's table, away from their path.
        ipr.rule("add", **self._pin_rule(pin), FRA_IIFNAME="lo")

    def _remove_pin(self, pin: PathPin) -> None:
        ipr = self._rt()
        with contextlib.suppress(NetlinkError):  # gone with its link already
            ipr.flush_routes(table=pin.table)
        ipr.rule("del", **self._pin_rule(pin))

    def _observe_wg(self, idx: int, name: str, mtu: int) -> WireguardInterface:
        cfg = wireguard_go.uapi_get(name)
        address = ""
        for a in self._rt().get_addr(index=idx):
            address = f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            if a["family"] == socket.AF_INET:
                break
        peers = tuple(sorted(cfg.peers, key=lambda p: p.public_key))
        return WireguardInterface(name=name, private_key=cfg.private_key or "",
                                  listen_port=cfg.listen_port, address=address,
                                  peers=peers, mtu=mtu)

    # -- apply ------------------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> None:
        with self._session():
            self._apply(ops)

    def _apply(self, ops: Sequence[Op]) -> None:
        """Every op is tried, each on its own: one the kernel refuses does not keep the
        others from the kernel (:class:`DataplaneApplyError` lists the failures). The
        state checked against is this thread's last observe() if nothing was applied
        since (reconcile's observe-plan-apply), else a fresh one."""
        seen = getattr(self._session_of, "seen", None)
        self._session_of.seen = None
        fresh = seen is not None and time.monotonic() - seen[0] < SEEN_VALID_S
        state = seen[1] if fresh and seen is not None else self.observe()
        self._session_of.seen = None
        # A bridge port swap (one out, one in) leaves the bridge without either for the
        # time between the two ops: resolve the new port's devices before any op runs,
        # so only one netlink call falls in that gap.
        self._session_of.ports = {}
        for op in ops:
            if op.kind is OpKind.CREATE and isinstance(op.obj, BridgePort):
                ipr = self._rt()
                try:
                    port, bridge = (ipr.link_lookup(ifname=op.obj.port),
                                    ipr.link_lookup(ifname=op.obj.bridge))
                except (OSError, NetlinkError):
                    continue  # the op itself will say what is wrong
                if port and bridge:
                    self._session_of.ports[op.obj.key] = (int(port[0]), int(bridge[0]))
        failures: dict[str, str] = {}
        applied: list[Op] = []
        for op in ops:
            try:
                self._apply_one(op, state)
            except (DataplaneError, OSError, NetlinkError, ValueError) as exc:
                text = str(exc)
                failures[op.obj.key] = text if text.startswith(str(op)) else f"{op}: {text}"
                continue
            applied.append(op)
            if op.kind is OpKind.REMOVE:
                self._applied.pop(op.obj.key, None)
                state = state.with_objects(remove=[op.obj.key])
            else:
                self._applied[op.obj.key] = op.obj
                state = state.with_objects(add=[op.obj])
        if failures:
            raise DataplaneApplyError(failures, applied)

    def _apply_one(self, op: Op, state: DataplaneState) -> None:
        present = op.obj.key in state
        if op.kind is OpKind.CREATE and present:
            raise DataplaneError("already exists")
        if op.kind is not OpKind.CREATE and not present:
            raise DataplaneError("does not exist")
        if op.kind is OpKind.CREATE:
            self._create(op.obj, str(op))
        elif op.kind is OpKind.REMOVE:
            self._remove(op.obj)
        else:
            old = state.get(op.obj.key)
            assert old is not None
            self._replace(old, op.obj, state, str(op))

    def _mark_up(self, idx: int) -> None:
        self._rt().link("set", index=idx, ifalias=self.marker)
        self._rt().link("set", index=idx, state="up")

    def _new_link(self, name: str, what: str, **kwargs: Any) -> int:
        if self._rt().link_lookup(ifname=name):
            raise DataplaneError(f"device {name!r} already exists (not created by this driver)")
        self._rt().link("add", ifname=name, **kwargs)
        idx = self._index(name, what)
        self._mark_up(idx)
        return idx

    def _create(self, obj: DataplaneObject, what: str) -> None:
        ipr = self._rt()
        if isinstance(obj, WireguardInterface):
            self._create_wg(obj, what)
        elif isinstance(obj, VxlanPort):
            under = self._index(obj.underlay, what)
            self._new_link(obj.name, what, kind="vxlan", vxlan_id=obj.vni,
                           vxlan_local=obj.local_ip, vxlan_link=under, vxlan_port=obj.dstport,
                           vxlan_learning=0, mtu=obj.mtu)
        elif isinstance(obj, Bridge):
            self._new_link(obj.name, what, kind="bridge")
        elif isinstance(obj, BridgePort):
            ready = getattr(self._session_of, "ports", {}).get(obj.key)
            if ready is None:
                missing = [n for n in (obj.bridge, obj.port) if not ipr.link_lookup(ifname=n)]
                if missing:
                    raise DataplaneError(f"missing device(s) {missing}")
                ready = (self._index(obj.port, what), self._index(obj.bridge, what))
            ipr.link("set", index=ready[0], master=ready[1])
            ipr.link("set", index=ready[0], state="up")
        elif isinstance(obj, FdbEntry):
            ipr.fdb("append", ifindex=self._index(obj.device, what), lladdr=obj.mac,
                    dst=obj.remote_vtep)
        elif isinstance(obj, Route):
            ipr.route("add", **self._route_args(obj, what))
        elif isinstance(obj, PathPin):
            self._create_pin(obj, what)
        elif isinstance(obj, U32Filter):
            self._create_filter(obj, what)
        else:
            self._create_rate(obj, what)

    def _owned_index(self, name: str, what: str) -> int:
        idx = self._index(name, what)
        if self._rt().get_links(idx)[0].get_attr("IFLA_IFALIAS") != self.marker:
            raise DataplaneError(f"device {name!r} is not owned by this driver")
        return idx

    def _route_args(self, obj: Route, what: str) -> dict[str, Any]:
        args: dict[str, Any] = {"dst": _net(obj.destination),
                                "oif": self._owned_index(obj.device, what),
                                "priority": obj.metric, "table": obj.table,
                                "proto": ROUTE_PROTO}
        if obj.gateway:
            args["gateway"] = obj.gateway
        return args

    def _create_wg(self, obj: WireguardInterface, what: str) -> None:
        if self._rt().link_lookup(ifname=obj.name):
            raise DataplaneError(f"device {obj.name!r} already exists (not created by this driver)")
        wireguard_go.start(obj.name, self.netns)
        try:
            idx = self._index(obj.name, what)
            self._rt().link("set", index=idx, ifalias=self.marker)
            wireguard_go.uapi_set(obj.name, obj.private_key, obj.listen_port, obj.peers)
            self._rt().link("set", index=idx, mtu=obj.mtu)
            if obj.address:
                iface = ipaddress.ip_interface(obj.address)
                self._rt().addr("add", index=idx, address=str(iface.ip),
                                prefixlen=iface.network.prefixlen)
            self._rt().link("set", index=idx, state="up")
        except BaseException:
            self._remove_wg(obj.name)  # do not leak a daemon we cannot describe
            raise

    def _tc_index(self, name: str, what: str) -> int:
        return self._index(name, what) if name in self.shaped else \
            self._owned_index(name, what)

    def _create_rate(self, obj: RateLimit, what: str) -> None:
        tc.add_rate(self._rt(), self._tc_index(obj.device, what), obj)

    def _create_filter(self, obj: U32Filter, what: str) -> None:
        tc.add_filter(self._rt(), self._tc_index(obj.device, what), obj)

    def _remove_wg(self, name: str) -> None:
        found = self._rt().link_lookup(ifname=name)
        if found:
            self._rt().link("del", index=found[0])  # wireguard-go exits when its TUN goes
        wireguard_go.wait_gone(name)

    def _remove(self, obj: DataplaneObject) -> None:
        ipr = self._rt()
        if isinstance(obj, WireguardInterface):
            self._remove_wg(obj.name)
        elif isinstance(obj, VxlanPort | Bridge):
            found = ipr.link_lookup(ifname=obj.name)
            if found:  # gone already: the kernel deletes a VXLAN device with its underlay
                ipr.link("del", index=found[0])
        elif isinstance(obj, BridgePort):
            found = ipr.link_lookup(ifname=obj.port)
            if found:  # a host port that vanished has nothing left to release
                ipr.link("set", index=found[0], master=0)
        elif isinstance(obj, FdbEntry):
            ipr.fdb("del", ifindex=self._index(obj.device, f"remove {obj.key}"),
                    lladdr=obj.mac, dst=obj.remote_vtep)
        elif isinstance(obj, Route):
            ipr.route("del", **self._route_args(obj, f"remove {obj.key}"))
        elif isinstance(obj, PathPin):
            self._remove_pin(obj)
        elif isinstance(obj, U32Filter):
            tc.remove_filter(ipr, self._index(obj.device, f"remove {obj.key}"), obj)
        else:
            tc.remove_rate(ipr, self._index(obj.device, f"remove {obj.key}"), obj, obj.device)

    def _replace(self, old: DataplaneObject, new: DataplaneObject, state: DataplaneState,
                 what: str) -> None:
        ipr = self._rt()
        if isinstance(new, WireguardInterface) and isinstance(old, WireguardInterface):
            keep = {p.public_key for p in new.peers}
            same_key = wireguard_go.clamped(old.private_key) == \
                wireguard_go.clamped(new.private_key)
            wireguard_go.uapi_set(new.name, None if same_key else new.private_key,
                                  None if old.listen_port == new.listen_port
                                  else new.listen_port, new.peers,
                                  remove_peers=[p.public_key for p in old.peers
                                                if p.public_key not in keep])
            idx = self._index(new.name, what)
            if old.mtu != new.mtu:
                ipr.link("set", index=idx, mtu=new.mtu)
            if old.address != new.address:
                for a in ipr.get_addr(index=idx):
                    ipr.addr("del", index=idx, address=a.get_attr("IFA_ADDRESS"),
                             prefixlen=a["prefixlen"])
                if new.address:
                    iface = ipaddress.ip_interface(new.address)
                    ipr.addr("add", index=idx, address=str(iface.ip),
                             prefixlen=iface.network.prefixlen)
        elif isinstance(new, Route):
            ipr.route("replace", **self._route_args(new, what))
        elif isinstance(new, PathPin):
            self._remove_pin(new)
            self._create_pin(new, what)
        elif isinstance(new, RateLimit):
            tc.change_rate(ipr, self._index(new.device, what), new)
        elif isinstance(new, VxlanPort):
            # VNI/local/underlay cannot change in place: recreate, then put back what hung
            # off the old device so the plan's other objects stay true.
            children = [o for o in state if _hangs_off(o, new.name)]
            self._remove(old)
            self._create(new, what)
            for child in sorted(children, key=lambda o: o.layer):
                self._create(child, what)
        else:
            self._remove(old)
            self._create(new, what)


def _hangs_off(obj: DataplaneObject, device: str) -> bool:
    if isinstance(obj, BridgePort):
        return obj.port == device
    if isinstance(obj, FdbEntry | Route | RateLimit | U32Filter):
        return obj.device == device
    return False


@contextmanager
def opened(netns: str | None = None, owner: str = "routemgr") -> Iterator[LinuxDataplane]:
    """``with opened(ns) as dp:`` -- a driver whose netlink socket is closed afterwards."""
    dp = LinuxDataplane(netns, owner)
    try:
        yield dp
    finally:
        dp.close()


__all__ = ["ROUTE_PROTO", "LinuxDataplane", "WireguardPeer", "opened"]
