"""Prometheus metrics of one Route Manager daemon, through ``prometheus_client``.

Theory of operation: each daemon owns one :class:`prometheus_client.CollectorRegistry`
(no global registry, so two daemons in one process never mix their series) holding one
:class:`DaemonCollector`. The collector keeps no state of its own: every scrape builds the
metric families from the same views the control socket and the HTTP API serve
(:func:`vnstitch.daemon.control.view`), plus the daemon's plain counters. So a value seen
on ``/metrics`` is the value ``show`` and ``GET /api/v1/...`` report at that moment.

Families (all carry the label ``rm``, the daemon's RM id):

- daemon counters: datagrams, probes, stitches established/failed/torn down/resized,
  dataplane ops and errors, core exceptions, allocation errors (``*_total``)
- ``peer_faults_total{reason}`` and ``core_dropped_total{reason}``
- the core's held-path counters (:mod:`vnstitch.protocol.heldpaths`):
  ``datapath_held_total``, ``datapath_hold_ended_total``, ``datapath_hold_replaced_total``
- per stitch: ``stitch_state{stitch_id,vnid,state}`` (1 for its state, 0 for the others),
  ``stitch_bandwidth_mbps`` (negotiated), ``stitch_reserved_mbps`` (reservation held
  here), ``stitch_allocated_mbps`` (the allocation loop's HTB rate), ``stitch_measured_mbps``
  (the last measured rate), ``stitch_forecast_mbps{quantile}`` (the allocator's forecast:
  its band at 0.1, 0.5 and 0.9, and the quantile it provisions for),
  ``stitch_rtt_seconds`` and ``stitch_probe_loss_ratio`` (from the health probes of the
  tunnel end here)
- per peer: ``peer_last_heard_seconds`` (age; absent when never heard),
  ``peer_state{state}`` (``up`` | ``down`` | ``never_connected`` | ``removed``: see
  :func:`vnstitch.daemon.reload.peer_state`), ``peer_datagrams_*``,
  ``peer_faults_by_reason_total{reason}`` (a peer whose key is not trusted shows as
  ``unknown_sender`` here, under its configured address's peer)
- per link: ``link_reserved_mbps``, ``link_capacity_mbps``, ``link_utilisation_ratio``
- per QoS class (HTB class in the desired state): ``qos_class_rate_mbps``,
  ``qos_class_ceil_mbps``, and from the kernel (a scrape through :class:`DaemonMetrics`,
  a driver that counts classes: the Linux one) ``qos_class_bytes_total``,
  ``qos_class_packets_total``, ``qos_class_drops_total{device,class_id,class}``; per
  stitch, its tunnel end's classes summed: ``stitch_sent_bytes_total`` (throughput:
  ``rate()`` of it) and ``stitch_dropped_packets_total``
- ``decisions_total{kind,action}``: decisions kept by the daemon (bounded history)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vnstitch.daemon.reload import PeerState

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STITCH_STATES = ("requested", "up", "renegotiating", "down", "failed")
PEER_STATES = tuple(s.value for s in PeerState)

# (daemon counter key, metric name, help)
_COUNTERS = (
    ("datagrams_received", "datagrams_received", "UDP datagrams received"),
    ("datagrams_sent", "datagrams_sent", "UDP datagrams sent"),
    ("probes_sent_in_tunnel", "probes_sent_in_tunnel",
     "tunnel probes (and replies) sent through their tunnel"),
    ("stitches_established", "stitches_established", "stitches established"),
    ("stitches_failed", "stitches_failed", "stitch requests failed"),
    ("stitches_torn_down", "stitches_torn_down", "stitches torn down"),
    ("dataplane_ops", "dataplane_ops", "dataplane ops applied"),
    ("dataplane_errors", "dataplane_errors", "failed reconciles"),
    ("core_exceptions", "core_exceptions", "exceptions escaping the core (bugs)"),
    ("stitches_resized", "stitches_resized", "in-place resizes granted"),
    ("resizes_failed", "resizes_failed", "in-place resizes refused or timed out"),
    ("allocation_errors", "allocation_errors",
     "allocation intervals that failed and kept the last reservation"),
    ("config_reloads", "config_reloads", "config reloads applied (SIGHUP, reload)"),
    ("config_reloads_refused", "config_reloads_refused",
     "config reloads refused (the daemon kept its config)"),
    ("udp_socket_drops", "udp_socket_drops", "datagrams the kernel dropped at the UDP "
     "socket: refused by its source filter, or its receive buffer was full"),
    ("admission_dropped", "admission_dropped",
     "datagrams dropped by the admission checks before signature verification"),
)

# (core event counter, help): from ``core.counters.events``
_CORE_EVENTS = (
    ("datapath_held", "tunnel ends kept in the kernel after their path was given up"),
    ("datapath_hold_ended", "held tunnel ends removed: no traffic from the far end, or "
     "the hold time ran out"),
    ("datapath_hold_replaced", "held tunnel ends removed for the stitch's new end or "
     "its release"),
    ("lease_kept_by_datapath", "lease checks at a path end that kept a lapsed lease "
     "because the tunnel carried the far end's probes"),
)


def new_registry(daemon: RouteManagerDaemon) -> CollectorRegistry:
    """A registry of its own holding ``daemon``'s collector (no kernel counters: see
    :class:`DaemonMetrics` for a scrape that reads them)."""
    return DaemonMetrics(daemon).registry


class DaemonMetrics:
    """One daemon's registry; :meth:`text` is a scrape: it reads the kernel's HTB class
    counters (in a worker thread, :func:`vnstitch.daemon.qoslive.live_view`) and then
    builds the exposition, so ``/metrics`` and ``show metrics`` carry them."""

    def __init__(self, daemon: RouteManagerDaemon) -> None:
        self._daemon = daemon
        self.collector = DaemonCollector(daemon)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    async def text(self) -> str:
        from vnstitch.daemon.qoslive import live_view  # noqa: PLC0415  (cycle)

        if self._daemon.store_open:
            # No await between setting the rows and collecting: one scrape's rows only.
            self.collector.qos_rows = await live_view(self._daemon, "qos")
        try:
            return exposition(self.registry)
        finally:
            self.collector.qos_rows = None


def exposition(registry: CollectorRegistry) -> str:
    """Prometheus text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry).decode("utf-8")


