"""Error JSON/XML, 405s, content negotiation, $select, the Batch agent, the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
from defusedxml.ElementTree import fromstring

from engine.api import openapi
from tests.support.api import basic
from tests.support.service import RESYNC, TASK_INFO, Service

AUTH = basic("tje0", "Tje0")
BATCH = "/api/v1/Agents/Batch"
LIST = f"{BATCH}/GetBatchTaskInfosByNameAndState"
STOP = f"{BATCH}/StopBatchJob"
AGENT_URLS = [RESYNC, TASK_INFO, LIST, STOP]
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


async def test_errors_are_xml_when_accept_prefers_xml(front_door: Service) -> None:
    cases = {
        "application/xml": "xml",
        "text/xml": "xml",
        "application/json;q=0.5, application/xml": "xml",
        "application/xml;q=0.4, application/json;q=0.9": "json",
        "*/*": "json",
        "text/*": "json",  # text/json and text/xml tie: JSON wins
        "": "json",
        "image/png": "json",
    }
    for accept, kind in cases.items():
        response = await front_door.client.post(
            TASK_INFO, json={"Id": 999}, headers={**AUTH, "Accept": accept}
        )
        assert response.status == 404
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if kind == "json":
            assert response.content_type == "application/json", accept
            assert (await response.json())["ErrorType"] == "SoNotFoundException"
        else:
            assert response.content_type == "application/xml", accept
            root = fromstring(await response.read())
            assert root.tag == "ErrorInfo"
            assert {child.tag: child.text for child in root} == {
                "Error": "true",
                "ErrorType": "SoNotFoundException",
                "ErrorMessage": "BatchTask id 999 not found",
                "ErrorSource": "erpsync",
            }
    unauthorized = await front_door.client.post(RESYNC, headers={"Accept": "application/xml"})
    assert unauthorized.status == 401 and unauthorized.content_type == "application/xml"


async def test_other_methods_on_agent_urls_get_405(front_door: Service) -> None:
    for url in AGENT_URLS:
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            if (method, url) == ("GET", TASK_INFO):
                continue  # GET ...?id= answers: the 204's Location (test_bodies)
            response = await front_door.client.request(method, url, headers=AUTH)
            assert response.status == 405, (method, url)
            assert response.headers["Allow"] == ("GET,POST" if url == TASK_INFO else "POST")
            body = await response.json()
            assert body["ErrorType"] == "MethodNotAllowedException"
            assert method in body["ErrorMessage"]


async def test_batch_task_info_in_json_and_xml_with_select(
    front_door: Service, db: asyncpg.Connection
) -> None:
    queued = await front_door.client.post(RESYNC, json={"InternalKeyIds": [3, 1]}, headers=AUTH)
    task_id = int(queued.headers["X-Batch-Task-Id"])

    info = await (
        await front_door.client.post(TASK_INFO, json={"id": task_id}, headers=AUTH)
    ).json()
    assert info["Id"] == task_id and info["State"] == "New"
    assert json.loads(info["Request"]) == {"ErpConnectionId": 0, "InternalKeyIds": [3, 1]}
    assert info["Statistics"]["Stopped"] is False

    by_query = await front_door.client.post(f"{TASK_INFO}?id={task_id}", headers=AUTH)
    assert (await by_query.json())["Id"] == task_id

    selected = await front_door.client.post(
        TASK_INFO,
        params={"$select": "id,STATE,statistics/chunks"},
        data=f"<r><Id>{task_id}</Id></r>",
        headers={**AUTH, "Content-Type": "application/xml"},
    )
    projected = await selected.json()
    assert set(projected) == set(info)  # keys kept, others nulled (SuperOffice's $select)
    assert projected["Id"] == task_id and projected["State"] == "New"
    assert projected["Name"] is None and projected["Response"] is None
    assert projected["Statistics"]["Chunks"] == 0
    assert projected["Statistics"]["DoneRecords"] is None

    form = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/xml"}
    as_xml = await front_door.client.post(TASK_INFO, data=f"Id={task_id}", headers={**AUTH, **form})
    assert as_xml.content_type == "application/xml"
    root = fromstring(await as_xml.read())
    assert root.tag == "BatchTaskInfo"
    assert root.findtext("Id") == str(task_id) and root.findtext("IsSystemTask") == "false"
    assert root.find("LastStarted").get(XSI_NIL) == "true"  # type: ignore[union-attr]


async def test_list_by_name_and_state_validates_and_filters(
    front_door: Service, db: asyncpg.Connection
) -> None:
    for _ in range(2):
        await front_door.client.post(RESYNC, json={}, headers=AUTH)
    await db.execute(
        "UPDATE batch_tasks SET state = 'Succeeded' WHERE id = (SELECT min(id) FROM batch_tasks)"
    )

    async def listed(body: object) -> tuple[int, Any]:
        response = await front_door.client.post(LIST, json=body, headers=AUTH)
        return response.status, await response.json()

    assert [len(x) for _, x in [await listed({}), await listed({"State": "All"})]] == [2, 2]
    for state in ("Succeeded", "succeeded", "SUCCEEDED", 4, "4"):
        status, tasks = await listed({"Name": "ForceResyncBatchTask", "State": state})
        assert status == 200 and [t["State"] for t in tasks] == ["Succeeded"], state
    status, tasks = await listed({"State": "New"})
    assert [t["State"] for t in tasks] == ["New"]
    status, tasks = await listed({"Name": "SomethingElse"})
    assert tasks == []
    for bad in (
        {"State": "Finished"},
        {"State": True},
        {"State": [1]},
        {"Name": 5},
        {"Name": "x" * 300},
        {"State": 7},
    ):
        status, error = await listed(bad)
        assert status == 400, bad
        assert error["Error"] is True
    xml = await front_door.client.post(LIST, json={}, headers={**AUTH, "Accept": "text/xml"})
    root = fromstring(await xml.read())
    assert root.tag == "ArrayOfBatchTaskInfo"
    assert [child.tag for child in root] == ["BatchTaskInfo", "BatchTaskInfo"]


async def test_stop_batch_job_answers(front_door: Service, db: asyncpg.Connection) -> None:
    unknown = await front_door.client.post(STOP, json={"Id": 12345}, headers=AUTH)
    assert unknown.status == 404
    missing = await front_door.client.post(STOP, json={}, headers=AUTH)
    assert missing.status == 400
    queued = await front_door.client.post(RESYNC, json={}, headers=AUTH)
    task_id = int(queued.headers["X-Batch-Task-Id"])
    first = await front_door.client.post(STOP, json={"Id": task_id}, headers=AUTH)
    second = await front_door.client.post(STOP, json={"Id": task_id}, headers=AUTH)
    assert [await first.json(), await second.json()] == [True, False]
    info = await (
        await front_door.client.post(TASK_INFO, json={"Id": task_id}, headers=AUTH)
    ).json()
    assert info["State"] == "Failed"
    assert info["ProgressDescription"] == "Stopped"
    assert info["Response"].startswith("Stopped by tje0")
    assert info["Statistics"]["Stopped"] is True and info["Statistics"]["StoppedBy"] == "tje0"


async def test_openapi_is_served_kept_in_the_repo_and_covers_every_route(
    front_door: Service,
) -> None:
    response = await front_door.client.get("/openapi.json")  # public, like the health probes
    assert response.status == 200
    served = await response.json()
    assert served["openapi"].startswith("3.1")
    repo_copy = json.loads(Path(__file__).parents[3].joinpath("docs/openapi.json").read_text())
    assert served == repo_copy, "docs/openapi.json is stale: python -m engine.api.openapi"
    assert served == json.loads(openapi.render())

    documented = {
        (method.upper(), path) for path, item in served["paths"].items() for method in item
    }
    routed = {
        (route.method, route.resource.canonical)
        for route in front_door.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    assert routed == documented


async def test_what_schemathesis_found_in_issue_20_is_answered_as_documented(
    front_door: Service,
) -> None:
    """The issue's findings, kept as plain regressions beside the fuzzer's run."""
    client = front_door.client
    document = openapi.document()
    failures = "/api/v1/erpsync/tasks/1/failures"
    operation = document["paths"]["/api/v1/erpsync/tasks/{id}/failures"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert parameters["connection"]["minimum"] == -(2**31)  # the column's Int32 range
    assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    out_of_range = await client.get(failures, params={"connection": "-15204397619"}, headers=AUTH)
    assert out_of_range.status == 400
    assert "'connection' must be between" in (await out_of_range.json())["ErrorMessage"]
    for path in ("tasks", "tasks/1", "tasks/1/failures", "synclog"):
        for limit in ("0", "-542", "1001"):
            response = await client.get(
                f"/api/v1/erpsync/{path}", params={"limit": limit}, headers=AUTH
            )
            assert response.status == 400, (path, limit)
    huge_id = await client.get("/api/v1/erpsync/tasks/99999999999999999999", headers=AUTH)
    assert huge_id.status == 404
    # $select naming no property selects nothing (SuperOffice: the key, value null)
    info = await client.post(f"{TASK_INFO}?$select=Nothing", json={"Id": 1}, headers=AUTH)
    assert info.status == 404  # no task 1 in this database: the select itself was accepted
    listed = await client.post(f"{LIST}?$select=Nothing,Id", json={}, headers=AUTH)
    assert listed.status == 200
    # an empty user name is a failed login, like any wrong name
    login = await client.post("/api/session/login", json={"Username": "", "Password": "x"})
    assert login.status == 401
    missing = await client.post("/api/session/login", json={"Password": "x"})
    assert missing.status == 400


async def test_text_filters_with_a_nul_character_are_refused_as_documented(
    front_door: Service,
) -> None:
    """Schemathesis sent a CorrelationId with a NUL character after the merges: PostgreSQL's text
    cannot hold one, so the query failed (500). Now a documented 400, for every text filter."""
    client = front_door.client
    properties = openapi.document()["components"]["schemas"]["NameAndStateRequest"]["properties"]
    for name in ("Name", "CorrelationId", "MessageId"):
        assert properties[name]["pattern"] == openapi.NO_NUL
        response = await client.post(LIST, json={name: "a\x00b"}, headers=AUTH)
        assert response.status == 400, name
        body = await response.json()
        assert body["ErrorMessage"] == f"{name} must not contain NUL characters", body
    for name in ("correlation_id", "message_id"):
        response = await client.get("/api/v1/erpsync/tasks", params={name: "a\x00b"}, headers=AUTH)
        assert response.status == 400, name
    ok = await client.post(LIST, json={"CorrelationId": "order-17"}, headers=AUTH)
    assert ok.status == 200 and await ok.json() == []
    # The document's null State, as a form body spells it (schemathesis, seeded run): any state.
    form = await client.post(
        LIST, data={"Name": "ForceResyncBatchTask", "State": "null"}, headers=AUTH
    )
    assert form.status == 200, await form.text()


# Every property of SuperOffice's BatchTaskInfo carrier (v1BatchAgent_GetBatchTaskInfo.md).
SUPEROFFICE_BATCH_TASK_INFO = {
    "Id", "Name", "AssociateId", "DetailsTable", "DetailsRecord", "IsSystemTask",
    "IsInternalTask", "ParameterObject", "LastStarted", "Created", "StartCount",
    "DatabaseSerialNumber", "Context", "Result", "State", "Description", "Response", "Request",
    "ProgressDescription", "ProgressPercent", "FileName", "TableRight", "FieldProperties",
}  # fmt: skip


async def test_batch_task_info_has_every_property_of_superoffices_carrier(
    front_door: Service, db: asyncpg.Connection
) -> None:
    queued = await front_door.client.post(RESYNC, json={"InternalKeyIds": [1]}, headers=AUTH)
    task_id = int(queued.headers["X-Batch-Task-Id"])
    info = await (
        await front_door.client.post(TASK_INFO, json={"Id": task_id}, headers=AUTH)
    ).json()
    assert set(info) >= SUPEROFFICE_BATCH_TASK_INFO, SUPEROFFICE_BATCH_TASK_INFO - set(info)
    assert info["ParameterObject"] is None and info["TableRight"] is None
    assert info["FieldProperties"] == {}
    listed = await front_door.client.post(LIST, json={}, headers=AUTH)
    assert set((await listed.json())[0]) >= SUPEROFFICE_BATCH_TASK_INFO
    as_xml = await front_door.client.post(
        TASK_INFO, json={"Id": task_id}, headers={**AUTH, "Accept": "application/xml"}
    )
    root = fromstring(await as_xml.read())
    assert root.find("ParameterObject").get(XSI_NIL) == "true"  # type: ignore[union-attr]
    assert root.findtext("Result") == ""


async def test_the_continuous_syncs_tasks_are_system_tasks(
    front_door: Service, db: asyncpg.Connection
) -> None:
    """SuperOffice: "If IsSystemTask is true, the task is not initiated by an associate"."""
    queued = await front_door.client.post(RESYNC, json={}, headers=AUTH)
    resync_id = int(queued.headers["X-Batch-Task-Id"])
    sync_id = await db.fetchval(
        "INSERT INTO batch_tasks (name, source_connection_id, request) "
        """VALUES ('Sync', 1, '{"ErpConnectionId": 1, "InternalKeyIds": [1]}') RETURNING id"""
    )
    infos = [
        await (await front_door.client.post(TASK_INFO, json={"Id": i}, headers=AUTH)).json()
        for i in (resync_id, sync_id)
    ]
    assert [(i["Name"], i["IsSystemTask"]) for i in infos] == [
        ("ForceResyncBatchTask", False),
        ("Sync", True),
    ]
