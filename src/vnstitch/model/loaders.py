"""Load real substrate topologies: Topology Zoo GraphML, SNDlib XML, and ``topohub``.

Theory of operation: each loader reads one source into a :class:`Substrate`, filling the
three link attributes from the file where it has them and from documented defaults where
it does not, and records each default or repair in ``Substrate.notes``:

* capacity: GraphML ``LinkSpeedRaw`` (bit/s), SNDlib ``preInstalledModule/capacity``
  (Mbit/s); otherwise :data:`DEFAULT_CAPACITY_MBPS` (10 Gbit/s, the common backbone port);
* latency: great-circle distance between the end nodes x 5 us/km, floored at
  :data:`MIN_LATENCY_MS`; :data:`DEFAULT_LATENCY_MS` when an end has no coordinates;
* cost: SNDlib ``routingCost`` where given, else 1 per link (hop count).

Parallel links are merged (capacities add, the lower latency wins); only the largest
connected component is kept. Every error names the file, the element and the problem.
:func:`load_topology` resolves the CLI's ``zoo:NAME``, ``sndlib:NAME`` and ``PATH`` forms.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import networkx as nx

from vnstitch.model.errors import ModelError, TopologyLoadError
from vnstitch.model.substrate import LATENCY_MS_PER_KM, Substrate, great_circle_km

DEFAULT_CAPACITY_MBPS = 10_000.0
DEFAULT_LATENCY_MS = 1.0
MIN_LATENCY_MS = 0.1
_SNDLIB_NS = "{http://sndlib.zib.de/network}"


def _latency(sub: Substrate, a: str, b: str) -> float | None:
    na, nb = sub.graph.nodes[a], sub.graph.nodes[b]
    if None in (na["lat"], na["lon"], nb["lat"], nb["lon"]):
        return None
    km = great_circle_km(na["lat"], na["lon"], nb["lat"], nb["lon"])
    return max(MIN_LATENCY_MS, km * LATENCY_MS_PER_KM)


def _coord(value: Any, source: str, element: str, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TopologyLoadError(source, element, f"{name} is not a number: {value!r}") from None
    if not math.isfinite(f):
        raise TopologyLoadError(source, element, f"{name} is not finite: {value!r}")
    return f


class _LinkMerger:
    """Collects links, merging parallel ones, then writes them with defaults noted."""

    def __init__(self, sub: Substrate, source: str) -> None:
        self.sub, self.source = sub, source
        self.links: dict[tuple[str, str], list[float | None]] = {}
        self.default_caps = 0
        self.default_lats = 0
        self.self_loops = 0

    def add(self, a: str, b: str, element: str, capacity: float | None, cost: float) -> None:
        if a not in self.sub.graph or b not in self.sub.graph:
            missing = a if a not in self.sub.graph else b
            raise TopologyLoadError(self.source, element, f"refers to unknown node {missing!r}")
        if a == b:
            self.self_loops += 1
            return
        if capacity is not None and not (math.isfinite(capacity) and capacity > 0):
            raise TopologyLoadError(self.source, element, f"capacity must be > 0, got {capacity}")
        key = (a, b) if a < b else (b, a)
        if key in self.links:
            prev = self.links[key]
            prev_cap = prev[0]
            prev[0] = None if capacity is None or prev_cap is None else prev_cap + capacity
            prev[1] = min(prev[1] or cost, cost)
        else:
            self.links[key] = [capacity, cost]

    def finish(self) -> Substrate:
        for (a, b), (given_cap, cost) in self.links.items():
            lat = _latency(self.sub, a, b)
            if lat is None:
                self.default_lats += 1
                lat = DEFAULT_LATENCY_MS
            cap = DEFAULT_CAPACITY_MBPS if given_cap is None else given_cap
            self.default_caps += given_cap is None
            self.sub.add_link(a, b, capacity_mbps=cap, latency_ms=lat, cost=cost or 1.0)
        if self.default_caps:
            self.sub.notes.append(
                f"{self.default_caps} link(s) without capacity: {DEFAULT_CAPACITY_MBPS:g} Mbit/s"
            )
        if self.default_lats:
            self.sub.notes.append(
                f"{self.default_lats} link(s) without coordinates: {DEFAULT_LATENCY_MS:g} ms"
            )
        if self.self_loops:
            self.sub.notes.append(f"dropped {self.self_loops} self-loop(s)")
        if self.sub.graph.number_of_edges() == 0:
            raise TopologyLoadError(self.source, "graph", "has no links")
        return self.sub.largest_component()


def load_graphml(path: str | Path) -> Substrate:
    """Load a Topology Zoo GraphML file."""
    source = str(path)
    try:
        g = nx.read_graphml(source)
    except FileNotFoundError:
        raise TopologyLoadError(source, "file", "not found") from None
    except (ET.ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise TopologyLoadError(source, "graphml", f"cannot parse: {exc}") from None
    name = str(g.graph.get("label") or g.graph.get("Network") or Path(source).stem)
    sub = Substrate(name)
    for node, d in g.nodes(data=True):
        element = f"node {node!r}"
        sub.add_node(
            str(node), label=str(d.get("label", node)),
            lat=_coord(d.get("Latitude"), source, element, "Latitude"),
            lon=_coord(d.get("Longitude"), source, element, "Longitude"),
        )
    merger = _LinkMerger(sub, source)
    for a, b, d in g.edges(data=True):
        element = f"edge {a!r}-{b!r}"
        raw = _coord(d.get("LinkSpeedRaw"), source, element, "LinkSpeedRaw")
        merger.add(str(a), str(b), element, None if raw is None else raw / 1e6, 1.0)
    return merger.finish()


def _text(el: ET.Element, path: str) -> str | None:
    found = el.find(path)
    return None if found is None or found.text is None else found.text.strip()


def load_sndlib(path: str | Path) -> Substrate:
    """Load an SNDlib native-XML network (capacities in Mbit/s per the SNDlib format)."""
    source = str(path)
    try:
        root = ET.parse(source).getroot()
    except FileNotFoundError:
        raise TopologyLoadError(source, "file", "not found") from None
    except ET.ParseError as exc:
        raise TopologyLoadError(source, "xml", f"cannot parse: {exc}") from None
    ns = _SNDLIB_NS if root.tag.startswith(_SNDLIB_NS) else ""
    structure = root.find(f"{ns}networkStructure")
    if structure is None:
        raise TopologyLoadError(source, "network", "has no <networkStructure>")
    nodes_el = structure.find(f"{ns}nodes")
    if nodes_el is None:
        raise TopologyLoadError(source, "networkStructure", "has no <nodes>")
    geographical = nodes_el.get("coordinatesType", "geographical") == "geographical"
    sub = Substrate(Path(source).name.split(".")[0])
    for node in nodes_el.findall(f"{ns}node"):
        nid = node.get("id")
        if not nid:
            raise TopologyLoadError(source, "node", "has no id attribute")
        element = f"node {nid!r}"
        x = _coord(_text(node, f"{ns}coordinates/{ns}x"), source, element, "x")
        y = _coord(_text(node, f"{ns}coordinates/{ns}y"), source, element, "y")
        lat, lon = (y, x) if geographical else (None, None)
        sub.add_node(nid, lat=lat, lon=lon)
    merger = _LinkMerger(sub, source)
    links_el = structure.find(f"{ns}links")
    for link in [] if links_el is None else links_el.findall(f"{ns}link"):
        lid = link.get("id", "?")
        element = f"link {lid!r}"
        a, b = _text(link, f"{ns}source"), _text(link, f"{ns}target")
        if not a or not b:
            raise TopologyLoadError(source, element, "needs <source> and <target>")
        cap = _coord(_text(link, f"{ns}preInstalledModule/{ns}capacity"), source, element,
                     "preInstalledModule/capacity")
        cost = _coord(_text(link, f"{ns}routingCost"), source, element, "routingCost")
        merger.add(a, b, element, cap, 1.0 if cost is None or cost <= 0 else cost)
    return merger.finish()


def load_topohub(key: str) -> Substrate:
    """Load a built-in topology shipped by the ``topohub`` package (e.g. ``topozoo/Abilene``).

    topohub gives node positions but no capacities, so capacities take the default and
    latency comes from the great-circle distance between the positions.
    """
    source = f"topohub:{key}"
    if not key or ".." in key or key.startswith("/"):
        raise TopologyLoadError(source, "key", "must look like group/name")
    # Read topohub's packaged JSON ourselves: topohub.get() leaves the file open.
    try:
        resource = importlib.resources.files("topohub") / "data" / f"{key}.json"
        with resource.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        raise TopologyLoadError(source, "key", "no such topology in topohub") from None
    except (OSError, ValueError) as exc:
        raise TopologyLoadError(source, "json", f"cannot read: {exc}") from None
    sub = Substrate(str(data.get("graph", {}).get("name", key)))
    names: dict[str, str] = {}
    for node in data["nodes"]:
        nid = str(node["id"])
        label = str(node.get("name") or nid)
        pos = node.get("pos") or (None, None)
        names[nid] = nid
        sub.add_node(nid, label=label,
                     lon=_coord(pos[0], source, f"node {nid}", "pos"),
                     lat=_coord(pos[1], source, f"node {nid}", "pos"))
    merger = _LinkMerger(sub, source)
    for edge in data["edges"]:
        merger.add(str(edge["source"]), str(edge["target"]),
                   f"edge {edge['source']}-{edge['target']}", None, 1.0)
    return merger.finish()


def load_topology(spec: str) -> Substrate:
    """Resolve ``zoo:NAME`` / ``sndlib:NAME`` (built into topohub) or a file path."""
    if spec.startswith("zoo:"):
        return load_topohub(f"topozoo/{spec[4:]}")
    if spec.startswith("sndlib:"):
        return load_topohub(f"sndlib/{spec[7:]}")
    path = Path(spec)
    suffix = "".join(path.suffixes).lower()
    if suffix.endswith(".graphml"):
        return load_graphml(path)
    if suffix.endswith(".xml"):
        return load_sndlib(path)
    if not path.exists():
        raise ModelError(
            f"topology {spec!r}: not a file, and not zoo:NAME or sndlib:NAME (built-in)"
        )
    raise ModelError(f"topology {spec!r}: unknown format (expected .graphml or SNDlib .xml)")