class DaemonCollector(Collector):
    """Builds every family from the daemon's views at scrape time (see module docstring)."""

    def __init__(self, daemon: RouteManagerDaemon) -> None:
        self._daemon = daemon
        #: this scrape's HTB classes with the kernel's counters (``show qos``'s rows);
        #: None: the desired classes only
        self.qos_rows: list[dict[str, Any]] | None = None

    def collect(self) -> Iterator[Metric]:
        from vnstitch.daemon.control import view  # noqa: PLC0415  (cycle: control uses us)

        d = self._daemon
        if not d.store_open:  # not started or already stopped: nothing to report
            return
        rm = str(d.rm_id)
        families: list[Metric] = []
        families += _daemon_counters(d, rm)
        stitches = view(d, "stitches")
        tunnels = view(d, "tunnels")
        allocation = view(d, "status")["allocation"]
        decisions = view(d, "decisions")
        families += _stitch_families(rm, stitches, tunnels, allocation, decisions)
        families += _peer_families(rm, view(d, "peers"))
        families += _link_families(rm, view(d, "status")["link_usage"])
        qos = self.qos_rows if self.qos_rows is not None else view(d, "qos")
        families += _qos_families(rm, qos)
        families += _stitch_traffic(rm, qos)
        kinds = Counter((str(r.get("kind")), str(r.get("action"))) for r in decisions)
        fam = CounterMetricFamily("vnstitch_decisions", "decisions kept by the daemon "
                                  "(bounded history), by kind and action",
                                  labels=["rm", "kind", "action"])
        for (kind, action), n in sorted(kinds.items()):
            fam.add_metric([rm, kind, action], n)
        families.append(fam)
        yield from families


def _daemon_counters(d: RouteManagerDaemon, rm: str) -> list[Metric]:
    out: list[Metric] = []
    d.metrics["udp_socket_drops"] = d.udp_socket_drops()  # read from the kernel now
    for key, name, help_text in _COUNTERS:
        fam = CounterMetricFamily(f"vnstitch_{name}", help_text, labels=["rm"])
        fam.add_metric([rm], d.metrics[key])
        out.append(fam)
    events = d.core.counters.events
    for name, help_text in _CORE_EVENTS:
        fam = CounterMetricFamily(f"vnstitch_{name}", help_text, labels=["rm"])
        fam.add_metric([rm], events.get(name, 0))
        out.append(fam)
    for name, help_text, counts in (
            ("peer_faults", "datagrams dropped by the core, by reason", dict(d.faults)),
            ("core_dropped", "the core's own drop counters, by reason",
             dict(d.core.counters.dropped))):
        fam = CounterMetricFamily(f"vnstitch_{name}", help_text, labels=["rm", "reason"])
        for reason, n in sorted(counts.items()):
            fam.add_metric([rm, str(reason)], n)
        out.append(fam)
    return out


