"""Which running daemon a command talks to, and through which door.

Theory of operation: commands that drive a running Route Manager take one of
``--socket PATH`` (its Unix control socket), ``--config FILE`` (its config, to find that
socket) or ``--url URL`` with ``--token-file FILE`` (its HTTP API). :func:`send` carries
one control request dict through the chosen door and returns its result; both doors run
the same implementation in the daemon (:func:`vnstitch.daemon.control.dispatch`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--socket", type=Path, help="the daemon's control socket")
    g.add_argument("--config", type=Path, help="the daemon's config (to find its socket)")
    g.add_argument("--url", help="the daemon's HTTP API instead, e.g. http://127.0.0.1:9464")
    p.add_argument("--token-file", type=Path, help="bearer token for --url (mode 0600)")


def send(args: argparse.Namespace, req: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """Send ``req`` through the control socket, or the HTTP API with ``--url``."""
    if args.url is None:
        from vnstitch.daemon.control import request  # noqa: PLC0415

        return request(socket_path(args), req, timeout_s)
    from vnstitch.daemon.errors import ControlError  # noqa: PLC0415
    from vnstitch.daemon.http import http_request, read_token  # noqa: PLC0415

    if args.token_file is None:
        raise ControlError("--url needs --token-file")
    return http_request(args.url, read_token(args.token_file), req, timeout_s)


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    from vnstitch.daemon.config import load_config  # noqa: PLC0415

    return load_config(args.config).control_socket
