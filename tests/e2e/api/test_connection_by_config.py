"""TestConnectionByConfig over real HTTP and PostgreSQL: a memory connection (ERP 1) and a
``rest`` connection to the fake ERP with a bearer token (ERP 2), tested with other options.

Nothing is saved, the configured connections are untouched, and a configured secret never goes
into a test: another URL without credentials is tested without any.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from connectors.testing.fake_erp import Auth, FakeErp, Fault
from engine.settings import ConnectionSettings
from tests.e2e.api.test_access import LIMITED, access_settings
from tests.support.rest import TOKEN, rest_settings
from tests.support.service import AUTH, Service
from tests.support.settings import customers

URL = "/api/v1/Agents/ErpSync/TestConnectionByConfig"
JSON = {**AUTH, "Accept": "application/json"}
XML = {**AUTH, "Accept": "application/xml", "Content-Type": "application/xml; charset=utf-8"}
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
WRONG = "wr0ng-t0ken-never-echoed"
BEARER = {"auth__type": "bearer", "auth__token": TOKEN}


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp(auth=Auth("bearer", TOKEN)) as server:
        yield server


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeErp]:
    """Another server a caller could point a test at, taking the configured token: a test there
    passes only if that token were sent."""
    async with FakeErp(auth=Auth("bearer", TOKEN)) as server:
        yield server


@pytest.fixture
async def service(
    database: str,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    rsa_key: rsa.RSAPrivateKey,
    erp: FakeErp,
) -> AsyncIterator[Service]:
    """The front door (no workers); ERP 2 is a rest connection to ``erp`` (timeout 1 s)."""
    base = access_settings(database, broker_prefix, stores, rsa_key)
    rest = ConnectionSettings(
        id=2,
        name="REST ERP",
        connector="rest",
        settings=rest_settings(erp),
        timeout=1.0,
        actor_types=customers(name="name both"),
    )
    connections = [rest if c.id == 2 else c for c in base.connections]
    async with Service(base.model_copy(update={"connections": connections}), engine=False) as s:
        yield s


async def post(service: Service, body: Any, headers: dict[str, str] = JSON) -> tuple[int, Any, str]:
    response = await service.client.post(URL, json=body, headers=headers)
    return (
        response.status,
        await response.json(),
        response.headers.get("X-Connection-Test-Message", ""),
    )


async def test_the_connectors_test_with_other_options_nothing_saved(
    service: Service, stores: dict[int, MemoryStore]
) -> None:
    store = stores[1].name
    assert await post(service, {"ErpConnectionId": 1}) == (200, True, f"memory store {store!r}")
    failing = {"ErpConnectionId": 1, "ConfigFields": {"Fail": "configuration"}}
    status, ok, message = await post(service, failing)
    assert (status, ok) == (200, False)
    assert message == f"memory store {store!r} is misconfigured"  # the connector's answer
    # values are text, coerced as the connector's model does (here a float)
    assert (await post(service, {"ErpConnectionId": 1, "ConfigFields": {"latency_ms": "1"}}))[1]
    # nothing was saved: the configured connection still passes its test
    response = await service.client.post(
        "/api/v1/Agents/ErpSync/TestConnectionById", json={"ErpConnectionId": 1}, headers=JSON
    )
    assert (response.status, await response.json()) == (200, True)


async def test_xml_bodies_bind_datacontract_and_soap_dictionaries(
    service: Service, stores: dict[int, MemoryStore]
) -> None:
    datacontract = (
        f'<TestConnectionByConfig xmlns:a="{ARRAYS}"><ErpConnectionId>1</ErpConnectionId>'
        "<ConfigFields><a:KeyValueOfstringstring><a:Key>fail</a:Key>"
        "<a:Value>transient</a:Value></a:KeyValueOfstringstring></ConfigFields>"
        "</TestConnectionByConfig>"
    )
    response = await service.client.post(URL, data=datacontract.encode(), headers=XML)
    assert response.status == 200 and response.content_type == "application/xml"
    assert (await response.text()).endswith(">false</boolean>")
    assert "is unavailable" in response.headers["X-Connection-Test-Message"]
    soap = (
        "<ErpSync:TestConnectionByConfig "
        'xmlns:ErpSync="http://www.superoffice.net/ws/crm/NetServer/Services88">'
        "<ErpSync:ErpConnectionId>1</ErpSync:ErpConnectionId><ErpSync:ConfigFields>"
        "<ErpSync:StringKeyValuePair><ErpSync:Key>store</ErpSync:Key>"
        f"<ErpSync:Value>{stores[2].name}</ErpSync:Value></ErpSync:StringKeyValuePair>"
        "</ErpSync:ConfigFields></ErpSync:TestConnectionByConfig>"
    )
    response = await service.client.post(URL, data=soap.encode(), headers=XML)
    assert response.status == 200
    assert (await response.text()).endswith(">true</boolean>")
    assert response.headers["X-Connection-Test-Message"] == f"memory store {stores[2].name!r}"


async def test_options_the_connector_does_not_take_are_refused_by_name(
    service: Service,
) -> None:
    status, error, _ = await post(
        service, {"ErpConnectionId": 1, "ConfigFields": {"ConfigFields1": "quis", "store": "s"}}
    )
    assert (status, error["ErrorType"]) == (400, "ArgumentException")
    assert error["ErrorMessage"].startswith(
        "ConfigFields has options connector 'memory' does not take: 'ConfigFields1'; "
        "its options: actor_types, fail"
    )
    status, error, _ = await post(
        service, {"ErpConnectionId": 1, "ConfigFields": {"latency_ms": "soon"}}
    )
    assert status == 400
    assert error["ErrorMessage"].startswith(
        "ConfigFields do not configure connector 'memory': latency_ms: Input should be a valid"
    )
    status, error, _ = await post(service, {"ErpConnectionId": 1, "ConfigFields": ["store"]})
    assert (status, error["ErrorMessage"]) == (
        400,
        "ConfigFields must be an object of option names to text values",
    )


async def test_unknown_and_forbidden_connections_as_test_connection_by_id(
    service: Service,
) -> None:
    status, error, _ = await post(service, {"ErpConnectionId": 0, "ConfigFields": {}})
    assert (status, error["ErrorMessage"]) == (404, "ErpConnectionId 0 is not a known connection")
    limited = {**LIMITED, "Accept": "application/json"}  # connection 1 only
    status, error, _ = await post(service, {"ErpConnectionId": 2, "ConfigFields": {}}, limited)
    assert (status, error["ErrorType"]) == (403, "SoSecurityException")
    assert (await post(service, {"ErpConnectionId": 1}, limited))[:2] == (200, True)


async def test_a_configured_secret_never_goes_into_a_test(
    service: Service, erp: FakeErp, elsewhere: FakeErp
) -> None:
    # the configured connection works with its token
    response = await service.client.post(
        "/api/v1/Agents/ErpSync/TestConnectionById", json={"ErpConnectionId": 2}, headers=JSON
    )
    assert (response.status, await response.json()) == (200, True)
    # another URL without credentials: tested there without any (the configured token stays)
    status, ok, message = await post(
        service, {"ErpConnectionId": 2, "ConfigFields": {"base_url": elsewhere.url}}
    )
    assert (status, ok) == (200, False) and "401" in message
    assert elsewhere.requests > 0
    # the credentials given: tested there with them
    body = {"ErpConnectionId": 2, "ConfigFields": {"base_url": elsewhere.url, **BEARER}}
    assert (await post(service, body))[:2] == (200, True)
    # the configured system with the right and a wrong token
    assert (await post(service, {"ErpConnectionId": 2, "ConfigFields": BEARER}))[:2] == (200, True)
    wrong = {"ErpConnectionId": 2, "ConfigFields": {**BEARER, "auth__token": WRONG}}
    with structlog.testing.capture_logs() as logs:
        response = await service.client.post(URL, json=wrong, headers=JSON)
        text = await response.text()
    assert (response.status, text) == (200, "false")
    message = response.headers["X-Connection-Test-Message"]
    assert message.startswith("configuration: get Customer: HTTP 401") and "auth" in message
    assert WRONG not in message and WRONG not in repr(logs)
    tested = [e for e in logs if e["event"] == "connection tested by config"]
    assert tested and tested[0]["options"] == ["auth__token", "auth__type"]


async def test_a_test_is_bounded_by_the_connections_timeout(service: Service, erp: FakeErp) -> None:
    erp.add_fault(Fault(delay=10.0))  # the next request hangs far beyond the timeout (1 s)
    started = time.monotonic()
    status, ok, message = await post(service, {"ErpConnectionId": 2, "ConfigFields": BEARER})
    assert (status, ok, message) == (200, False, "REST ERP: not connected within 1s")
    assert time.monotonic() - started < 5
