"""The ``erpsync`` command line as a real process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> tuple[int, str, str]:
    """Run ``python -m engine ARGS`` as a real process (in ``cwd``, else here): (exit code,
    stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        *args,
        cwd=cwd,
        env=dict(os.environ) if env is None else env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def operator_env(url: str) -> dict[str, str]:
    """The environment of an operator's ``erpsync`` against the service at ``url`` (wide
    terminal, so tables and long responses are not wrapped)."""
    return {
        **os.environ,
        "ERPSYNC_URL": url,
        "ERPSYNC_USER": "tje0",
        "ERPSYNC_PASSWORD": "Tje0",
        "COLUMNS": "200",
    }
