"""The daemon's optional runners: which are built, and their start and stop.

Theory of operation: besides the core, a Route Manager may run periodic loops beside it,
each its own module and each driven by a :class:`~vnstitch.daemon.periodic.PeriodicTask`:

* allocation (``allocation:``; :mod:`vnstitch.daemon.allocation`) and the PRA
  (``pra:``; :mod:`vnstitch.daemon.pra_daemon`) -- built whenever configured; they load
  numpy (and scipy), so they are imported here only then, which keeps a plain daemon's
  start cheap (``tests/daemon/test_startup_imports.py``);
* congestion reroute (``congestion.enabled``; :mod:`vnstitch.daemon.congestion`) and
  endpoint following (``wireguard.follow_routes``; :mod:`vnstitch.daemon.endpointfollow`)
  -- only with a kernel dataplane, since they read and write the kernel;
* the held-path sampler (:mod:`vnstitch.daemon.heldsampler`), always built, which starts
  only on a kernel dataplane.

A config reload that changes the section of one of :data:`RESTARTABLE` rebuilds that
runner alone (:func:`restart_runner`).

:func:`attach_runners` sets the daemon's ``allocation``, ``pra``, ``congestion`` and
``endpoints`` attributes (None when not wanted); :func:`start_runners` starts them once
the core has started and its state is restored; :func:`stop_runners` stops them, in the
same order, before the control socket, the reconciler and the state database close.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon


#: The runners a config reload may rebuild (:mod:`vnstitch.daemon.reload`).
RESTARTABLE = ("allocation", "pra", "congestion")


def _overrides(daemon: RouteManagerDaemon) -> None:
    """One set of HTB rate overrides, written by the allocation loop and the PRA (each for
    the stitch ends it owns), laid over the desired state once; none without either."""
    config = daemon.config
    if config.allocation is None and config.pra is None:
        daemon.rate_overrides = None
    elif daemon.rate_overrides is None:
        from vnstitch.daemon.allocation import OverrideView  # noqa: PLC0415

        daemon.rate_overrides = OverrideView(daemon.base_desired_state)


def _build(daemon: RouteManagerDaemon, name: str) -> None:
    config = daemon.config
    if name == "allocation" and config.allocation is not None:
        from vnstitch.daemon.allocation import AllocationRunner  # noqa: PLC0415

        daemon.allocation = AllocationRunner(daemon, config.allocation,
                                             daemon.rate_overrides)
    elif name == "pra" and config.pra is not None:
        from vnstitch.daemon.pra_daemon import DaemonPra  # noqa: PLC0415

        daemon.pra = DaemonPra(daemon, config.pra)
    elif name == "congestion" and config.congestion.enabled and daemon.offloads_dataplane:
        from vnstitch.daemon.congestion import CongestionRunner  # noqa: PLC0415

        daemon.congestion = CongestionRunner(daemon, config.congestion)


def attach_runners(daemon: RouteManagerDaemon) -> None:
    """Build the runners ``daemon.config`` asks for (see the module docstring)."""
    config = daemon.config
    _overrides(daemon)
    for name in RESTARTABLE:
        _build(daemon, name)
    if config.dataplane.wireguard.follow_routes and daemon.offloads_dataplane:
        from vnstitch.daemon.endpointfollow import EndpointRunner  # noqa: PLC0415

        daemon.endpoints = EndpointRunner(
            daemon.desired_state, daemon.now, daemon.metrics, config.dataplane.netns,
            config.dataplane.wireguard.follow_check_s)


async def restart_runner(daemon: RouteManagerDaemon, name: str) -> None:
    """Stop runner ``name`` (one of :data:`RESTARTABLE`) and build it again from
    ``daemon.config`` (a reload changed its section): started if still configured, the
    allocation loop restored from the state database first, as at start."""
    if name not in RESTARTABLE:
        raise ValueError(f"not a restartable runner: {name}")
    old = getattr(daemon, name)
    if old is not None:
        await old.stop()
        setattr(daemon, name, None)
    _overrides(daemon)  # kept across the rebuild: the other owner's overrides stay
    _build(daemon, name)
    if daemon.allocation is not None and name == "allocation":
        daemon.allocation.restore()
    new = getattr(daemon, name)
    if new is not None:
        new.start()


def start_runners(daemon: RouteManagerDaemon, loop: asyncio.AbstractEventLoop) -> None:
    daemon.held_sampler.start(loop)
    if daemon.allocation is not None:
        daemon.allocation.start()
    if daemon.pra is not None:
        daemon.pra.start()
    if daemon.congestion is not None:
        daemon.congestion.start()
    if daemon.endpoints is not None:
        daemon.endpoints.start(loop)


async def stop_runners(daemon: RouteManagerDaemon) -> None:
    await daemon.held_sampler.stop()
    if daemon.allocation is not None:
        await daemon.allocation.stop()
    if daemon.pra is not None:
        await daemon.pra.stop()
    if daemon.congestion is not None:
        await daemon.congestion.stop()
    if daemon.endpoints is not None:
        await daemon.endpoints.stop()
