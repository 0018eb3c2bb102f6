"""Several server processes on one port (``SO_REUSEPORT``): ``erpsync api --processes N``.

One front door process is CPU-bound (Python); the kernel spreads new connections over N
processes that each listen on the same port with ``reuse_port``. Each process is a complete
front door (own pool, own broker connection); there is no shared state between requests, so
nothing else changes.

The parent only supervises. The children run in their own process group, so a terminal's
Ctrl-C reaches the parent alone, which forwards SIGINT/SIGTERM to each child exactly once (a
second signal would cut an aiohttp shutdown short). It waits for all of them and exits with the
first non-zero status (a child that fails to start stops the others). A child whose parent dies
(SIGKILL) stops itself within a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType


def _stop_when_orphaned(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="erpsync-parent-watch", daemon=True).start()


def run_forked(processes: int, serve: Callable[[], None]) -> int:
    """Run ``serve()`` in ``processes`` forked children; return the exit status for the parent.

    Fork before any event loop or connection exists (each child opens its own).
    """
    parent = os.getpid()
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                os.setpgid(0, 0)
                _stop_when_orphaned(parent)
                serve()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    running = set(children)
    while running:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        if pid not in running:
            continue
        running.discard(pid)
        code = os.waitstatus_to_exitcode(raw)
        if code != 0 and status == 0:
            status = code if code > 0 else 1
            forward(signal.SIGTERM, None)  # one failed: stop the rest
    return status
