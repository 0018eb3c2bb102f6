"""The synchronous ForceResync* endpoints over real HTTP, RabbitMQ and PostgreSQL: the
PluginResponse, NoBlankValues at both hops, ERP keys, the key limit, the timeout, and
SuperOffice's sample requests verbatim (JSON and XML)."""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import pytest
from defusedxml.ElementTree import fromstring

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support import services
from tests.support.api import basic
from tests.support.service import Service, link, sync_log
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

AUTH = basic("tje0", "Tje0")
ERPSYNC = "/api/v1/Agents/ErpSync"
PLUGIN_RESPONSE = {
    "IsOk",
    "UserExplanation",
    "TechExplanation",
    "ErrorCode",
    "Changes",
    "Status",
    "TableRight",
    "FieldProperties",
}
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def settings_for(
    database: str, prefix: str, stores: dict[int, MemoryStore], **server: Any
) -> Settings:
    settings = memory_settings(database, prefix, {cid: s.name for cid, s in stores.items()})
    return settings.model_copy(update={"server": settings.server.model_copy(update=server)})


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Contacts 1-3 linked as E1-i on ERP 1 and E2-i on ERP 2, every value different."""
    for i in (1, 2, 3):
        stores[0].put("Contact", str(i), {"name": f"Co {i}", "phone": f"{i}00", "email": f"{i}@c"})
        stores[1].put("Customer", f"E1-{i}", {"name": "old", "phone": "old", "email": f"{i}@c"})
        stores[2].put("Customer", f"E2-{i}", {"company": "old", "tel": "old", "mail": "old"})
        await link(
            db, i, "Contact", str(i), {1: ("Customer", f"E1-{i}"), 2: ("Customer", f"E2-{i}")}
        )


async def post(
    service: Service, name: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any], Any]:
    response = await service.client.post(
        f"{ERPSYNC}/{name}", json=body, headers={**AUTH, **headers}
    )
    return response.status, dict(response.headers), await response.json()


async def test_force_resync_answers_when_the_task_has_run(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    # A poll far beyond the test's patience: only the task's notification can wake the call.
    settings = settings_for(database, broker_prefix, stores, sync_poll_interval=60)
    async with Service(settings) as service:
        started = time.monotonic()
        status, headers, body = await post(
            service, "ForceResync", {"ErpConnectionId": 0, "InternalKeyIds": [1, 2]}
        )
        elapsed = time.monotonic() - started
        info = await service.task(int(headers["X-Batch-Task-Id"]))

    assert status == 200, body
    assert set(body) == PLUGIN_RESPONSE
    assert (body["IsOk"], body["Status"], body["ErrorCode"]) == (True, "Ok", "")
    assert body["UserExplanation"].startswith("2 records; writes: 4 updated")
    assert body["TechExplanation"].startswith(f"Task {info['Id']} Succeeded: 2 records")
    assert (body["Changes"], body["TableRight"], body["FieldProperties"]) == (None, None, {})
    assert elapsed < 30, "woken by the notification, not by the 60 s poll"
    assert (info["Name"], info["State"]) == ("ForceResync", "Succeeded")
    assert stores[2].get("Customer", "E2-1") == {"company": "Co 1", "tel": "100", "mail": "1@c"}
    assert stores[2].get("Customer", "E2-3") == {"company": "old", "tel": "old", "mail": "old"}


async def test_no_blank_values_keeps_non_blank_targets_and_logs_nothing_for_them(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """Both hops: ERP 1 (the source) -> CRM (email), CRM -> ERP 2 (phone to tel)."""
    await seed(db, stores)
    crm, erp1, erp2 = stores[0], stores[1], stores[2]
    crm.put("Contact", "1", {"name": "Co 1", "phone": None, "email": "1@c"})
    erp1.put("Customer", "E1-1", {"name": "Co 1", "phone": "111", "email": ""})
    erp2.put("Customer", "E2-1", {"company": "Co 1", "tel": "222", "mail": "1@c"})
    request = {"ErpConnectionId": 1, "InternalKeyIds": [1]}
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        status, headers, kept = await post(service, "ForceResyncNoBlankValues", request)
        kept_task = int(headers["X-Batch-Task-Id"])
        assert status == 200 and kept["IsOk"], kept
        assert crm.get("Contact", "1") == {"name": "Co 1", "phone": None, "email": "1@c"}
        assert erp1.get("Customer", "E1-1") == {"name": "Co 1", "phone": "111", "email": ""}
        assert erp2.get("Customer", "E2-1") == {"company": "Co 1", "tel": "222", "mail": "1@c"}
        assert await sync_log(db, kept_task) == []
        assert kept["Status"] == "OkWithInfo"
        for where, field in (("connection 0", "email"), ("connection 2", "tel")):
            assert (
                f"key 1 on {where}: unchanged: blank source value not written over a "
                f"non-blank value: {field}" in kept["TechExplanation"]
            ), kept
        info = await service.task(kept_task)
        assert '"NoBlankValues":true' in info["Request"]

        status, headers, blanked = await post(service, "ForceResync", request)
        assert status == 200 and blanked["IsOk"], blanked
        rows = await sync_log(db, int(headers["X-Batch-Task-Id"]))
    assert crm.get("Contact", "1") == {"name": "Co 1", "phone": None, "email": ""}
    assert erp1.get("Customer", "E1-1") == {"name": "Co 1", "phone": "111", "email": ""}
    assert erp2.get("Customer", "E2-1") == {"company": "Co 1", "tel": None, "mail": ""}
    assert rows == [
        (1, 1, "email", "email", True, "1@c", ""),
        (2, 1, "mail", "email", False, "1@c", ""),
        (2, 1, "tel", "phone", False, "222", None),
    ]


async def test_external_keys_resync_the_known_and_report_the_unknown(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    body = {
        "ErpConnectionId": 1,
        "ErpActorType": "Customer",
        "ExternalKeys": ["E1-1", "nope", "E1-3", "E2-2", "E1-1"],
    }
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        status, headers, answer = await post(service, "ForceResyncExternal", body)
        info = await service.task(int(headers["X-Batch-Task-Id"]))
        none_status, none_headers, none_known = await post(
            service,
            "ForceResyncExternalNoBlankValues",
            {"ErpConnectionId": 1, "ErpActorType": "customer", "ExternalKeys": ["x", 42]},
        )
        tasks = await db.fetchval("SELECT count(*) FROM batch_tasks")

    assert status == 200 and answer["IsOk"], answer
    assert answer["Status"] == "OkWithInfo"
    assert "2 ERP keys not linked: 'nope', 'E2-2'" in answer["UserExplanation"]
    for key in ("nope", "E2-2"):
        assert (
            f"ExternalKey {key!r}: no Customer with this key is linked on connection 1"
            in answer["TechExplanation"]
        )
    assert (info["Name"], info["Statistics"]["SourceConnectionId"]) == ("ForceResyncExternal", 1)
    assert '"InternalKeyIds":[1,3]' in info["Request"]
    # ERP 1 is the source: its values reached the CRM and ERP 2 for records 1 and 3 only
    one, two = stores[0].get("Contact", "1"), stores[0].get("Contact", "2")
    assert one is not None and one["name"] == "old"  # name flows both ways
    assert two is not None and two["name"] == "Co 2"
    erp2 = [stores[2].get("Customer", f"E2-{i}") for i in (1, 2, 3)]
    assert [c and c["tel"] for c in erp2] == ["100", "old", "300"]

    assert none_status == 200 and "X-Batch-Task-Id" not in none_headers
    assert (none_known["IsOk"], none_known["ErrorCode"]) == (False, "UnknownExternalKeys")
    assert "ExternalKey '42'" in none_known["TechExplanation"]
    assert tasks == 1  # nothing to resync: no task


async def test_erp_actor_type_may_be_superoffices_enum_number(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """CRMScript passes ErpActorType as an Integer (1 = Customer), like the link endpoints."""
    await seed(db, stores)
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        answers = [
            await post(
                service,
                "ForceResyncExternal",
                {"ErpConnectionId": 1, "ErpActorType": number, "ExternalKeys": ["E1-1"]},
            )
            for number in (1, "1")
        ]
        supplier = await post(
            service,
            "ForceResyncExternal",
            {"ErpConnectionId": 1, "ErpActorType": 2, "ExternalKeys": ["E1-1"]},
        )
    for status, headers, answer in answers:
        assert status == 200 and answer["IsOk"], answer
        assert "X-Batch-Task-Id" in headers
    assert supplier[0] == 404 and "'Supplier'" in supplier[2]["ErrorMessage"], supplier


async def test_empty_external_keys_resync_every_actor_of_that_type(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """SuperOffice: ExternalKeys "or empty to resync all"."""
    await seed(db, stores)
    all_of_type = {"ErpConnectionId": 2, "ErpActorType": "Customer", "ExternalKeys": []}
    async with Service(settings_for(database, broker_prefix, stores, sync_max_keys=3)) as service:
        status, headers, answer = await post(service, "ForceResyncExternal", all_of_type)
        info = await service.task(int(headers["X-Batch-Task-Id"]))
        no_keys = {"ErpConnectionId": 2, "ErpActorType": "Customer"}
        missing = await post(service, "ForceResyncExternalNoBlankValues", no_keys)
        await link(db, 4, "Contact", "4", {2: ("Customer", "E2-4")})
        too_many = await post(service, "ForceResyncExternal", all_of_type)
        await db.execute("DELETE FROM external_keys WHERE connection_id = 2")
        none_linked = await post(service, "ForceResyncExternal", all_of_type)
        tasks = await db.fetchval("SELECT count(*) FROM batch_tasks")

    assert status == 200 and answer["IsOk"], answer
    assert (info["Name"], info["Statistics"]["SourceConnectionId"]) == ("ForceResyncExternal", 2)
    assert '"InternalKeyIds":[1,2,3]' in info["Request"]
    contact = stores[0].get("Contact", "2")
    assert contact is not None and contact["phone"] == "old"  # ERP 2's tel reached the CRM
    assert missing[0] == 200 and missing[2]["IsOk"], missing
    assert too_many[0] == 413 and "every linked Customer" in too_many[2]["ErrorMessage"]
    assert none_linked[0] == 200 and "X-Batch-Task-Id" not in none_linked[1]
    assert (
        none_linked[2]["IsOk"]
        and "No Customer is linked on connection 2" in (none_linked[2]["UserExplanation"])
    )
    assert tasks == 2


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"ErpConnectionId": 1, "ErpActorType": "Vendor", "ExternalKeys": ["a"]}, 404, "Vendor"),
        ({"ErpConnectionId": 1, "ExternalKeys": ["a"]}, 400, "ErpActorType is required"),
        ({"ErpConnectionId": 0, "ErpActorType": "Customer", "ExternalKeys": ["a"]}, 400, "> 0"),
        ({"ErpConnectionId": 9, "ErpActorType": "Customer", "ExternalKeys": ["a"]}, 404, "9"),
        ({"ErpConnectionId": 1, "ErpActorType": "Customer", "ExternalKeys": [""]}, 400, "[0]"),
    ],
)
async def test_external_arguments_are_checked(
    front_door: Service, body: dict[str, Any], status: int, message: str
) -> None:
    got, _, error = await post(front_door, "ForceResyncExternal", body)
    assert got == status, error
    assert error["Error"] is True and message in error["ErrorMessage"], error


async def test_more_keys_than_the_synchronous_limit_get_413_at_once(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    settings = settings_for(database, broker_prefix, stores, sync_max_keys=2)
    async with Service(settings, engine=False) as service:
        answers = [
            await post(service, "ForceResync", {"InternalKeyIds": [1, 2, 3]}),
            await post(service, "ForceResyncNoBlankValues", {"ErpConnectionId": 1}),  # all: 3
            await post(
                service,
                "ForceResyncExternal",
                {"ErpConnectionId": 1, "ErpActorType": "Customer", "ExternalKeys": ["a", "b", "c"]},
            ),
        ]
        tasks = await db.fetchval("SELECT count(*) FROM batch_tasks")
    for status, _, error in answers:
        assert status == 413, error
        assert error["ErrorType"] == "RequestEntityTooLargeException"
        assert "at most 2" in error["ErrorMessage"]
        assert "Use ForceResyncBatchTask" in error["ErrorMessage"]
    assert tasks == 0


async def test_a_task_that_does_not_end_in_time_gets_an_answer_naming_it(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    await seed(db, stores)
    settings = settings_for(database, broker_prefix, stores, sync_timeout=0.5)
    async with Service(settings, engine=False) as service:  # no workers: the task stays New
        started = time.monotonic()
        status, headers, body = await post(service, "ForceResync", {"InternalKeyIds": [1]})
        elapsed = time.monotonic() - started
    task_id = headers["X-Batch-Task-Id"]
    assert status == 200
    assert (body["IsOk"], body["Status"], body["ErrorCode"]) == (False, "Error", "ResyncTimeout")
    assert f"batch task {task_id}" in body["UserExplanation"]
    assert f"GetBatchTaskInfo?id={task_id}" in body["TechExplanation"]
    assert headers["Location"].endswith(f"GetBatchTaskInfo?id={task_id}")
    assert 0.5 <= elapsed < 10


# SuperOffice's sample requests (its reference pages), byte for byte but for the host.
SAMPLES = {
    "ForceResync": '{\n  "ErpConnectionId": 293,\n  "InternalKeyIds": [\n    670,\n    47\n  ]\n}',
    "ForceResyncNoBlankValues": (
        '{\n  "ErpConnectionId": 867,\n  "InternalKeyIds": [\n    317,\n    26\n  ]\n}'
    ),
    "ForceResyncExternal": (
        '{\n  "ErpConnectionId": 116,\n  "ErpActorType": "Customer",\n  "ExternalKeys": [\n'
        '    "nam",\n    "porro"\n  ]\n}'
    ),
    "ForceResyncExternalNoBlankValues": (
        '{\n  "ErpConnectionId": 237,\n  "ErpActorType": "Customer",\n  "ExternalKeys": [\n'
        '    "voluptatem",\n    "placeat"\n  ]\n}'
    ),
}
LANGUAGES = {
    "ForceResync": "en",
    "ForceResyncNoBlankValues": "fr,de,ru,zh",
    "ForceResyncExternal": "*",
    "ForceResyncExternalNoBlankValues": "*",
}
SAMPLE_CONNECTION = {
    "ForceResync": 293,
    "ForceResyncNoBlankValues": 867,
    "ForceResyncExternal": 116,
    "ForceResyncExternalNoBlankValues": 237,
}


def as_xml(name: str, data: dict[str, Any]) -> str:
    """A sample's body in the DataContract XML a SuperOffice client sends."""
    parts = [f"<ErpConnectionId>{data['ErpConnectionId']}</ErpConnectionId>"]
    if "ErpActorType" in data:
        parts.append(f"<ErpActorType>{data['ErpActorType']}</ErpActorType>")
        items = "".join(f"<string>{k}</string>" for k in data["ExternalKeys"])
        parts.append(f"<ExternalKeys>{items}</ExternalKeys>")
    else:
        items = "".join(f"<int>{k}</int>" for k in data["InternalKeyIds"])
        parts.append(f"<InternalKeyIds>{items}</InternalKeyIds>")
    return f"<{name}>{''.join(parts)}</{name}>"


