"""The read-only /api/v1/erpsync endpoints: shapes, filters, validation and authentication."""

from __future__ import annotations

from typing import Any

from connectors.memory import MemoryStore
from tests.support.ops import settings_for
from tests.support.service import AUTH, Service

API = "/api/v1/erpsync"


async def get(service: Service, path: str, status: int = 200) -> Any:
    response = await service.client.get(path, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def test_task_detail_failures_and_sync_log(service: Service) -> None:
    failed = await service.finished(await service.resync(0, [1, 3, 99]))
    ok = await service.finished(await service.resync(0, [2]))
    assert (failed["State"], ok["State"]) == ("Failed", "Succeeded")

    tasks = await get(service, f"{API}/tasks")
    assert [t["Id"] for t in tasks] == [2, 1]
    assert [t["Id"] for t in await get(service, f"{API}/tasks?state=Failed")] == [1]
    assert [t["Id"] for t in await get(service, f"{API}/tasks?state=Failed,Succeeded")] == [2, 1]
    assert [t["Id"] for t in await get(service, f"{API}/tasks?limit=1&before=2")] == [1]

    detail = await get(service, f"{API}/tasks/1")
    assert detail["Task"]["State"] == "Failed"
    targets = {t["ConnectionId"]: t for t in detail["Targets"]}
    assert targets[None]["Outcomes"] == {"unknown_key": 1}
    assert targets[1]["Outcomes"] == {"updated": 1, "unchanged": 1}
    assert targets[1]["FieldsChanged"] == 1 and targets[1]["Name"] == "ERP one"
    assert targets[2]["Outcomes"] == {"updated": 1, "failed": 1}
    reasons = {(f["InternalKeyId"], f["ConnectionId"], f["Status"]) for f in detail["Failures"]}
    assert reasons == {(99, None, "unknown_key"), (3, 2, "failed")}

    only_erp2 = await get(service, f"{API}/tasks/1/failures?connection=2")
    assert [(f["InternalKeyId"], f["Error"]) for f in only_erp2] == [(3, only_erp2[0]["Error"])]
    assert "rejected by configuration" in only_erp2[0]["Error"]

    log = await get(service, f"{API}/synclog?task=1")
    assert sorted((c["InternalKeyId"], c["ConnectionId"], c["ErpField"]) for c in log) == [
        (1, 1, "phone"),
        (1, 2, "mail"),
    ]
    change = next(c for c in log if c["ErpField"] == "phone")
    assert (change["OldValue"], change["NewValue"], change["Direction"]) == ("999", "100", "to_erp")
    assert [c["ErpField"] for c in await get(service, f"{API}/synclog?key=1&connection=2")] == [
        "mail"
    ]
    newest_first = await get(service, f"{API}/synclog")
    older = await get(service, f"{API}/synclog?before={newest_first[0]['Id']}")
    assert [c["Id"] for c in older] == [c["Id"] for c in newest_first[1:]]

    connections = {c["Id"]: c for c in await get(service, f"{API}/connections")}
    assert connections[0]["Role"] == "CRM" and connections[0]["Health"] == "idle"
    assert connections[1]["Health"] == "ok" and connections[1]["RecentOutcomes"] == 3
    assert connections[2]["Health"] == "degraded" and connections[2]["RecentFailures"] == 1
    assert "rejected by configuration" in connections[2]["LastError"]
    assert {c["Breaker"] for c in connections.values()} == {"closed"}
    assert {c["Active"] for c in connections.values()} == {True}
    toggle = "/api/v1/Agents/ErpSync/ToggleErpConnectionActive"
    response = await service.client.post(toggle, json={"ErpConnectionId": 2}, headers=AUTH)
    assert response.status == 200, await response.text()
    shown = {c["Id"]: c["Active"] for c in await get(service, f"{API}/connections")}
    assert shown == {0: True, 1: True, 2: False}


async def test_validation_and_authentication(service: Service) -> None:
    assert (await get(service, f"{API}/tasks?state=Bogus", 400))["ErrorMessage"].startswith(
        "Unknown state 'Bogus'"
    )
    await get(service, f"{API}/tasks?limit=0", 400)
    await get(service, f"{API}/tasks?limit=x", 400)
    await get(service, f"{API}/synclog?task=x", 400)
    assert (await get(service, f"{API}/tasks/42", 404))["ErrorType"] == "SoNotFoundException"
    for path in ("tasks", "tasks/1", "synclog", "connections"):
        response = await service.client.get(f"{API}/{path}")
        assert response.status == 401, path


async def test_an_api_only_process_reports_breakers_as_unknown(
    database: str, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    async with Service(settings_for(database, broker_prefix, stores), engine=False) as api:
        connections = await get(api, f"{API}/connections")
    assert [c["Breaker"] for c in connections] == ["unknown"] * 3
