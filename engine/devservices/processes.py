"""erpsync child processes for tests and benchmarks: start one, wait until it is ready, signal or
stop it, read its log.

A child is ``python -m MODULE ARGS`` (``engine serve --config …``, ``benchmarks.service …``) in a
session of its own, so that stopping it also stops the servers it forked. Its stdout and stderr
go to one log file; a child that dies or will not get ready fails with the end of that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGTERM, Signals
from typing import Any

import aiohttp

from engine.devservices.ports import free_port

REPO = Path(__file__).resolve().parents[2]
READY_PATH = "/health/ready"


class ChildError(RuntimeError):
    """A child exited early, did not get ready, or did not exit in time (message: its log)."""


@dataclass
class Child:
    """One started child process, listening on ``port``."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self.process.poll()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines the child wrote (other lines are skipped)."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    async def ready(self) -> bool:
        """Whether its readiness endpoint answers 200; :class:`ChildError` once it exited."""
        if self.returncode is not None:
            raise ChildError(f"{self.name} exited with {self.returncode}:\n{self.tail()}")
        url = f"http://127.0.0.1:{self.port}{READY_PATH}"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() > deadline:
                raise ChildError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def signal(self, sig: Signals) -> float:
        """Send ``sig`` to the child alone; return when it was sent (``time.monotonic()``)."""
        self.process.send_signal(sig)
        return time.monotonic()

    async def wait(self, timeout: float) -> int:
        """Wait for the exit and return its code; :class:`ChildError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise ChildError(f"{self.name} still running after {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.05)
        return code

    def kill(self) -> None:
        """SIGKILL the child's session (a crash) and reap it."""
        self._signal_group(SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the child's session, wait up to ``timeout``, then SIGKILL it."""
        if self.returncode is not None:
            return
        self._signal_group(SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal_group(self, sig: Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    # -- resources (Linux /proc), for the benchmarks' figures -----------------------------------

    def _status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def peak_rss_mb(self) -> float:
        """Peak resident set size so far (VmHWM), in MiB."""
        return self._status("VmHWM")

    def rss_mb(self) -> float:
        return self._status("VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far.

        CPU time per unit of work is far less sensitive to other load on the machine than a
        rate over wall time, so it is the figure to compare before/after a code change.
        """
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Children:
    """Starts children into ``directory`` (logs) and makes sure none outlives the group."""

    def __init__(self, directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.env = dict(os.environ if env is None else env)
        self.started: list[Child] = []

    async def start(
        self,
        name: str,
        module: str,
        args: Sequence[str],
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
    ) -> Child:
        """Run ``python -m MODULE ARGS`` and wait until it is ready on ``port``.

        ``args`` may contain ``{port}``, replaced by ``port`` (a free one when not given).
        """
        port = free_port() if port is None else port
        argv = [sys.executable, "-m", module, *(a.replace("{port}", str(port)) for a in args)]
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                argv,
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, port, log_path)
        self.started.append(child)
        await child.wait_ready(ready_timeout)
        return child

    def forget(self, child: Child) -> None:
        self.started.remove(child)

    def stop_all(self) -> None:
        """SIGTERM every child still running (latest first), SIGKILL those that linger."""
        for child in reversed(self.started):
            child.stop()

    def kill_all(self) -> None:
        for child in self.started:
            if child.returncode is None:
                child.kill()
