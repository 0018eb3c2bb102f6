"""The served ``/openapi.json`` against the running front door, checked by a fuzzer nobody here
wrote: schemathesis (every check, Basic auth, positive and negative data).

It must report no server error, no schema-valid request rejected, no undocumented status code,
content type or header: the document states every constraint the server enforces.
Bounded: ``SCHEMATHESIS_EXAMPLES`` cases per operation (default 25, well under 90 s here).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.support.service import Service

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
TIME_LIMIT = 240.0


async def test_schemathesis_finds_nothing_in_the_served_document(
    front_door: Service, tmp_path: Path
) -> None:
    url = str(front_door.server.make_url("/openapi.json"))
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")),
        "run",
        url,
        "--checks=all",
        "--auth=tje0:Tje0",
        "--mode=all",
        f"--max-examples={EXAMPLES}",
        "--workers=2",
        "--generation-database=none",
        "--request-timeout=10",
        "--no-color",
        "--output-truncate=false",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIME_LIMIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "No issues found" in report, report