def sample_headers(name: str, kind: str) -> dict[str, str]:
    mime = f"application/{kind}; charset=utf-8"
    return {**AUTH, "Accept": mime, "Accept-Language": LANGUAGES[name], "Content-Type": mime}


@pytest.mark.parametrize("name", list(SAMPLES))
async def test_superoffice_samples_verbatim_get_the_documented_error_for_their_connection(
    front_door: Service, name: str
) -> None:
    """The samples name connections this service does not have: 404, SuperOffice's error."""
    url = f"{ERPSYNC}/{name}"
    connection_id = SAMPLE_CONNECTION[name]
    response = await front_door.client.post(
        url, data=SAMPLES[name].encode(), headers=sample_headers(name, "json")
    )
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {
        "Error": True,
        "ErrorType": "SoNotFoundException",
        "ErrorMessage": f"ErpConnectionId {connection_id} is not a known connection",
        "ErrorSource": "erpsync",
    }
    response = await front_door.client.post(
        url,
        data=as_xml(name, json.loads(SAMPLES[name])).encode(),
        headers=sample_headers(name, "xml"),
    )
    assert response.status == 404
    root = fromstring(await response.read())
    assert root.tag == "ErrorInfo"
    assert {c.tag: c.text for c in root}["ErrorType"] == "SoNotFoundException"


