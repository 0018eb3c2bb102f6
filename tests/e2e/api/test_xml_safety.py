"""Hostile XML: entity expansion and external entities are refused quickly, with bounded memory."""

from __future__ import annotations

import resource
import time

import asyncpg

from tests.support.api import basic
from tests.support.service import RESYNC, Service

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ForceResyncBatchTask><ErpConnectionId>&lol9;</ErpConnectionId></ForceResyncBatchTask>"""

QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><r><ErpConnectionId>'
    + b"&a;" * 20_000
    + b"</ErpConnectionId></r>"
)

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<r><ErpConnectionId>&xxe;</ErpConnectionId></r>"""

XXE_NETWORK = b"""<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">
<r><ErpConnectionId>1</ErpConnectionId></r>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>
<r/>"""

UNDECLARED_ENTITY = b"<r><ErpConnectionId>&nope;</ErpConnectionId></r>"

PAYLOADS = {
    "billion laughs": BILLION_LAUGHS,
    "quadratic blowup": QUADRATIC,
    "XXE local file": XXE_FILE,
    "XXE external DTD": XXE_NETWORK,
    "parameter entity": PARAMETER_ENTITY,
    "undeclared entity": UNDECLARED_ENTITY,
}


async def test_hostile_xml_is_refused_fast_with_bounded_memory(
    front_door: Service, db: asyncpg.Connection
) -> None:
    """Bounds: 2 s per answer (the target is < 100 ms; this 2-core machine runs other suites
    concurrently, so we leave headroom) and < 50 MB extra peak memory for all payloads (a
    billion-laughs expansion alone would need ~3 GB)."""
    # Warm up: the first Basic check runs PBKDF2 (then cached), which is not what we time.
    warm = await front_door.client.post(
        "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState", headers=basic("tje0", "Tje0")
    )
    assert warm.status == 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    for name, payload in PAYLOADS.items():
        for content_type in ("application/xml", "text/xml; charset=utf-8"):
            started = time.monotonic()
            response = await front_door.client.post(
                RESYNC,
                data=payload,
                headers={**basic("tje0", "Tje0"), "Content-Type": content_type},
            )
            elapsed = time.monotonic() - started
            body = await response.json()
            results[(name, content_type)] = (response.status, elapsed, body["ErrorMessage"])
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    slowest = max(elapsed for _, elapsed, _ in results.values())
    growth = peak_after - peak_before
    print(f"hostile XML: slowest answer {slowest * 1000:.1f} ms, peak RSS +{growth} KiB")
    for (name, _), (status, elapsed, message) in results.items():
        assert status == 400, (name, message)
        assert elapsed < 2.0, (name, elapsed)
        assert "root:" not in message  # nothing from /etc/passwd
    assert "not allowed" in results[("billion laughs", "application/xml")][2]
    assert growth < 50 * 1024
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0
