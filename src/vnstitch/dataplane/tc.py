"""tc for the Linux driver: multi-class HTB per device and u32 filters.

Theory of operation. Per device the driver builds one HTB tree::

    qdisc 1: (root, htb, default = the RateLimit with the largest class_id)
      class 1:ffff  (driver-made parent: rate = ceil = the largest ceil on the device)
        class 1:<class_id>  one per RateLimit (rate guaranteed, borrows up to ceil by prio)
    filter u32 parent 1: prio P handle 800::<handle> -> classid 1:<class_id>

so a single RateLimit still shapes *all* traffic leaving the device (it is the default
class and the parent caps at its ceil), and with several, u32 filters steer matching
packets into the other classes, which share the parent's rate by HTB borrowing: each
class gets its guaranteed ``rate`` first, then the parent's spare goes to the lowest
``prio`` first. Unclassified traffic falls into the largest class id, which is the least
important class when ids follow importance (as :func:`vnstitch.routing.qos.policy_to_tc`
numbers them), so it can never steal from a stitched class. The default class is fixed
when the qdisc is made (HTB has no ``change``), so adding a larger id or removing the
default while others remain rebuilds the tree, filters included.

:func:`u32_keys` turns the selector clauses a :class:`~vnstitch.dataplane.objects.
U32Filter` carries (tc's spelling: ``ip protocol 6 0xff``, ``ip dport 22 0xffff``,
``ip sport``, ``ip tos 0xb8 0xfc``, ``u32 V M at OFF``, or already ``0xV/0xM+OFF``) into
canonical 32-bit ``value/mask+offset`` keys -- the form the kernel stores and the driver
observes -- so desired and observed filters compare equal. Ports assume a 20-byte IPv4
header (no options), as tc's own ``ip dport`` match does without ``nexthdr``.
"""

from __future__ import annotations

from typing import Any

from vnstitch.dataplane.base import DataplaneError
from vnstitch.dataplane.objects import RateLimit, U32Filter
from vnstitch.dataplane.qos import ClassStats

HTB_MAJOR = 1
PARENT_MINOR = 0xFFFF
_ETH_P_IP = 0x0800


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise DataplaneError(f"u32 match {what!r}: not a number: {text!r}") from None


def _key(value: int, mask: int, byte_off: int) -> str:
    """Align a byte-offset field into its 32-bit word (network order, big endian)."""
    word, shift = byte_off - byte_off % 4, 0
    return f"0x{(value << shift) & 0xFFFFFFFF:08x}/0x{mask & 0xFFFFFFFF:08x}+{word}"


_FIELDS = {  # name: (byte offset of its 32-bit word, bit shift inside it, width mask)
    "protocol": (8, 16, 0xFF),
    "tos": (0, 16, 0xFF),
    "sport": (20, 16, 0xFFFF),
    "dport": (20, 0, 0xFFFF),
}


def u32_keys(matches: tuple[str, ...]) -> tuple[str, ...]:
    """Canonical, sorted ``0xVALUE/0xMASK+OFFSET`` keys for ``matches`` (module doc)."""
    keys: list[str] = []
    for clause in matches:
        parts = clause.split()
        if len(parts) == 1 and "/" in parts[0] and "+" in parts[0]:
            vm, off = parts[0].split("+")
            v, m = vm.split("/")
            keys.append(f"0x{_int(v, clause):08x}/0x{_int(m, clause):08x}+{_int(off, clause)}")
        elif len(parts) == 4 and parts[0] == "ip" and parts[1] in _FIELDS:
            word, shift, width = _FIELDS[parts[1]]
            value, mask = _int(parts[2], clause) & width, _int(parts[3], clause) & width
            keys.append(f"0x{value << shift:08x}/0x{mask << shift:08x}+{word}")
        elif len(parts) == 5 and parts[0] == "u32" and parts[3] == "at":
            at = _int(parts[4], clause)
            if at % 4:
                raise DataplaneError(f"u32 match {clause!r}: offset must be a multiple of 4")
            keys.append(_key(_int(parts[1], clause), _int(parts[2], clause), at))
        else:
            raise DataplaneError(f"u32 match {clause!r}: unsupported (ip protocol|tos|sport|"
                                 "dport VALUE MASK, u32 VALUE MASK at OFF, 0xV/0xM+OFF)")
    return tuple(sorted(keys))


