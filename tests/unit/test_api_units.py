"""Unit tests of the front door's pure parts: negotiation, $select, form/XML binding, JWT."""

from __future__ import annotations

import time

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from engine.api.auth import verify_jwt
from engine.api.bodies import (
    LIST_PROPERTIES,
    PROPERTIES,
    _depth,
    _form_arguments,
    _json_arguments,
    as_int,
    integer_text,
)
from engine.api.errors import ApiError
from engine.api.middleware import front_door_middleware
from engine.api.render import _quality, project, select_paths, to_xml
from engine.api.xmlbody import xml_arguments
from engine.observability.metrics import Metrics
from engine.settings import JwtSettings

SECRET = "unit-test-secret-0123456789abcdef0123"


@pytest.mark.parametrize(
    ("accept", "offer", "q"),
    [
        ("application/xml", "application/xml", 1.0),
        ("application/xml;q=0.3", "application/xml", 0.3),
        ("*/*;q=0.2, application/*;q=0.5", "application/xml", 0.5),
        ("text/*", "application/json", 0.0),
        ("application/json;q=nonsense", "application/json", 0.0),
        ("application/json;q=7", "application/json", 1.0),
    ],
)
def test_accept_quality(accept: str, offer: str, q: float) -> None:
    assert _quality(accept, offer) == q


def test_select_paths_and_projection() -> None:
    assert select_paths(MultiDict()) is None
    assert select_paths(MultiDict({"$select": " Id , a/B "})) == [["id"], ["a", "b"]]
    with pytest.raises(ValueError, match="not a property"):
        select_paths(MultiDict({"$select": "a,,b"}))
    data = {"Id": 1, "Name": "n", "A": {"B": 2, "C": 3}}
    assert project(data, [["id"], ["a", "b"]]) == {"Id": 1, "Name": None, "A": {"B": 2, "C": None}}
    assert project([data], [["name"]]) == [{"Id": None, "Name": "n", "A": None}]


def test_to_xml_renders_data_contract_style() -> None:
    xml = to_xml({"A": None, "B": True, "C": [1, 2], "D": [{"E": "x<y"}]}, "Root", "Item")
    assert xml == (
        b"<?xml version='1.0' encoding='utf-8'?>\n"
        b'<Root xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><A i:nil="true" />'
        b"<B>true</B><C><int>1</int><int>2</int></C><D><Item><E>x&lt;y</E></Item></D></Root>"
    )


def test_form_binding() -> None:
    assert _form_arguments("InternalKeyIds=1,2&internalkeyids[5]=3&InternalKeyIds[]=&x[y]=1") == {
        "internalkeyids": ["1", "2", "3"]
    }
    with pytest.raises(ApiError, match="more than once"):
        _form_arguments("Id=1&id=2")
    # a name no endpoint binds is ignored however often it comes
    assert _form_arguments("x=1&x=2&Id=3") == {"x": "1", "id": "3"}


def test_integer_text_accepts_what_json_schema_calls_an_integer() -> None:
    assert [integer_text(t) for t in ("5", " -12 ", "+7", "5.0", "5.000", "9" * 20)] == [
        5,
        -12,
        7,
        5,
        5,
        int("9" * 20),
    ]
    for text in ("5.5", "5.", "", "-", "1e3", "1_000", "٣", "9" * 21, "0x10", ".0"):
        assert integer_text(text) is None, text


def test_form_body_that_looks_like_json_gets_a_content_type_hint() -> None:
    with pytest.raises(ApiError, match="Content-Type: application/json"):
        _form_arguments('{"ErpConnectionId": 589}')
    with pytest.raises(ApiError) as plain:
        _form_arguments("a=1&b")
    assert "application/json" not in plain.value.message


def test_xml_list_property_repeated_as_elements_or_wrapping_items() -> None:
    repeated = b"<r><InternalKeyIds>574</InternalKeyIds><InternalKeyIds>137</InternalKeyIds></r>"
    wrapped = b"<r><InternalKeyIds><int>574</int><int>137</int></InternalKeyIds></r>"
    for body in (repeated, wrapped):
        assert xml_arguments(body, LIST_PROPERTIES, PROPERTIES) == {
            "internalkeyids": ["574", "137"]
        }
    unknown_twice = b"<r><x>1</x><x>2</x><Id>3</Id></r>"
    assert xml_arguments(unknown_twice, LIST_PROPERTIES, PROPERTIES) == {"id": "3"}
    with pytest.raises(ApiError, match="more than once"):
        xml_arguments(b"<r><Id>1</Id><Id>2</Id></r>", LIST_PROPERTIES, PROPERTIES)