@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("kind", ["json", "xml"])
async def test_superoffice_samples_with_demo_ids_answer_a_plugin_response(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    name: str,
    kind: str,
) -> None:
    """The samples with this service's connection 1: first with the sample's keys (unknown
    here: the PluginResponse with IsOk false and the reason), then with keys of the seeded
    records (IsOk true)."""
    await seed(db, stores)
    data = json.loads(SAMPLES[name])
    data["ErpConnectionId"] = 1
    known = dict(data)
    if "ExternalKeys" in data:
        known["ExternalKeys"] = ["E1-1", "E1-2"]
    else:
        known["InternalKeyIds"] = [1, 2]
    answers = []
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        for body in (data, known):
            text = json.dumps(body, indent=2) if kind == "json" else as_xml(name, body)
            response = await service.client.post(
                f"{ERPSYNC}/{name}", data=text.encode(), headers=sample_headers(name, kind)
            )
            assert response.status == 200, await response.text()
            answers.append((response.content_type, await response.read()))
    results = []
    for content_type, raw in answers:
        if kind == "json":
            assert content_type == "application/json"
            answer = json.loads(raw)
            assert set(answer) == PLUGIN_RESPONSE
            results.append((answer["IsOk"], answer["ErrorCode"]))
        else:
            assert content_type == "application/xml"
            root = fromstring(raw)
            assert root.tag == "PluginResponse"
            assert {c.tag for c in root} == PLUGIN_RESPONSE
            fields = {c.tag: c for c in root}
            assert fields["Changes"].get(XSI_NIL) == "true"
            results.append((fields["IsOk"].text == "true", fields["ErrorCode"].text or ""))
    unknown = "UnknownExternalKeys" if "External" in name else "UnknownInternalKeys"
    assert results == [(False, unknown), (True, "")]


