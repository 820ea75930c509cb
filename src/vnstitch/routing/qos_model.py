"""The QoS policy's schema: pydantic models, the one home of its validation.

Theory of operation: :class:`QosPolicySection` describes the policy format of
:mod:`vnstitch.routing.qos` (``link_mbps``, ``classes``, ``applications``);
:class:`QosBorrowSection` adds ``borrow``, as a scenario's ``qos:`` section and the
daemon config's ``qos:`` section write it. Each entry checks itself (a class's guarantee
within its maximum, an application matching on something). :func:`policy_relations`
checks what relates entries to each other (class names unique, maxima within the link,
guarantees summed within the link, applications naming a class) over the raw data,
entry by entry, so that its problems come together with the schema's
(:func:`vnstitch.yamlfile.validate` takes it as ``checks``). :func:`to_policy` turns a
valid section into the runtime :class:`~vnstitch.routing.qos.QosPolicy`.

Imported lazily (pydantic is heavy): :func:`vnstitch.routing.qos.parse_policy` and the
scenario and config readers load it when they validate.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from vnstitch.routing.qos import Application, QosClass, QosPolicy
from vnstitch.yamlfile import FileModel, Loc, Problem, field_problem

Text = Annotated[str, Field(min_length=1)]
Mbps = Annotated[float, Field(ge=0, le=1e9)]
PositiveMbps = Annotated[float, Field(gt=0, le=1e9)]


class QosClassEntry(FileModel):
    """One QoS class: an HTB class with a guaranteed rate and a maximum."""

    name: Text
    priority: Annotated[int, Field(ge=0, le=1000, description="0 is served first")]
    guaranteed_mbps: Mbps
    max_mbps: PositiveMbps | None = Field(default=None, description="default: link_mbps")

    @model_validator(mode="after")
    def _within_max(self) -> QosClassEntry:
        if self.max_mbps is not None and self.guaranteed_mbps > self.max_mbps:
            raise field_problem("guaranteed_mbps", f"{self.guaranteed_mbps:g} exceeds "
                                f"max_mbps {self.max_mbps:g}")
        return self


class ApplicationEntry(FileModel):
    """Packets that belong to a class: by port, DSCP, VNID (VXLAN) and protocol."""

    name: Text
    qos_class: Text = Field(alias="class")
    ports: list[Annotated[int, Field(ge=0, le=65535)]] = Field(default_factory=list)
    dscp: list[Annotated[int, Field(ge=0, le=63)]] = Field(default_factory=list)
    vnid: Annotated[int, Field(ge=0, le=2 ** 24 - 1)] | None = None
    protocol: Literal["tcp", "udp"] | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> ApplicationEntry:
        if not self.ports and not self.dscp and self.vnid is None:
            raise ValueError("needs at least one of ports, dscp, vnid")
        return self


class QosPolicySection(FileModel):
    """A QoS policy: classes for a link of ``link_mbps``, scaled to each real link."""

    link_mbps: PositiveMbps
    classes: Annotated[list[QosClassEntry], Field(min_length=1)]
    applications: list[ApplicationEntry] = Field(default_factory=list)


class QosBorrowSection(QosPolicySection):
    """A policy plus how HTB lends spare capacity (:mod:`vnstitch.routing.htb`)."""

    borrow: Literal["priority", "quantum"] = "priority"


def valid_entries(model: type[BaseModel], raw: object) -> list[tuple[int, Any]]:
    """The entries of list ``raw`` valid as ``model`` on their own, with their index."""
    out = []
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        try:
            out.append((i, model.model_validate(item)))
        except ValidationError:
            continue
    return out


def policy_relations(data: object, at: Loc = ()) -> list[Problem]:
    """Problems between the entries of a policy found at ``at`` (every valid entry)."""
    if not isinstance(data, dict):
        return []
    link = data.get("link_mbps")
    link = float(link) if isinstance(link, int | float) and not isinstance(link, bool) \
        and link > 0 else None
    out: list[Problem] = []
    names: dict[str, int] = {}
    total = 0.0
    raw_classes = data.get("classes")
    entries = valid_entries(QosClassEntry, raw_classes)
    for i, c in entries:
        if c.name in names:
            out.append(Problem((*at, "classes", i, "name"), f"duplicate class {c.name!r} "
                               f"(also classes[{names[c.name]}])"))
        names.setdefault(c.name, i)
        total += c.guaranteed_mbps
        if link is None:
            continue
        if c.max_mbps is not None and c.max_mbps > link:
            out.append(Problem((*at, "classes", i, "max_mbps"),
                               f"{c.max_mbps:g} exceeds link_mbps {link:g}"))
        elif c.max_mbps is None and c.guaranteed_mbps > link:
            out.append(Problem((*at, "classes", i, "guaranteed_mbps"),
                               f"{c.guaranteed_mbps:g} exceeds max_mbps (link_mbps) "
                               f"{link:g}"))
    all_valid = isinstance(raw_classes, list) and len(entries) == len(raw_classes)
    if link is not None and all_valid and total > link:
        out.append(Problem((*at, "classes"), f"guaranteed rates sum to {total:g} Mbit/s, "
                           f"more than link_mbps {link:g}"))
    if all_valid:  # an unknown class is only certain when every class was read
        for i, a in valid_entries(ApplicationEntry, data.get("applications")):
            if a.qos_class not in names:
                out.append(Problem((*at, "applications", i, "class"),
                                   f"unknown class {a.qos_class!r} (have "
                                   f"{', '.join(sorted(names))})"))
    return out


def class_names(data: object) -> set[str] | None:
    """The class names of a policy whose classes are all valid, else ``None`` (so that
    references to classes are checked only against a complete list)."""
    raw = data.get("classes") if isinstance(data, dict) else None
    entries = valid_entries(QosClassEntry, raw)
    if not isinstance(raw, list) or not raw or len(entries) != len(raw):
        return None
    return {c.name for _, c in entries}


def to_policy(m: QosPolicySection) -> QosPolicy:
    """The runtime policy of a valid section (classes in priority order)."""
    classes = [QosClass(c.name, c.priority, c.guaranteed_mbps,
                        m.link_mbps if c.max_mbps is None else c.max_mbps)
               for c in m.classes]
    apps = [Application(a.name, a.qos_class, tuple(a.ports), tuple(a.dscp), a.vnid,
                        a.protocol) for a in m.applications]
    return QosPolicy(m.link_mbps, tuple(sorted(classes, key=lambda c: (c.priority, c.name))),
                     tuple(apps))