def test_xml_binding_ignores_comments_and_reads_nil() -> None:
    body = (
        b"<r xmlns:i='http://www.w3.org/2001/XMLSchema-instance'><!-- c --><Id>5</Id>"
        b"<Name i:nil='true'/><Other><x>1</x></Other></r>"
    )
    assert xml_arguments(body, LIST_PROPERTIES, PROPERTIES) == {
        "id": "5",
        "name": None,
    }


def test_depth_and_int32() -> None:
    assert _depth(1) == 0 and _depth([]) == 1 and _depth({"a": [{"b": 1}]}) == 3
    assert (
        _depth([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]) == 33
    )
    assert as_int(" +7 ", "x") == 7
    for bad in ("1e3", "0x10", "١٢", "", "9" * 20, 2**31):
        with pytest.raises(ApiError):
            as_int(bad, "x")


def test_jwt_verification() -> None:
    settings = JwtSettings.model_validate(
        {
            "keys": [{"algorithm": "HS256", "key": SECRET}],
            "issuer": "iss",
            "audience": "aud",
            "leeway": 0,
            "user_claim": "preferred_username",
        }
    )
    now = int(time.time())
    claims = {"iss": "iss", "aud": "aud", "exp": now + 60, "preferred_username": "ada"}
    assert verify_jwt(settings, jwt.encode(claims, SECRET, algorithm="HS256")) == "ada"
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    with pytest.raises(ApiError, match="'exp'"):
        verify_jwt(settings, jwt.encode(no_exp, SECRET, algorithm="HS256"))
    with pytest.raises(ApiError, match="not a name"):
        verify_jwt(
            settings, jwt.encode({**claims, "preferred_username": 5}, SECRET, algorithm="HS256")
        )
    with pytest.raises(ApiError, match="no keys"):
        verify_jwt(JwtSettings(), "x.y.z")


async def test_an_unreachable_backend_is_a_503_not_a_500() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    async def crashing(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application(middlewares=[front_door_middleware(Metrics(), None)])
    app.router.add_post("/db", broken)
    app.router.add_post("/bug", crashing)
    async with TestClient(TestServer(app)) as client:
        down = await client.post("/db")
        bug = await client.post("/bug", headers={"Accept": "application/xml"})
        assert down.status == 503 and down.headers["Retry-After"] == "5"
        assert (await down.json())["ErrorType"] == "ServiceUnavailableException"
        assert bug.status == 500
        text = await bug.text()
        assert "<ErrorInfo" in text and "secret internals" not in text


@pytest.mark.parametrize(
    "body",
    [
        '{"ErpConnectionId": 0, "InternalKeyIds": [1, 2, 3]}',
        '{"a": [[[1]]]}',
        '{"ErpConnectionId": 0, "InternalKeyIds": [1, 2,}',  # invalid: same message, position
        "[1, 2]",  # not an object
        "[" * 40 + "]" * 40,  # too deep
    ],
)
def test_ascii_json_bytes_bind_as_the_decoded_text_does(body: str) -> None:
    """The ASCII fast path (bytes straight to orjson) answers as the decoded text does."""
    results: list[object] = []
    for given in (body, body.encode()):
        try:
            results.append(_json_arguments(given))
        except ApiError as exc:
            results.append((exc.status, exc.message))
    assert results[0] == results[1]


async def test_the_middleware_counts_every_answer_errors_and_redirects_included() -> None:
    """One middleware: the error JSON (with nosniff) and the metrics, by route template."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    metrics = Metrics()
    app = web.Application(middlewares=[front_door_middleware(metrics, None)])
    app.router.add_get("/moved/{id}", moved)
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/nowhere")
        redirect = await client.get("/moved/7", allow_redirects=False)
        assert missing.status == 404
        assert missing.headers["X-Content-Type-Options"] == "nosniff"
        assert (await missing.json())["ErrorType"] == "SoNotFoundException"
        assert redirect.status == 302

    def count(route: str, status: str) -> float | None:
        return metrics.registry.get_sample_value(
            "erpsync_http_requests_total", {"route": route, "method": "GET", "status": status}
        )

    assert count("unmatched", "404") == 1
    assert count("/moved/{id}", "302") == 1  # the template, not the path