async def test_the_new_urls_share_the_front_doors_methods_auth_and_content_types(
    front_door: Service,
) -> None:
    body = {"ErpConnectionId": 9, "ErpActorType": "Customer", "ExternalKeys": ["a"]}
    for name in SAMPLES:
        url = f"{ERPSYNC}/{name}"
        response = await front_door.client.get(url, headers=AUTH)
        assert response.status == 405, name
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["ErrorType"] == "MethodNotAllowedException"
        response = await front_door.client.post(url, json=body)
        assert response.status == 401, name
        assert "Basic" in response.headers["WWW-Authenticate"]
        response = await front_door.client.post(
            url, data=b"x", headers={**AUTH, "Content-Type": "text/plain"}
        )
        assert response.status == 415, name

    client = front_door.client
    login = await client.post("/api/session/login", json={"Username": "tje0", "Password": "Tje0"})
    assert login.status == 204
    xsrf = login.cookies["XSRF-TOKEN"].value
    url = f"{ERPSYNC}/ForceResyncExternal"
    missing = await client.post(url, json=body)
    assert missing.status == 401
    right = await client.post(url, json=body, headers={"X-XSRF-TOKEN": xsrf})
    assert right.status == 404  # authenticated: connection 9 is unknown
    assert (await right.json())["ErrorMessage"] == "ErpConnectionId 9 is not a known connection"


async def test_a_published_command_with_no_blank_values_keeps_non_blank_targets(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> None:
    """Another service's command on RabbitMQ carries the flag too (docs/messages.md)."""
    await seed(db, stores)
    stores[0].put("Contact", "1", {"name": "Co 1", "phone": "", "email": "1@c"})
    body = b'{"ErpConnectionId": 0, "InternalKeyIds": [1], "NoBlankValues": true}'
    async with Service(settings_for(database, broker_prefix, stores)) as service:
        await services.publish_command(broker_prefix, body, "no-blank-1")
        task_id = await wait_for(
            lambda: db.fetchval("SELECT id FROM batch_tasks WHERE message_id = 'no-blank-1'"),
            what="the published command's task",
        )
        info = await service.finished(task_id)
        rows = await sync_log(db, task_id)
    assert info["State"] == "Succeeded", info
    assert '"NoBlankValues":true' in info["Request"]
    assert stores[1].get("Customer", "E1-1")["phone"] == "old"  # type: ignore[index]
    assert stores[2].get("Customer", "E2-1")["tel"] == "old"  # type: ignore[index]
    assert {r[2] for r in rows} == {"name", "company", "mail"}  # no phone, no tel
