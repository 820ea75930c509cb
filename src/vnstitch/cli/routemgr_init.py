"""``vnstitch routemgr init``: a new site's key, API token, config skeleton and unit file.

Theory of operation: one command writes everything a Route Manager needs to start, into
``--dir``: ``SEGMENT.key`` (Ed25519, mode 0600), ``SEGMENT.token`` (the HTTP API's bearer
token, mode 0600), ``SEGMENT.yaml`` (a config that validates as written: no peers yet,
the HTTP listener on localhost) and, into ``--unit-dir``, the systemd template unit
``vnstitch-routemgr@.service`` shipped in the package with this host's ``vnstitch``
executable and config folder filled in. Nothing existing is overwritten except an
identical unit. The config is checked with the daemon's own parser before the command
reports success, so a site is up in three commands: install, ``init``, ``systemctl
enable --now vnstitch-routemgr@SEGMENT``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json

UNIT_NAME = "vnstitch-routemgr@.service"

CONFIG_TEMPLATE = """\
# vnstitch Route Manager for segment {segment} (written by `vnstitch routemgr init`).
# Check edits with: vnstitch routemgr check --config {config}
segment: {segment}
listen: {{address: {host}, port: {port}}}
key_file: {segment}.key          # this RM's identity; rm_id {rm_id}
# Public keys this RM accepts messages from (each neighbour's `routemgr keygen` output):
#   - {{public_key: "BASE64", name: B}}
trust: []
# Neighbouring Route Managers and the link toward each:
#   - {{id: RM_ID, address: "IP:PORT", capacity_mbps: 1000, latency_ms: 2, cost: 1}}
peers: []
# VNs present on this segment:
#   - {{vnid: 100, components: [10.100.1.0/24], host_ports: [veth-h1]}}
local_vns: []
dataplane: {{driver: {driver}, wireguard: {{endpoint: {endpoint}, port: 51820}}}}
state_db: {segment}.db
control_socket: {segment}.sock
http: {{listen: "{http}", token_file: {segment}.token}}
"""


def register(rsub: Any) -> None:
    p: argparse.ArgumentParser = rsub.add_parser(
        "init", help="write a new site's key, API token, config skeleton and systemd unit",
        description="Write SEGMENT.key, SEGMENT.token and SEGMENT.yaml into --dir and the "
        f"systemd unit {UNIT_NAME} into --unit-dir; refuses to overwrite.")
    p.add_argument("--segment", required=True, help="this site's segment name")
    p.add_argument("--dir", type=Path, default=Path("/etc/vnstitch"),
                   help="folder for key, token, config and state (default /etc/vnstitch)")
    p.add_argument("--listen", default="0.0.0.0:7701", metavar="IP:PORT",
                   help="UDP address for the Stitching Protocol (default 0.0.0.0:7701)")
    p.add_argument("--endpoint", metavar="IP",
                   help="underlay address peers reach this site's tunnels at (default: the "
                        "--listen address; required when that is a wildcard)")
    p.add_argument("--driver", choices=["linux", "memory"], default="linux",
                   help="dataplane driver (default linux)")
    p.add_argument("--http-listen", default="127.0.0.1:9464", metavar="IP:PORT",
                   help="HTTP API, /metrics and dashboard (default 127.0.0.1:9464)")
    p.add_argument("--unit-dir", type=Path,
                   help="where to write the systemd unit (default: --dir)")
    add_json_flag(p)
    p.set_defaults(handler=_init)


def _split(text: str, option: str) -> tuple[str, int]:
    from vnstitch.daemon.errors import ConfigError  # noqa: PLC0415

    host, sep, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 1 <= number <= 65535:
        raise ConfigError(f"{option}: must be IP:PORT, got {text!r}")
    return host, number


def _write_secret(path: Path, text: str) -> None:
    from vnstitch.daemon.errors import ConfigError  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def render_unit(executable: str, config_dir: Path) -> str:
    """The shipped unit with this host's executable and config folder."""
    template = (resources.files("vnstitch.daemon") / "systemd" / UNIT_NAME).read_text()
    return template.replace("@VNSTITCH@", executable).replace("@CONFIG_DIR@",
                                                              str(config_dir))


def _init(args: argparse.Namespace) -> int:
    from vnstitch.daemon.config import load_config  # noqa: PLC0415
    from vnstitch.daemon.errors import ConfigError  # noqa: PLC0415
    from vnstitch.daemon.identity import write_key_file  # noqa: PLC0415
    from vnstitch.model.ids import segment_id  # noqa: PLC0415

    segment = segment_id(args.segment)
    host, port = _split(args.listen, "--listen")
    _split(args.http_listen, "--http-listen")
    endpoint = args.endpoint or host
    if ipaddress.ip_address(endpoint.strip("[]")).is_unspecified:
        raise ConfigError(f"--endpoint: peers cannot dial {endpoint}; give this site's "
                          "underlay address")
    folder: Path = args.dir.resolve()
    unit_dir: Path = (args.unit_dir or args.dir).resolve()
    config = folder / f"{segment}.yaml"
    if config.exists():
        raise ConfigError(f"{config}: already exists; refusing to overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    info = write_key_file(folder / f"{segment}.key")
    _write_secret(folder / f"{segment}.token", secrets.token_urlsafe(32) + "\n")
    config.write_text(CONFIG_TEMPLATE.format(
        segment=segment, host=host, port=port, rm_id=info.rm_id, driver=args.driver,
        endpoint=endpoint, http=args.http_listen, config=config), encoding="utf-8")
    load_config(config)  # what we wrote must be what the daemon accepts
    exe = shutil.which("vnstitch") or f"{sys.executable} -m vnstitch"
    unit = unit_dir / UNIT_NAME
    text = render_unit(exe, folder)
    if unit.exists() and unit.read_text() != text:
        raise ConfigError(f"{unit}: exists with other content; refusing to overwrite")
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit.write_text(text, encoding="utf-8")
    result = {"segment": segment, "rm_id": info.rm_id, "public_key": info.public_key_b64,
              "config": str(config), "key_file": str(folder / f"{segment}.key"),
              "token_file": str(folder / f"{segment}.token"), "unit": str(unit),
              "start": f"systemctl daemon-reload && systemctl enable --now "
                       f"vnstitch-routemgr@{segment}"}
    if args.json:
        print_json(result)
    else:
        console().print(
            f"wrote {config}, {result['key_file']}, {result['token_file']} and {unit}\n"
            f"rm_id:      {info.rm_id}\npublic_key: {info.public_key_b64}\n"
            f"add peers and trust entries to {config}, then: {result['start']}")
    return 0
