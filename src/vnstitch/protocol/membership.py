"""Membership at run time: admit or refuse stitches into hosted VNs, keep revocations.

Theory of operation. The target of a stitch (the RM hosting the VN) decides, alone, on
every QUERY, HOLD and RESIZE for one of its VNs with :func:`~vnstitch.protocol.grants.
check_access` over the VN's policy (``CoreConfig.access``), the grant the origin presented
and the revocation lists it knows. A refusal answers ``not_authorised`` (QUERY_REFUSED for
a query, HOLD_REFUSED / RESIZE_REFUSED otherwise), reserves nothing, is counted per
(origin, VNID) in ``access_refusals`` and reported as an :class:`~vnstitch.protocol.api.
AccessRefused` event (the daemon logs it). An admitted HOLD records which grant admitted
it (``admitted``, persisted), so a later revocation or expiry finds the stitch:
:meth:`enforce_membership` runs at every announce interval and on every new revocation
list and tears such stitches down (PATH_DOWN toward the origin, which then re-queries and
is refused).

Revocation lists are announcements: an RM floods a list it has not seen (or a higher
version of one) to its other neighbours at once, and re-sends the lists that changed
within the last hold time at each announce interval, so a lost datagram delays a
revocation by at most one interval. Lists are kept per (VNID, owner key) and only a list
that verifies under the key it names is kept or relayed: an RM that does not host the VN
cannot tell the owner, but a forged list under another key never displaces the owner's
(no host trusts that key). At the origin, QUERY_REFUSED is relayed back along the path;
once every route discovery knows for the VNID leads to or through an RM that refused
(a host answers a query and does not forward it), the request fails at once
with ``not_authorised`` instead of waiting for the query timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import AccessRefused, Output
from vnstitch.protocol.grants import (
    NOT_AUTHORISED,
    OPEN,
    AccessDecision,
    AccessPolicy,
    Grant,
    QueryRefused,
    RevocationList,
    Revocations,
    check_access,
)
from vnstitch.protocol.messages import Offer
from vnstitch.protocol.negotiation import StitchState
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.stitchbase import StitchingBase

if TYPE_CHECKING:
    from vnstitch.protocol.negotiation import StitchRequest

#: Most revocation lists one RM keeps (per VNID and owner key).
MAX_REVOCATION_LISTS = 1024


class MembershipMixin(StitchingBase):
    access_refusals: dict[tuple[RouteManagerId, VNID], int]
    held_grants: dict[VNID, Grant]
    revocation_lists: dict[tuple[VNID, bytes], RevocationList]
    revocations_changed_at: dict[tuple[VNID, bytes], float]
    #: token -> (VNID, origin, grant serial or None, grant expiry) of stitches we admitted.
    admitted: dict[str, tuple[VNID, RouteManagerId, int | None, float]]
    #: Per hosted VN: neighbours that showed a valid grant -> (serial, expiry). They get
    #: the VN's components in our announcements until it expires or is revoked.
    grant_members: dict[VNID, dict[RouteManagerId, tuple[int, float]]]

    if TYPE_CHECKING:
        def _decide(self, req: StitchRequest, now: float, out: list[Output]) -> None: ...
        def routes_changed(self, keys: list[tuple[VNID, RouteManagerId]], now: float,
                           out: list[Output]) -> None: ...

    def init_membership(self) -> None:
        self.access_refusals = {}
        self.held_grants = {g.vnid: g for g in self.config.grants}
        self.revocation_lists = {}
        self.revocations_changed_at = {}
        self.admitted = {}
        self.grant_members = {}
        self.discovery.policy = self.access_policy
        self.discovery.member = self.is_member
        # local routes made before the policy was known say whether they are public
        self.discovery.recompute([(v, self.me) for v in self.discovery.local])

    # -- policy ---------------------------------------------------------------------------
    def access_policy(self, vnid: VNID) -> AccessPolicy:
        return self.config.access.get(vnid, OPEN)

    def is_member(self, peer: RouteManagerId, vnid: VNID) -> bool:
        """Whether neighbour ``peer`` may learn ``vnid``'s components from us."""
        return self.access_policy(vnid).allows_without_grant(peer) or \
            peer in self.grant_members.get(vnid, {})

    def _reannounce(self, peer: RouteManagerId, vnid: VNID, now: float,
                    out: list[Output]) -> None:
        """``peer``'s membership of ``vnid`` changed: announce our route to it again."""
        key = (vnid, self.me)
        if key in self.discovery.best:
            self.discovery.pending[peer].add(key)
            self.routes_changed([key], now, out)

    def revoked_serials(self, vnid: VNID) -> frozenset[int]:
        owner = self.access_policy(vnid).owner
        rl = self.revocation_lists.get((vnid, owner)) if owner is not None else None
        return rl.serials if rl is not None else frozenset()

    def authorise(self, origin: RouteManagerId, vnid: VNID, grant: Grant | None, *,
                  kind: str, now: float, out: list[Output]) -> AccessDecision:
        """Check ``origin``'s ``kind`` (query, hold, resize) for ``vnid``; count a refusal."""
        d = check_access(self.access_policy(vnid), vnid, origin, grant,
                         revoked=self.revoked_serials(vnid), now=now)
        if not d.ok:
            key = (origin, vnid)
            self.access_refusals[key] = self.access_refusals.get(key, 0) + 1
            self.stat(NOT_AUTHORISED)
            out.append(AccessRefused(origin, vnid, kind, d.cause, now))
        elif d.serial is not None and origin in self.peers:
            known = self.grant_members.setdefault(vnid, {})
            if origin not in known:
                known[origin] = (d.serial, d.expires)
                self._reannounce(origin, vnid, now, out)
        return d

    def offer_admitted(self, offer: Offer, now: float, out: list[Output]) -> bool:
        """At the origin: is the target of ``offer`` a member of the VN (by our policy for
        our own part of it)? A stitch joins two parts of a VN, so membership is checked
        both ways: otherwise a non-member could host the VN and learn members' components
        from their HOLDs."""
        sid = self.query_owner.get(offer.query_id)
        req = self.requests.get(sid) if sid else None
        if req is None:
            return True  # a late offer: the origin logic counts it
        target = offer.path[-1]
        if self.authorise(target, req.vnid, offer.grant, kind="offer", now=now, out=out).ok:
            return True
        self._deny(req, target, f"{target[:8]} is not a member of VNID {req.vnid} "
                   f"(its offer was refused: not_authorised)", now, out)
        return False

    def grant_for(self, vnid: VNID) -> Grant | None:
        """The grant this RM presents when it asks for a stitch into ``vnid``."""
        return self.held_grants.get(vnid)

    def set_grant(self, grant: Grant | None, vnid: VNID) -> None:
        """Present ``grant`` for ``vnid`` from now on (None: present none)."""
        if grant is None:
            self.held_grants.pop(vnid, None)
        else:
            self.held_grants[vnid] = grant

    def authorise_resize(self, token: str, origin: RouteManagerId, now: float,
                         out: list[Output]) -> bool:
        """May ``origin`` resize the stitch ``token`` we admitted (policy and grant now)?"""
        rec = self.admitted.get(token)
        tun = self.tunnels.get(token)
        vnid = rec[0] if rec is not None else tun.vnid if tun is not None else None
        if vnid is None or self.access_policy(vnid).allows_without_grant(origin):
            return True
        if rec is None or rec[2] is None:
            cause = "no_grant"
        elif rec[2] in self.revoked_serials(vnid):
            cause = "revoked"
        elif rec[3] <= now:
            cause = "expired"
        else:
            return True
        key = (origin, vnid)
        self.access_refusals[key] = self.access_refusals.get(key, 0) + 1
        self.stat(NOT_AUTHORISED)
        out.append(AccessRefused(origin, vnid, "resize", cause, now))
        return False

    def admit(self, token: str, vnid: VNID, origin: RouteManagerId, d: AccessDecision) -> None:
        self.admitted[token] = (vnid, origin, d.serial, d.expires)

    # -- revocations ----------------------------------------------------------------------
    def apply_revocations(self, rl: RevocationList, now: float) -> list[Output]:
        """A revocation list from the owner (the daemon reads it from a file)."""
        out: list[Output] = []
        self._take_revocations(None, rl, now, out)
        return out

    def _on_revocations(self, sender: RouteManagerId, m: Revocations, now: float,
                        out: list[Output]) -> None:
        self._take_revocations(sender, m.revocations, now, out)

    def _take_revocations(self, sender: RouteManagerId | None, rl: RevocationList, now: float,
                          out: list[Output]) -> None:
        key = (rl.vnid, rl.owner)
        old = self.revocation_lists.get(key)
        if old is not None and old.version >= rl.version:
            return  # known (the flood comes back along other paths): stop here
        if not rl.valid():
            self.stat("revocations_bad_signature")
            return
        if old is None and len(self.revocation_lists) >= MAX_REVOCATION_LISTS:
            self.stat("revocations_table_full")
            return
        self.revocation_lists[key] = rl
        self.revocations_changed_at[key] = now
        self.stat("revocations_learnt")
        for peer in self.peers:
            if peer != sender:
                self.send(peer, Revocations(rl), now, out)
        self.enforce_membership(now, out)

    def membership_tick(self, now: float, out: list[Output]) -> None:
        """Every announce interval: re-send recently changed lists, enforce expiries."""
        recent = now - self.timers_cfg.hold_time_s
        for key, when in list(self.revocations_changed_at.items()):
            if when < recent:
                del self.revocations_changed_at[key]
                continue
            for peer in self.peers:
                self.send(peer, Revocations(self.revocation_lists[key]), now, out)
        self.enforce_membership(now, out)

    def enforce_membership(self, now: float, out: list[Output]) -> None:
        """Tear down every stitch we admitted whose admission no longer holds, and stop
        announcing components to members whose grant did the same."""
        for vnid, known in self.grant_members.items():
            revoked = self.revoked_serials(vnid)
            for peer, (member_serial, until) in list(known.items()):
                if member_serial in revoked or until <= now:
                    del known[peer]
                    self._reannounce(peer, vnid, now, out)
        for token, (vnid, origin, serial, expires) in list(self.admitted.items()):
            res = self.reservations.get(token)
            if res is None or res.state not in (ReservationState.HELD,
                                                ReservationState.COMMITTED):
                del self.admitted[token]
                continue
            policy = self.access_policy(vnid)
            if policy.allows_without_grant(origin):
                continue
            if serial is None:
                cause = "no_longer_allowed"
            elif serial in self.revoked_serials(vnid):
                cause = "revoked"
            elif expires <= now:
                cause = "expired"
            else:
                continue
            del self.admitted[token]
            self.stat("membership_teardowns")
            out.append(AccessRefused(origin, vnid, "established", cause, now))
            self._tear_down_path(res, now, out)

    # -- query refusals ---------------------------------------------------------------------
    def _on_query_refused(self, sender: RouteManagerId, m: QueryRefused, now: float,
                          out: list[Output]) -> None:
        i = self._pos(m.path, sender, forward=False)
        if i > 0:
            self.send(m.path[i - 1], m, now, out)
            return
        sid = self.query_owner.get(m.query_id)
        req = self.requests.get(sid) if sid else None
        if req is None or req.state is not StitchState.QUERYING or \
                m.query_id not in req.query_ids:
            self.stat("late_query_refused")
            return
        self._deny(req, m.at, f"{m.at[:8]} refused: {m.reason} (VNID {req.vnid})", now, out)

    def _deny(self, req: StitchRequest, at: RouteManagerId, text: str, now: float,
              out: list[Output]) -> None:
        if req.state is not StitchState.QUERYING:
            return
        req.denials.append(text)
        req.denied.add(at)
        # A host answers a query and never forwards it: a route through an RM that
        # refused cannot bring an offer either.
        open_routes = [r for r in self.discovery.routes_to(req.vnid) if r.via is not None
                       and req.denied.isdisjoint(r.entry.path)]
        if not req.feasible() and not open_routes:
            self._decide(req, now, out)  # nobody else could offer: fail now


def export_admitted(m: MembershipMixin) -> list[list[Any]]:
    """Plain JSON (no infinity: an admission without a grant has no expiry, ``None``)."""
    return [[t, int(v), o, s, None if e == float("inf") else e]
            for t, (v, o, s, e) in m.admitted.items()]


def restore_admitted(m: MembershipMixin, rows: list[list[Any]]) -> None:
    for t, v, o, s, e in rows:
        m.admitted[str(t)] = (VNID(int(v)), RouteManagerId(str(o)),
                              None if s is None else int(s),
                              float("inf") if e is None else float(e))