def u32_bytes(matches: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    """``(byte offset, value, mask)`` per matched byte: the same however the keys were
    cut into 32-bit words (pyroute2 re-aligns them), so desired and observed compare."""
    out: set[tuple[int, int, int]] = set()
    for key in u32_keys(matches):
        vm, off = key.split("+")
        v, m = (int(x, 16) for x in vm.split("/"))
        for b in range(4):
            mb = (m >> (24 - 8 * b)) & 0xFF
            if mb:
                out.add((int(off) + b, (v >> (24 - 8 * b)) & mb, mb))
    return tuple(sorted(out))


def _bits(mbps: float) -> str:
    return f"{round(mbps * 1_000_000 / 8) * 8}bit"


def _htb_classes(ipr: Any, idx: int) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for c in ipr.get_classes(index=idx):
        handle = int(c["handle"])
        opts = c.get_attr("TCA_OPTIONS")
        if c.get_attr("TCA_KIND") != "htb" or handle >> 16 != HTB_MAJOR or opts is None:
            continue
        parms = opts.get_attr("TCA_HTB_PARMS")
        out[handle & 0xFFFF] = {"rate": int(parms["rate"]), "ceil": int(parms["ceil"]),
                                "prio": int(parms["prio"])}
    return out


def has_root(ipr: Any, idx: int) -> bool:
    return any(q.get_attr("TCA_KIND") == "htb" and int(q["handle"]) >> 16 == HTB_MAJOR
               for q in ipr.get_qdiscs(index=idx))


def observe(ipr: Any, idx: int, device: str) -> tuple[list[RateLimit], list[U32Filter]]:
    """The RateLimits (children of the parent class) and u32 filters on ``idx``."""
    limits = [RateLimit(device, minor, p["rate"] * 8 / 1e6, p["ceil"] * 8 / 1e6, p["prio"])
              for minor, p in sorted(_htb_classes(ipr, idx).items()) if minor != PARENT_MINOR]
    filters: list[U32Filter] = []
    if not limits:
        return limits, filters
    for f in ipr.get_filters(index=idx, parent=HTB_MAJOR << 16):
        if f.get_attr("TCA_KIND") != "u32":
            continue
        opts = f.get_attr("TCA_OPTIONS")
        sel = opts.get_attr("TCA_U32_SEL") if opts is not None else None
        classid = opts.get_attr("TCA_U32_CLASSID") if opts is not None else None
        if sel is None or classid is None:
            continue
        # pyroute2 (0.7/0.9) decodes tc_u32_key one field late: what it calls key_val is
        # the mask, key_off the value (little-endian) and key_offmask the offset.
        keys = tuple(sorted(
            f"0x{int.from_bytes(int(k['key_off']).to_bytes(4, 'little', signed=True)):08x}"
            f"/0x{int(k['key_val']) & 0xFFFFFFFF:08x}+{int(k['key_offmask'])}"
            for k in sel["keys"]))
        filters.append(U32Filter(device, int(f["info"]) >> 16, int(f["handle"]) & 0xFFF,
                                 int(classid) & 0xFFFF, keys))
    return limits, filters


def _check_rate(obj: RateLimit) -> None:
    problem = obj.problem()
    if problem:
        raise DataplaneError(problem)


def add_rate(ipr: Any, idx: int, obj: RateLimit) -> None:
    _check_rate(obj)
    if not has_root(ipr, idx):
        _rebuild(ipr, idx, [obj], [])
        return
    classes = _htb_classes(ipr, idx)
    if obj.class_id in classes:
        raise DataplaneError(f"HTB class 1:{obj.class_id:x} already exists")
    default = _default_class(ipr, idx)
    if default is not None and obj.class_id > default:
        limits, filters = observe(ipr, idx, obj.device)
        _rebuild(ipr, idx, [*limits, obj], filters)
        return
    _resize_parent(ipr, idx, max([obj.ceil_mbps] + [
        p["ceil"] * 8 / 1e6 for m, p in classes.items() if m != PARENT_MINOR]))
    _add_leaf(ipr, idx, obj)


def _add_leaf(ipr: Any, idx: int, obj: RateLimit) -> None:
    ipr.tc("add-class", "htb", index=idx, handle=f"{HTB_MAJOR}:{obj.class_id:x}",
           parent=f"{HTB_MAJOR}:{PARENT_MINOR:x}", rate=_bits(obj.rate_mbps),
           ceil=_bits(obj.ceil_mbps), prio=obj.prio)


def _rebuild(ipr: Any, idx: int, limits: list[RateLimit], filters: list[U32Filter]) -> None:
    """Replace the device's tree by one holding ``limits`` and ``filters``, the largest
    class id as default (the kernel fixes the default when the qdisc is made)."""
    if has_root(ipr, idx):
        ipr.tc("del", index=idx, handle=f"{HTB_MAJOR}:", root=True)
    if not limits:
        return
    top = max(r.ceil_mbps for r in limits)
    ipr.tc("add", "htb", index=idx, handle=f"{HTB_MAJOR}:",
           default=max(r.class_id for r in limits))
    ipr.tc("add-class", "htb", index=idx, handle=f"{HTB_MAJOR}:{PARENT_MINOR:x}",
           parent=f"{HTB_MAJOR}:", rate=_bits(top), ceil=_bits(top))
    for r in sorted(limits, key=lambda r: r.class_id):
        _add_leaf(ipr, idx, r)
    for f in filters:
        add_filter(ipr, idx, f)


def _resize_parent(ipr: Any, idx: int, ceil_mbps: float) -> None:
    ipr.tc("change-class", "htb", index=idx, handle=f"{HTB_MAJOR}:{PARENT_MINOR:x}",
           parent=f"{HTB_MAJOR}:", rate=_bits(ceil_mbps), ceil=_bits(ceil_mbps))


def change_rate(ipr: Any, idx: int, obj: RateLimit) -> None:
    _check_rate(obj)
    classes = _htb_classes(ipr, idx)
    ceils = [p["ceil"] * 8 / 1e6 for m, p in classes.items()
             if m not in (PARENT_MINOR, obj.class_id)]
    _resize_parent(ipr, idx, max([obj.ceil_mbps, *ceils]))
    ipr.tc("change-class", "htb", index=idx, handle=f"{HTB_MAJOR}:{obj.class_id:x}",
           parent=f"{HTB_MAJOR}:{PARENT_MINOR:x}", rate=_bits(obj.rate_mbps),
           ceil=_bits(obj.ceil_mbps), prio=obj.prio)


def remove_rate(ipr: Any, idx: int, obj: RateLimit, device: str) -> None:
    """Remove one class; the last one takes the qdisc with it, and removing the default
    class rebuilds the tree (and its filters) from the rest."""
    limits, filters = observe(ipr, idx, device)
    rest = [r for r in limits if r.class_id != obj.class_id]
    default = _default_class(ipr, idx)
    if not rest or obj.class_id == default:
        _rebuild(ipr, idx, rest, filters)  # no class left: the filters go with the qdisc
        return
    # pyroute2 encodes HTB parameters (rate tables) even for a delete: give it the rates.
    ipr.tc("del-class", "htb", index=idx, handle=f"{HTB_MAJOR}:{obj.class_id:x}",
           parent=f"{HTB_MAJOR}:{PARENT_MINOR:x}", rate=_bits(obj.rate_mbps),
           ceil=_bits(obj.ceil_mbps))
    _resize_parent(ipr, idx, max(r.ceil_mbps for r in rest))


def _default_class(ipr: Any, idx: int) -> int | None:
    for q in ipr.get_qdiscs(index=idx):
        if q.get_attr("TCA_KIND") == "htb" and int(q["handle"]) >> 16 == HTB_MAJOR:
            opts = q.get_attr("TCA_OPTIONS")
            init = opts.get_attr("TCA_HTB_INIT") if opts is not None else None
            if init is not None:
                return int(init["defcls"])
    return None


def add_filter(ipr: Any, idx: int, obj: U32Filter) -> None:
    if not 1 <= obj.handle <= 0xFFF:
        raise DataplaneError(f"u32 handle {obj.handle} outside 1..4095")
    if not has_root(ipr, idx):
        raise DataplaneError(f"{obj.key}: device {obj.device!r} has no RateLimit (HTB)")
    ipr.tc("add-filter", "u32", index=idx, parent=HTB_MAJOR << 16, prio=obj.prio,
           protocol=_ETH_P_IP, handle=obj.handle,
           target=(HTB_MAJOR << 16) | obj.class_id, keys=list(u32_keys(obj.matches)))


def remove_filter(ipr: Any, idx: int, obj: U32Filter) -> None:
    # Each prio is its own u32 instance with its own hash table id (800:, 801:, ...):
    # find the kernel's full handle of our node in that prio.
    for f in ipr.get_filters(index=idx, parent=HTB_MAJOR << 16):
        handle = int(f["handle"])
        if (f.get_attr("TCA_KIND") == "u32" and int(f["info"]) >> 16 == obj.prio
                and handle & 0xFFF == obj.handle and handle & 0xFFFFF000 != handle):
            ipr.tc("del-filter", "u32", index=idx, parent=HTB_MAJOR << 16, prio=obj.prio,
                   protocol=_ETH_P_IP, handle=handle,
                   target=(HTB_MAJOR << 16) | obj.class_id, keys=list(u32_keys(obj.matches)))
            return
    # Not there: it went with its qdisc (the last RateLimit removed): nothing to do.


def class_stats(ipr: Any, idx: int, device: str) -> list[ClassStats]:
    """Cumulative counters of the HTB leaves under ``1:`` on ``idx`` (the kernel's
    ``TCA_STATS2``: bytes and packets sent, packets dropped by the class's queue,
    overlimits), sorted by class id; the driver-made parent is left out."""
    out: list[ClassStats] = []
    for c in ipr.get_classes(index=idx):
        handle = int(c["handle"])
        if c.get_attr("TCA_KIND") != "htb" or handle >> 16 != HTB_MAJOR \
                or handle & 0xFFFF == PARENT_MINOR:
            continue
        stats2 = c.get_attr("TCA_STATS2")
        basic = stats2.get_attr("TCA_STATS_BASIC") if stats2 is not None else None
        queue = stats2.get_attr("TCA_STATS_QUEUE") if stats2 is not None else None
        if basic is None or queue is None:
            raise DataplaneError(f"class 1:{handle & 0xFFFF:x} on {device}: the kernel "
                                 "reported no statistics")
        out.append(ClassStats(device, handle & 0xFFFF, int(basic["bytes"]),
                              int(basic["packets"]), int(queue["drops"]),
                              int(queue["overlimits"])))
    return sorted(out, key=lambda s: s.class_id)
