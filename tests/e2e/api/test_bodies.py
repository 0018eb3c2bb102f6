"""Every request body format, case variant and malformed input, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from tests.support.api import basic
from tests.support.service import RESYNC, Service

AUTH = basic("tje0", "Tje0")
AUTH_HEADER = "Basic dGplMDpUamUw"  # tje0:Tje0, as a SuperOffice client sends it
SAMPLE = {"ErpConnectionId": 589, "InternalKeyIds": [574, 137]}
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
SERVICES = "http://www.superoffice.net/ws/crm/NetServer/Services88"

SAME_COMMAND: list[tuple[str, str, bytes]] = [
    ("json", "application/json", b'{"ErpConnectionId": 589, "InternalKeyIds": [574, 137]}'),
    ("json+charset", "application/json; charset=utf-8", json.dumps(SAMPLE).encode()),
    ("text/json", "text/json", json.dumps(SAMPLE).encode()),
    ("json-patch", "application/json-patch+json", json.dumps(SAMPLE).encode()),
    ("merge-patch", "application/merge-patch+json", json.dumps(SAMPLE).encode()),
    ("json BOM", "application/json", b"\xef\xbb\xbf" + json.dumps(SAMPLE).encode()),
    ("json utf-16", "application/json; charset=utf-16", json.dumps(SAMPLE).encode("utf-16")),
    (
        "xml",
        "application/xml",
        b"<ForceResyncBatchTask><ErpConnectionId>589</ErpConnectionId>"
        b"<InternalKeyIds><int>574</int><int>137</int></InternalKeyIds></ForceResyncBatchTask>",
    ),
    (
        "xml arrays namespace",
        "text/xml; charset=utf-8",
        f'<?xml version="1.0" encoding="utf-8"?><ForceResyncBatchTask xmlns:a="{ARRAYS}">'
        "<ErpConnectionId>589</ErpConnectionId><InternalKeyIds><a:int>574</a:int>"
        "<a:int>137</a:int></InternalKeyIds></ForceResyncBatchTask>".encode(),
    ),
    (
        "xml SOAP-style prefixes",
        "application/xml",
        f'<ErpSync:ForceResyncBatchTask xmlns:ErpSync="{SERVICES}" xmlns:arrays="{ARRAYS}">'
        "<ErpSync:ErpConnectionId>589</ErpSync:ErpConnectionId><ErpSync:InternalKeyIds>"
        "<arrays:int>574</arrays:int><arrays:int>137</arrays:int></ErpSync:InternalKeyIds>"
        "</ErpSync:ForceResyncBatchTask>".encode(),
    ),
    (
        "xml default namespace",
        "application/xml",
        f'<request xmlns="{SERVICES}"><ErpConnectionId>589</ErpConnectionId>'
        f'<InternalKeyIds xmlns:b="{ARRAYS}"><b:int>574</b:int><b:int>137</b:int>'
        "</InternalKeyIds></request>".encode(),
    ),
    (
        "xml repeated elements (OpenAPI's XML for an array, issue 20)",
        "application/xml",
        b"<ForceResyncRequest><ErpConnectionId>589</ErpConnectionId>"
        b"<InternalKeyIds>574</InternalKeyIds><InternalKeyIds>137</InternalKeyIds>"
        b"<Unknown>1</Unknown><Unknown><x>2</x></Unknown></ForceResyncRequest>",
    ),
    (
        "form repeated",
        "application/x-www-form-urlencoded",
        b"ErpConnectionId=589&InternalKeyIds=574&InternalKeyIds=137",
    ),
    (
        "form indexed",
        "application/x-www-form-urlencoded; charset=utf-8",
        b"ErpConnectionId=589&InternalKeyIds%5B0%5D=574&InternalKeyIds%5B1%5D=137",
    ),
    (
        "form comma",
        "application/x-www-form-urlencoded",
        b"ErpConnectionId=589&InternalKeyIds=574,137",
    ),
    (
        "form brackets",
        "application/x-www-form-urlencoded",
        b"erpconnectionid=589&InternalKeyIds[]=574&InternalKeyIds[]=137",
    ),
]


async def post(
    service: Service, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
) -> Any:
    all_headers = {**AUTH, **(headers or {})}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return await service.client.post(RESYNC, data=body, headers=all_headers)


async def requests(db: asyncpg.Connection) -> list[Any]:
    rows = await db.fetch("SELECT request FROM batch_tasks ORDER BY id")
    return [json.loads(r["request"]) for r in rows]


async def test_the_spec_sample_request_verbatim(
    front_door: Service, db: asyncpg.Connection
) -> None:
    """POST as printed on the spec page (headers included)."""
    response = await front_door.client.post(
        RESYNC,
        data=b'{\n  "ErpConnectionId": 589,\n  "InternalKeyIds": [\n    574,\n    137\n  ]\n}',
        headers={
            "Authorization": AUTH_HEADER,
            "Accept": "application/json; charset=utf-8",
            "Accept-Language": "sv",
            "Content-Type": "application/json; charset=utf-8",
        },
    )
    assert response.status == 204, await response.text()
    assert await response.read() == b""
    task_id = int(response.headers["X-Batch-Task-Id"])
    location = response.headers["Location"]
    assert location.endswith(f"GetBatchTaskInfo?id={task_id}")
    assert await requests(db) == [SAMPLE]
    # the Location answers a plain GET (issue 20), in JSON or XML, with $select
    followed = await front_door.client.get(location, headers={"Authorization": AUTH_HEADER})
    assert followed.status == 200 and (await followed.json())["Id"] == task_id
    as_xml = await front_door.client.get(
        location + "&$select=Id",
        headers={"Authorization": AUTH_HEADER, "Accept": "application/xml"},
    )
    xml = await as_xml.text()
    assert as_xml.status == 200 and f"<Id>{task_id}</Id>" in xml and 'i:nil="true"' in xml
    missing = await front_door.client.get(
        location.replace(f"id={task_id}", "id=999999"), headers={"Authorization": AUTH_HEADER}
    )
    assert missing.status == 404


async def test_every_format_binds_the_same_command(
    front_door: Service, db: asyncpg.Connection
) -> None:
    """One service for all cases: starting one per case would dominate the run time."""
    failures = []
    for label, content_type, body in SAME_COMMAND:
        await db.execute("DELETE FROM batch_tasks")
        response = await post(front_door, body, content_type)
        bound = await requests(db)
        if response.status != 204 or bound != [SAMPLE]:
            failures.append((label, response.status, await response.text(), bound))
    assert failures == []


NIL = b'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'
VARIANTS: list[tuple[str | None, bytes, tuple[int, list[int]]]] = [
    ("application/json", b'{"erpConnectionId": 1, "internalKeyIds": [3]}', (1, [3])),
    ("application/json", b'{"ERPCONNECTIONID": 2, "INTERNALKEYIDS": [4]}', (2, [4])),
    ("application/json", b'{"ErpConnectionId": 1}', (1, [])),
    ("application/json", b'{"InternalKeyIds": [7]}', (0, [7])),
    ("application/json", b"{}", (0, [])),
    ("application/json", b"", (0, [])),
    (None, b"", (0, [])),
    ("application/json", b'{"ErpConnectionId": -5}', (-5, [])),
    (
        "application/json",
        b'{"ErpConnectionId": "2", "InternalKeyIds": ["8", 9.0]}',
        (2, [8, 9]),
    ),
    ("application/json", b'{"InternalKeyIds": [5, 5, 3, 5]}', (0, [5, 3])),
    ("application/json", b'{"InternalKeyIds": null, "ErpConnectionId": null}', (0, [])),
    ("application/json", b'{"Unknown": {"x": [1]}, "InternalKeyIds": [1]}', (0, [1])),
    (
        "application/xml",
        b"<r><erpconnectionid>2</erpconnectionid><INTERNALKEYIDS/></r>",
        (2, []),
    ),
    (
        "application/xml",
        b"<r><InternalKeyIds><long>6</long><int>6</int></InternalKeyIds></r>",
        (0, [6]),
    ),
    (
        "application/xml",
        b"<r " + NIL + b'><InternalKeyIds i:nil="true"/></r>',
        (0, []),
    ),
    ("application/x-www-form-urlencoded", b"ERPCONNECTIONID=1", (1, [])),
    ("application/x-www-form-urlencoded", b"InternalKeyIds=&other=x", (0, [])),
]


async def test_case_variants_defaults_and_deduplication(
    front_door: Service, db: asyncpg.Connection
) -> None:
    failures = []
    for content_type, body, (connection, ids) in VARIANTS:
        await db.execute("DELETE FROM batch_tasks")
        response = await post(front_door, body, content_type)
        bound = await requests(db)
        if response.status != 204 or bound != [
            {"ErpConnectionId": connection, "InternalKeyIds": ids}
        ]:
            failures.append((content_type, body, response.status, await response.text(), bound))
    assert failures == []


BAD_REQUESTS: list[tuple[str, str | None, bytes, int, str]] = [
    ("not an int", "application/json", b'{"ErpConnectionId": "abc"}', 400, "ErpConnectionId"),
    ("bool id", "application/json", b'{"ErpConnectionId": true}', 400, "boolean"),
    ("zero id", "application/json", b'{"InternalKeyIds": [0]}', 400, "InternalKeyIds[0]"),
    ("negative id", "application/json", b'{"InternalKeyIds": [1, -3]}', 400, "InternalKeyIds[1]"),
    ("fraction", "application/json", b'{"InternalKeyIds": [1.5]}', 400, "InternalKeyIds[0]"),
    ("string item", "application/json", b'{"InternalKeyIds": ["x"]}', 400, "InternalKeyIds[0]"),
    ("null item", "application/json", b'{"InternalKeyIds": [null]}', 400, "InternalKeyIds[0]"),
    ("nested item", "application/json", b'{"InternalKeyIds": [[1]]}', 400, "InternalKeyIds[0]"),
    ("not an array", "application/json", b'{"InternalKeyIds": 5}', 400, "array"),
    ("int32 overflow", "application/json", b'{"InternalKeyIds": [2147483648]}', 400, "Int32"),
    ("huge number", "application/json", b'{"ErpConnectionId": 1e400}', 400, ""),
    ("unknown connection", "application/json", b'{"ErpConnectionId": 77}', 404, "77"),
    ("truncated", "application/json", b'{"ErpConnectionId": 1', 400, "JSON"),
    ("array body", "application/json", b"[1, 2]", 400, "object"),
    ("null body", "application/json", b"null", 400, "object"),
    ("deep", "application/json", b'{"a":' * 100 + b"1" + b"}" * 100, 400, "nested"),
    ("very deep", "application/json", b"[" * 5000 + b"]" * 5000, 400, ""),
    ("bad utf-8", "application/json", b'{"ErpConnectionId": "\xff"}', 400, "utf-8"),
    ("xml broken", "application/xml", b"<r><ErpConnectionId>1</r>", 400, "XML"),
    (
        "xml nested item",
        "text/xml",
        b"<r><InternalKeyIds><int><x/></int></InternalKeyIds></r>",
        400,
        "",
    ),
    (
        "xml twice",
        "text/xml",
        b"<r><ErpConnectionId>1</ErpConnectionId><ErpConnectionId>2</ErpConnectionId></r>",
        400,
        "more than once",
    ),
    (
        "xml bad id",
        "text/xml",
        b"<r><InternalKeyIds><int>a</int></InternalKeyIds></r>",
        400,
        "InternalKeyIds[0]",
    ),
    (
        "form twice",
        "application/x-www-form-urlencoded",
        b"ErpConnectionId=1&ErpConnectionId=2",
        400,
        "more than once",
    ),
    ("form bad escape", "application/x-www-form-urlencoded", b"ErpConnectionId=%ff", 400, "form"),
    (
        "form bad id",
        "application/x-www-form-urlencoded",
        b"InternalKeyIds=1,x",
        400,
        "InternalKeyIds[1]",
    ),
    ("form garbage", "application/x-www-form-urlencoded", b"&&&===", 400, "form"),
    (
        "json sent as form (curl -d without -H)",
        "application/x-www-form-urlencoded",
        b'{"ErpConnectionId": 589, "InternalKeyIds": [574]}',
        400,
        "Content-Type: application/json",
    ),
    ("text/plain", "text/plain", b'{"ErpConnectionId": 1}', 415, "text/plain"),
    ("no content type", None, b'{"ErpConnectionId": 1}', 415, "application/octet-stream"),
    ("multipart", "multipart/form-data; boundary=x", b"--x--", 415, "multipart"),
    ("bad charset", "application/json; charset=klingon", b"{}", 415, "charset"),
]


async def test_malformed_input_gets_a_deliberate_error(
    front_door: Service, db: asyncpg.Connection
) -> None:
    failures = []
    for label, content_type, body, status, mentions in BAD_REQUESTS:
        response = await post(front_door, body, content_type)
        error = await response.json()
        if (
            response.status != status
            or set(error) != {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
            or error["Error"] is not True
            or mentions not in error["ErrorMessage"]
            or "Traceback" in error["ErrorMessage"]
        ):
            failures.append((label, response.status, error))
    assert failures == []
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 0


async def test_oversized_bodies_and_too_many_ids_get_413(
    front_door: Service, db: asyncpg.Connection
) -> None:
    limit = front_door.settings.server.max_body_bytes
    declared = await post(front_door, b"{" + b" " * limit + b"}", "application/json")

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await front_door.client.post(
        RESYNC, data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    max_ids = front_door.settings.server.max_internal_key_ids
    too_many = await post(
        front_door,
        json.dumps({"InternalKeyIds": list(range(1, max_ids + 2))}).encode(),
        "application/json",
    )
    at_limit = await post(
        front_door,
        json.dumps({"InternalKeyIds": list(range(1, max_ids + 1))}).encode(),
        "application/json",
    )
    statuses = [declared.status, streamed.status, too_many.status]
    assert statuses == [413, 413, 413]
    for response in (declared, streamed, too_many):
        assert (await response.json())["ErrorType"] == "RequestEntityTooLargeException"
    assert str(max_ids) in (await too_many.json())["ErrorMessage"]
    assert at_limit.status == 204
    assert await db.fetchval("SELECT count(*) FROM batch_tasks") == 1


async def test_select_is_validated_and_ignored_on_204(front_door: Service) -> None:
    for select in ["", "name,department,category/id", "Name", " a , b/c/d "]:
        response = await front_door.client.post(
            RESYNC, params={"$select": select}, json={"InternalKeyIds": [1]}, headers=AUTH
        )
        assert response.status == 204, select
        assert await response.read() == b""
    for select in ["a,,b", "1abc", "a/", "a b", "a;drop", "x" * 2001]:
        response = await front_door.client.post(
            RESYNC, params={"$select": select}, json={"InternalKeyIds": [1]}, headers=AUTH
        )
        assert response.status == 400, select
        assert "$select" in (await response.json())["ErrorMessage"]