def _gauge(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"vnstitch_{name}", help_text, labels=["rm", *labels])


def _stitch_families(rm: str, stitches: list[dict[str, Any]], tunnels: list[dict[str, Any]],
                     allocation: dict[str, Any], decisions: list[dict[str, Any]]
                     ) -> list[Metric]:
    state = _gauge("stitch_state", "1 for the stitch's current state, 0 for the others",
                   ["stitch_id", "vnid", "state"])
    bw = _gauge("stitch_bandwidth_mbps", "negotiated bandwidth of the stitch", ["stitch_id"])
    reserved = _gauge("stitch_reserved_mbps", "bandwidth reserved for the stitch here",
                      ["stitch_id"])
    count = _gauge("stitches", "stitches by state", ["state"])
    by_state = Counter(str(s["status"]) for s in stitches)
    for s in stitches:
        sid = str(s["stitch_id"])
        for st in sorted({*STITCH_STATES, str(s["status"])}):
            state.add_metric([rm, sid, str(s["vnid"]), st], 1.0 if st == s["status"] else 0.0)
        bw.add_metric([rm, sid], float(s["bandwidth_mbps"]))
        reserved.add_metric([rm, sid], float(s["reserved_mbps"]))
    for st in sorted({*STITCH_STATES, *by_state}):
        count.add_metric([rm, st], by_state.get(st, 0))
    total = _gauge("reserved_mbps", "bandwidth reserved by this RM's stitches", [])
    total.add_metric([rm], sum(float(s["reserved_mbps"]) for s in stitches))

    allocated = _gauge("stitch_allocated_mbps",
                       "rate the allocation loop gives the stitch's HTB class here",
                       ["stitch_id"])
    measured = _gauge("stitch_measured_mbps", "last measured rate sent into the stitch here",
                      ["stitch_id"])
    # .get: the allocation loop's rows are its own; a missing field drops a sample, never
    # the whole scrape.
    for row in allocation.get("stitches", []) if allocation.get("enabled") else []:
        if row.get("reserved_mbps") is not None:
            allocated.add_metric([rm, str(row["stitch_id"])], float(row["reserved_mbps"]))
        if row.get("last_mbps") is not None:
            measured.add_metric([rm, str(row["stitch_id"])], float(row["last_mbps"]))
    forecast = _gauge("stitch_forecast_mbps", "the allocator's latest forecast of the "
                      "stitch's rate: its band (quantiles 0.1, 0.5, 0.9) and the quantile "
                      "it provisions for", ["stitch_id", "quantile"])
    latest: dict[str, dict[str, Any]] = {}
    for row in decisions:
        if row.get("quantile") is not None and row.get("forecast_mbps") is not None:
            latest[str(row.get("stitch_id"))] = row
    for sid, row in sorted(latest.items()):
        levels = {f"{float(row['quantile']):g}": float(row["forecast_mbps"])}
        levels.update({str(q): float(v) for q, v in (row.get("band") or {}).items()})
        for q, v in sorted(levels.items(), key=lambda kv: float(kv[0])):
            forecast.add_metric([rm, sid, q], v)

    rtt = _gauge("stitch_rtt_seconds", "round-trip time of the last answered health probe "
                 "of the stitch's tunnel end here", ["stitch_id", "tunnel_id"])
    loss = _gauge("stitch_probe_loss_ratio", "share of recent health probes unanswered",
                  ["stitch_id", "tunnel_id"])
    for t in tunnels:
        if t.get("stitch_id") is None:
            continue
        labels = [rm, str(t["stitch_id"]), str(t["tunnel_id"])]
        if t.get("rtt_ms") is not None:
            rtt.add_metric(labels, float(t["rtt_ms"]) / 1000.0)
        if t.get("loss") is not None:
            loss.add_metric(labels, float(t["loss"]))
    return [state, count, bw, reserved, total, allocated, measured, forecast, rtt, loss]


