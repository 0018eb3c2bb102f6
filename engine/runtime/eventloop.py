"""The event loop the service runs on: uvloop when enabled and installed, else asyncio's."""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A new event loop for ``web.run_app(loop=...)`` (``server.uvloop`` chooses which)."""
    if use_uvloop:
        try:
            import uvloop  # optional at run time (not built on Windows)
        except ImportError:
            log.warning("uvloop is not installed; running on the standard asyncio loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
