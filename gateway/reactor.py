"""Twisted on the daemon's asyncio loop, so Twisted and asyncio code share one loop."""

from __future__ import annotations

import asyncio
from typing import Any


def install_reactor(loop: asyncio.AbstractEventLoop) -> Any:
    """Install Twisted's asyncio reactor on `loop` and mark it running.

    The loop is driven by asyncio (`run_until_complete`), never by
    `reactor.run()`; `startRunning` fires Twisted's startup triggers so that
    code checking `reactor.running` behaves as under `reactor.run()`.
    """
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)  # type: ignore[no-untyped-call]
    from twisted.internet import reactor

    reactor.startRunning(installSignalHandlers=False)  # signals belong to asyncio here
    return reactor


def stop_reactor_threads(reactor: Any) -> None:
    """Stop the reactor's thread pool, where Twisted resolves host names (treq's HTTP
    calls). Its threads are not daemonic and the reactor, driven by asyncio, never runs
    the shutdown that would stop them: without this the process would not exit."""
    if reactor.threadpool is not None:
        # The reactor's own shutdown trigger for the pool; a later use makes a new pool.
        reactor._stopThreadPool()