def _peer_families(rm: str, peers: Iterable[dict[str, Any]]) -> list[Metric]:
    age = _gauge("peer_last_heard_seconds", "seconds since the peer's last good datagram "
                 "(absent: never heard)", ["peer"])
    state = _gauge("peer_state", "1 for the peer's state: up (heard within the hold time), "
                   "down (heard before, not since), never_connected, removed (dropped "
                   "from the config by a reload)", ["peer", "state"])
    received = CounterMetricFamily("vnstitch_peer_datagrams_received",
                                   "datagrams received from the peer", labels=["rm", "peer"])
    sent = CounterMetricFamily("vnstitch_peer_datagrams_sent", "datagrams sent to the peer",
                               labels=["rm", "peer"])
    faults = CounterMetricFamily("vnstitch_peer_datagrams_faulted",
                                 "datagrams from the peer dropped as faults",
                                 labels=["rm", "peer"])
    reasons = CounterMetricFamily("vnstitch_peer_faults_by_reason",
                                  "datagrams from the peer dropped, by reason (unknown_sender, "
                                  "bad_signature, replayed, ...)", labels=["rm", "peer", "reason"])
    for p in peers:
        pid = str(p["id"])
        ago = p.get("last_heard_s_ago")
        now_state = str(p["state"])
        if ago is not None:
            age.add_metric([rm, pid], float(ago))
        for st in PEER_STATES:
            state.add_metric([rm, pid, st], 1.0 if st == now_state else 0.0)
        received.add_metric([rm, pid], int(p["received"]))
        sent.add_metric([rm, pid], int(p["sent"]))
        faults.add_metric([rm, pid], int(p["faults"]))
        for reason, n in sorted((p.get("fault_reasons") or {}).items()):
            reasons.add_metric([rm, pid, str(reason)], int(n))
    return [age, state, received, sent, faults, reasons]


def _link_families(rm: str, usage: dict[str, dict[str, float]]) -> list[Metric]:
    reserved = _gauge("link_reserved_mbps", "bandwidth reserved on the link to a neighbour "
                      "(transit included)", ["peer"])
    capacity = _gauge("link_capacity_mbps", "capacity of the link to a neighbour", ["peer"])
    util = _gauge("link_utilisation_ratio", "reserved / capacity of the link", ["peer"])
    for peer, u in sorted(usage.items()):
        reserved.add_metric([rm, peer], u["reserved_mbps"])
        capacity.add_metric([rm, peer], u["capacity_mbps"])
        if u["capacity_mbps"] > 0:
            util.add_metric([rm, peer], u["reserved_mbps"] / u["capacity_mbps"])
    return [reserved, capacity, util]


def _qos_families(rm: str, classes: Iterable[dict[str, Any]]) -> list[Metric]:
    rate = _gauge("qos_class_rate_mbps", "guaranteed rate of an HTB class", ["device",
                                                                             "class_id"])
    ceil = _gauge("qos_class_ceil_mbps", "ceiling of an HTB class", ["device", "class_id"])
    labels3 = ["rm", "device", "class_id", "class"]
    sent = CounterMetricFamily("vnstitch_qos_class_bytes", "bytes the kernel sent through "
                               "the HTB class (absent: the driver cannot read it)",
                               labels=labels3)
    packets = CounterMetricFamily("vnstitch_qos_class_packets", "packets the kernel sent "
                                  "through the HTB class", labels=labels3)
    drops = CounterMetricFamily("vnstitch_qos_class_drops", "packets the kernel dropped "
                                "in the HTB class (over its ceiling)", labels=labels3)
    for c in classes:
        labels = [rm, str(c["device"]), str(c["class_id"])]
        rate.add_metric(labels, float(c["rate_mbps"]))
        ceil.add_metric(labels, float(c["ceil_mbps"]))
        if c.get("bytes") is None:
            continue
        named = [*labels, str(c.get("class") or "")]
        sent.add_metric(named, int(c["bytes"]))
        packets.add_metric(named, int(c["packets"]))
        drops.add_metric(named, int(c["drops"]))
    return [rate, ceil, sent, packets, drops]


def _stitch_traffic(rm: str, classes: Iterable[dict[str, Any]]) -> list[Metric]:
    """Per stitch: what its tunnel end sent and dropped here (its HTB classes summed; each
    class row names its stitch, :func:`vnstitch.daemon.qoslive.qos_rows`)."""
    sent = CounterMetricFamily("vnstitch_stitch_sent_bytes", "bytes the kernel sent into "
                               "the stitch's tunnel here (all its classes)",
                               labels=["rm", "stitch_id"])
    drops = CounterMetricFamily("vnstitch_stitch_dropped_packets", "packets the kernel "
                                "dropped at the stitch's tunnel end here (over its "
                                "bandwidth)", labels=["rm", "stitch_id"])
    totals: dict[str, list[int]] = {}
    for c in classes:
        sid = c.get("stitch_id")
        if sid is None or c.get("bytes") is None:
            continue
        t = totals.setdefault(sid, [0, 0])
        t[0] += int(c["bytes"])
        t[1] += int(c["drops"])
    for sid, (b, dropped) in sorted(totals.items()):
        sent.add_metric([rm, sid], b)
        drops.add_metric([rm, sid], dropped)
    return [sent, drops]
