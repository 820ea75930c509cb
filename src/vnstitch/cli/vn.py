"""``vnstitch vn init|grant|revoke|show``: a VN owner's membership grants, as files.

Theory of operation: a thin layer over :class:`~vnstitch.daemon.vnowner.OwnerDirectory`.
``init`` makes the owner key of a VN (its public half goes in every hosting daemon's
``local_vns[].owner``); ``grant`` signs a membership grant for one Route Manager (its
daemon names the file in ``local_vns[].grant``); ``revoke`` re-signs the revocation list
that hosting daemons read (``local_vns[].revocations``) and announce: a revoked member's
stitches are torn down within an announce interval or two. ``show`` lists what was issued
and its state, or checks one grant file. Times are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json, table


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "vn", help="VN membership: issue, revoke and show owner-signed grants",
        description="Manage who may stitch into a VN: the VN owner signs membership "
        "grants for Route Managers and revokes them. Everything lives in one owner "
        "directory per VN (--dir).")
    vsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_line: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = vsub.add_parser(name, help=help_line,
                                                     description=help_line)
        a.add_argument("--dir", type=Path, required=True, metavar="DIR",
                       help="the VN's owner directory")
        add_json_flag(a)
        return a

    init = action("init", "create a VN's owner directory and owner key")
    init.add_argument("--vnid", type=int, required=True, help="the VN's id (1..2^24-1)")
    init.set_defaults(handler=_init)

    grant = action("grant", "sign a membership grant for one Route Manager")
    grant.add_argument("--member", required=True, metavar="RM_ID",
                       help="the member Route Manager's id (32 hex digits)")
    grant.add_argument("--days", type=float, default=30.0,
                       help="validity from now, in days (default 30)")
    grant.add_argument("--out", type=Path, default=None, metavar="FILE",
                       help="write the grant here (default DIR/grants/RMID-SERIAL.grant)")
    grant.set_defaults(handler=_grant)

    revoke = action("revoke", "revoke a member's grants (or one serial) and re-sign "
                    "the revocation list")
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--member", metavar="RM_ID", help="revoke every grant of this RM")
    who.add_argument("--serial", type=int, help="revoke the grant with this serial")
    revoke.set_defaults(handler=_revoke)

    show = action("show", "list issued grants and revocations (or check one grant file)")
    show.add_argument("--grant", type=Path, default=None, metavar="FILE",
                      help="check this grant file instead of listing the directory")
    show.set_defaults(handler=_show)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _init(args: argparse.Namespace) -> int:
    from vnstitch.daemon.vnowner import OwnerDirectory  # noqa: PLC0415

    d = OwnerDirectory.create(args.dir, args.vnid)
    result = {"vnid": args.vnid, "directory": str(args.dir), "owner": d.owner_b64,
              "revocations": str(d.revocations_path)}
    if args.json:
        print_json(result)
    else:
        console().print(f"VN {args.vnid}: owner key in {args.dir}/owner.key\n"
                        f"  put in each hosting daemon's local_vns entry: "
                        f"owner: {d.owner_b64}\n"
                        f"  revocations: {d.revocations_path}")
    return 0


def _grant(args: argparse.Namespace) -> int:
    from vnstitch.daemon.vnowner import OwnerDirectory  # noqa: PLC0415

    now = time.time()
    g, path = OwnerDirectory(args.dir).grant(args.member, now + args.days * 86400.0, now,
                                             args.out)
    result = {"vnid": int(g.vnid), "member": g.member, "serial": g.serial,
              "expires": g.expires, "file": str(path)}
    if args.json:
        print_json(result)
    else:
        console().print(f"VN {g.vnid}: grant {g.serial} for {g.member} until "
                        f"{_when(g.expires)} -> {path}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from vnstitch.daemon.vnowner import OwnerDirectory  # noqa: PLC0415

    d = OwnerDirectory(args.dir)
    serials = d.revoke(time.time(), member=args.member, serial=args.serial)
    st = d.state()
    result = {"vnid": st["vnid"], "revoked": serials, "version": st["version"],
              "revocations": str(d.revocations_path)}
    if args.json:
        print_json(result)
    else:
        console().print(f"VN {st['vnid']}: revoked {serials or 'nothing new'}; revocation "
                        f"list version {st['version']} in {d.revocations_path}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from vnstitch.daemon.vnowner import OwnerDirectory, describe_grant_file  # noqa: PLC0415

    now = time.time()
    if args.grant is not None:
        info = describe_grant_file(args.grant, now)
        if args.json:
            print_json(info)
        else:
            ok = {True: "valid", False: "BAD", None: "unknown (no owner key in the file)"}
            console().print(f"{args.grant}: VN {info['vnid']}, member {info['member']}, "
                            f"serial {info['serial']}, until {_when(info['expires'])}"
                            f"{' (expired)' if info['expired'] else ''}, signature "
                            f"{ok[info['signature_ok']]}")
        return 0
    result = OwnerDirectory(args.dir).show(now)
    if args.json:
        print_json(result)
        return 0
    out = console()
    rev = result["revocations"]
    out.print(f"VN {result['vnid']}: owner {result['owner']}\n  revocation list version "
              f"{rev['version']}: {rev['serials'] or 'none'} ({rev['file']})")
    out.print(table("grants", ["serial", "member", "expires", "status"],
                    [(g["serial"], g["member"], _when(g["expires"]), g["status"])
                     for g in result["grants"]]))
    return 0
