"""The ``superoffice`` connector's own behaviour against the fake SuperOffice WebAPI: batched
reads, minimal JSON Patches, ticket renewal, Retry-After, metadata and secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from connectors import (
    Actor,
    ConfigurationError,
    FieldsInput,
    FieldType,
    GetActorsInput,
    ListItemsInput,
    PermanentError,
    SaveActorsInput,
    TransientError,
)
from connectors.superoffice import SuperOfficeConfig, SuperOfficeConnector
from connectors.testing import make_context
from connectors.testing.fake_erp import Fault
from connectors.testing.superoffice_fake import SYSTEM_USER_PATH, Credentials, SuperOfficeFake
from tests.support.superoffice import (
    APP_TOKEN,
    PARTNER_PEM,
    PASSWORD,
    SYSTEM_USER_TOKEN,
    basic_settings,
    online_credentials,
    system_user_settings,
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[SuperOfficeFake]:
    credentials = online_credentials()
    credentials.users["erpsync"] = PASSWORD
    async with SuperOfficeFake(credentials) as server:
        yield server


def connector(settings: dict[str, Any]) -> SuperOfficeConnector:
    settings.setdefault("app_token", APP_TOKEN)
    return SuperOfficeConnector(SuperOfficeConfig.model_validate(settings), make_context(0))


async def test_reads_a_batch_in_one_archive_query_per_page(fake: SuperOfficeFake) -> None:
    ids = [fake.put("Contact", {"name": f"C{n}", "category": 1}) for n in range(250)]
    so = connector(basic_settings(fake, page_size=200))
    await so.open()
    try:
        got = await so.get_actors(
            GetActorsInput("Contact", [str(i) for i in ids] + ["999999"], ["name", "category"])
        )
    finally:
        await so.aclose()
    assert [a.key for a in got.actors] == [str(i) for i in ids]
    assert got.actors[0].fields == {"name": "C0", "category": "1"}
    reads = fake.calls("GET")
    assert len(reads) == 2, [r.query for r in reads]
    assert reads[0].query["$select"] == "contactId,updatedDate,name,category"
    assert reads[0].query["$mode"] == "FULL"
    assert reads[0].query["$filter"].startswith("contactId oneOf (")


async def test_a_save_patches_only_the_given_fields_once_per_record(fake: SuperOfficeFake) -> None:
    first = fake.put("Contact", {"name": "Old", "orgNr": "1", "contactUdef/SuperOffice:1": "K-1"})
    second = fake.put("Contact", {"name": "Other", "orgNr": "2"})
    so = connector(basic_settings(fake))
    await so.open()
    try:
        result = await so.save_actors(
            SaveActorsInput(
                "Contact",
                [
                    Actor("Contact", str(first), {"name": "New", "category": "3"}),
                    Actor("Contact", str(second), {"SuperOffice:2": "5000"}),
                ],
            )
        )
    finally:
        await so.aclose()
    assert not result.failures
    patches = {r.path: r.body for r in fake.calls("PATCH")}
    assert patches == {
        f"/api/v1/Contact/{first}": [
            {"op": "replace", "path": "/name", "value": "New"},
            {"op": "replace", "path": "/category/Id", "value": 3},
        ],
        f"/api/v1/Contact/{second}": [
            {"op": "replace", "path": "/UserDefinedFields/SuperOffice:2", "value": 5000},
        ],
    }
    record = fake.get("Contact", first)
    assert record is not None
    assert (record["name"], record["orgNr"], record["category"]) == ("New", "1", 3)
    assert record["contactUdef/SuperOffice:1"] == "K-1"  # not mapped, not touched


async def test_an_expired_ticket_is_renewed_once_and_the_call_retried_once(
    fake: SuperOfficeFake, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    key = fake.put("Person", {"firstname": "Kari"})
    so = connector(system_user_settings(fake))
    await so.open()
    try:
        await so.get_actors(GetActorsInput("Person", [str(key)], ["firstname"]))
        issued = set(fake.credentials.tickets)
        fake.expire_tickets()
        got = await so.get_actors(GetActorsInput("Person", [str(key)], ["firstname"]))
    finally:
        await so.aclose()
    assert got.actors[0].fields == {"firstname": "Kari"}
    logins = [r for r in fake.requests if r.path == SYSTEM_USER_PATH]
    assert len(logins) == 2  # the first ticket, then one renewal
    statuses = [r.status for r in fake.calls("GET")]
    assert statuses == [200, 401, 200]  # one 401, one retry
    captured = capfd.readouterr()
    shown = captured.out + captured.err + caplog.text + repr([r.__dict__ for r in caplog.records])
    for secret in [*issued, *fake.credentials.tickets, APP_TOKEN, SYSTEM_USER_TOKEN, PASSWORD]:
        assert secret not in shown
    assert PARTNER_PEM.splitlines()[1] not in shown


async def test_a_refused_renewal_is_a_configuration_error_without_secrets(
    fake: SuperOfficeFake,
) -> None:
    so = connector(system_user_settings(fake))
    await so.open()
    try:
        await so.fields(FieldsInput("Contact"))
        fake.expire_tickets()
        fake.credentials.system_user_token = "revoked"
        with pytest.raises(ConfigurationError) as caught:
            await so.get_actors(GetActorsInput("Contact", ["1"]))
    finally:
        await so.aclose()
    assert "system user login refused" in caught.value.message
    for secret in (APP_TOKEN, SYSTEM_USER_TOKEN):
        assert secret not in str(caught.value)


async def test_retry_after_holds_every_request_back(fake: SuperOfficeFake) -> None:
    key = fake.put("Contact", {"name": "A"})
    so = connector(basic_settings(fake))
    await so.open()
    try:
        await so.fields(FieldsInput("Contact"))
        fake.add_fault(Fault(status=429, retry_after="2", method="GET"))
        with pytest.raises(TransientError) as caught:
            await so.get_actors(GetActorsInput("Contact", [str(key)]))
        assert caught.value.retry_after == 2
        assert "Injected" in caught.value.message or "injected" in caught.value.message
        got = await so.get_actors(GetActorsInput("Contact", [str(key)]))
    finally:
        await so.aclose()
    assert [a.key for a in got.actors] == [str(key)]
    first, second = fake.calls("GET")[-2:]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 2.0


async def test_rate_limited_fake_answers_429_with_retry_after() -> None:
    async with SuperOfficeFake(Credentials(users={"erpsync": PASSWORD}), rate_limit=5) as fake:
        so = connector(basic_settings(fake))
        await so.open()
        try:
            request = GetActorsInput("Contact", ["1"], ["name"])
            for _ in range(4):  # with the column metadata: 5 calls, the bucket's 5
                await so.get_actors(request)
            with pytest.raises(TransientError) as caught:
                await so.get_actors(request)
        finally:
            await so.aclose()
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert fake.throttled == 1


async def test_a_client_rate_limit_avoids_429s() -> None:
    async with SuperOfficeFake(Credentials(users={"erpsync": PASSWORD}), rate_limit=20) as fake:
        so = connector(basic_settings(fake, rate_limit=19))  # a little under the server's
        await so.open()
        try:
            t0 = time.monotonic()
            for _ in range(30):
                await so.get_actors(GetActorsInput("Contact", ["1"], ["name"]))
            elapsed = time.monotonic() - t0
        finally:
            await so.aclose()
    assert fake.throttled == 0
    assert elapsed >= 0.5  # 19 at once, then 11 more at 19/s


async def test_metadata_comes_from_the_api_with_udfs_and_lists(fake: SuperOfficeFake) -> None:
    so = connector(basic_settings(fake))
    await so.open()
    try:
        fields = {f.key: f for f in (await so.fields(FieldsInput("Contact"))).fields}
        items = (await so.list_items(ListItemsInput("category"))).items
    finally:
        await so.aclose()
    assert fields["SuperOffice:1"].display_name == "Customer number"
    assert fields["SuperOffice:2"].type is FieldType.Integer
    assert fields["category"].type is FieldType.List
    assert fields["category"].list_name == "category"
    assert "contactId" not in fields and "updatedDate" not in fields
    assert [(i.key, i.text) for i in items][:2] == [("1", "Customer"), ("2", "Prospect")]
    calls = [r.path for r in fake.calls()]
    assert calls.count("/api/v1/Agents/Archive/GetAvailableColumns") == 1


async def test_configured_fields_must_exist(fake: SuperOfficeFake) -> None:
    so = connector(basic_settings(fake, actor_types={"Contact": ["name", "nosuch"]}))
    await so.open()
    try:
        with pytest.raises(ConfigurationError, match="nosuch"):
            await so.fields(FieldsInput("Contact"))
    finally:
        await so.aclose()


def test_settings_refuse_credentials_in_urls() -> None:
    with pytest.raises(ValidationError):
        SuperOfficeConfig.model_validate(
            {
                "base_url": "https://user:pw@sod.superoffice.com/Cust1",
                "auth": {"type": "ticket", "ticket": "t"},
            }
        )
    config = SuperOfficeConfig.model_validate(
        {
            "base_url": "https://sod.superoffice.com/Cust1/",
            "auth": {"type": "ticket", "ticket": "7T:x"},
        }
    )
    assert config.base_url == "https://sod.superoffice.com/Cust1"
    assert "7T:x" not in repr(config) and "7T:x" not in config.model_dump_json()


async def test_udfs_by_label_and_list_items_by_name(fake: SuperOfficeFake) -> None:
    key = fake.put("Contact", {"name": "A", "category": 1, "contactUdef/SuperOffice:1": "K-1"})
    settings = basic_settings(fake, actor_types={"Contact": ["category", "Customer number"]})
    so = connector(settings)
    await so.open()
    try:
        fields = {f.key: f for f in (await so.fields(FieldsInput("Contact"))).fields}
        got = await so.get_actors(GetActorsInput("Contact", [str(key)]))
        result = await so.save_actors(
            SaveActorsInput(
                "Contact",
                [Actor("Contact", str(key), {"category": "vendor", "Customer number": "K-2"})],
            )
        )
        bad = await so.save_actors(
            SaveActorsInput("Contact", [Actor("Contact", str(key), {"category": "Nobody"})])
        )
    finally:
        await so.aclose()
    assert set(fields) == {"category", "Customer number"}
    assert fields["Customer number"].description == "contactUdef/SuperOffice:1"
    assert got.actors[0].fields == {"category": "1", "Customer number": "K-1"}
    assert not result.failures
    assert fake.calls("PATCH")[0].body == [
        {"op": "replace", "path": "/category/Id", "value": 3},
        {"op": "replace", "path": "/UserDefinedFields/SuperOffice:1", "value": "K-2"},
    ]
    assert [f.message for f in bad.failures] == ["field 'category': no item 'Nobody' in list"]
    assert len(fake.calls("PATCH")) == 1


async def test_odata_next_links_are_followed_on_the_same_origin_only() -> None:
    async with SuperOfficeFake(Credentials(users={"erpsync": PASSWORD}), page_size=2) as fake:
        ids = [str(fake.put("Contact", {"name": f"C{n}"})) for n in range(5)]
        so = connector(basic_settings(fake))
        await so.open()
        try:
            got = await so.get_actors(GetActorsInput("Contact", ids, ["name"]))
            assert [a.key for a in got.actors] == ids
            assert [r.query.get("$skip") for r in fake.calls("GET")] == [None, "2", "4"]
            elsewhere = {"value": [], "odata.nextLink": "http://elsewhere.example/api/v1/Contact"}
            with pytest.raises(PermanentError, match="nextLink leaves"):
                so._next(elsewhere, "Contact")
        finally:
            await so.aclose()


async def test_calls_that_meet_an_expired_ticket_together_share_one_renewal(
    fake: SuperOfficeFake,
) -> None:
    key = fake.put("Contact", {"name": "A"})
    so = connector(system_user_settings(fake))
    await so.open()
    try:
        request = GetActorsInput("Contact", [str(key)], ["name"])
        await so.get_actors(request)
        fake.expire_tickets()
        results = await asyncio.gather(*(so.get_actors(request) for _ in range(5)))
    finally:
        await so.aclose()
    assert all(len(r.actors) == 1 for r in results)
    assert len([r for r in fake.requests if r.path == SYSTEM_USER_PATH]) == 2
    statuses = [r.status for r in fake.calls("GET")]
    assert 1 <= statuses.count(401) <= 5 and statuses.count(200) == 6  # each retried once
