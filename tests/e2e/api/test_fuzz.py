"""Schema-driven fuzzing of the front door: hypothesis builds requests from the OpenAPI document
(paths, methods, property names, content types, headers) plus hostile noise, against the real
service. No request may get a 5xx, an undocumented status, or a malformed error body.

Bounded: ``FUZZ_EXAMPLES`` requests (default 400, about 15-30 s here), no example database.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api import openapi
from tests.support.api import TICKET, basic, make_jwt
from tests.support.service import Service

DOCUMENT = openapi.document()
PATHS = sorted(DOCUMENT["paths"])
AGENT_PATHS = [p for p in PATHS if p.startswith("/api/v1/")]
PROPERTIES = ["ErpConnectionId", "InternalKeyIds", "Id", "Name", "State", "Username", "Password"]
CONTENT_TYPES = [
    "application/json",
    "text/json",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/xml",
    "text/xml",
    "application/x-www-form-urlencoded",
    "application/json; charset=utf-8",
    "text/xml; charset=iso-8859-1",
    "application/json; charset=utf-16",
    "application/json; charset=nonsense",
    "text/plain",
    "multipart/form-data",
    "application/octet-stream",
    "",
]
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)

names = st.one_of(
    st.sampled_from(PROPERTIES).flatmap(
        lambda p: st.sampled_from([p, p.lower(), p.upper(), p.swapcase()])
    ),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["0", "1", "-1", "589", "All", "Failed", "99999", "1,2", ""]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(names, children, max_size=5)
    ),
    max_leaves=20,
)
json_bodies = st.one_of(st.dictionaries(names, json_values, max_size=6), json_values).map(
    lambda v: json.dumps(v).encode()
)


def _xml_value(value: Any) -> str:
    if isinstance(value, list):
        return "".join(f"<int>{escape(str(item))}</int>" for item in value)
    return escape(str(value))


xml_bodies = st.lists(
    st.tuples(st.sampled_from(PROPERTIES), st.one_of(scalars, st.lists(scalars, max_size=4))),
    max_size=5,
).map(
    lambda items: (
        "<r xmlns:a='http://schemas.microsoft.com/2003/10/Serialization/Arrays'>"
        + "".join(f"<{name}>{_xml_value(value)}</{name}>" for name, value in items)
        + "</r>"
    ).encode()
)
form_bodies = st.lists(
    st.tuples(
        st.one_of(names, st.sampled_from(["InternalKeyIds[0]", "InternalKeyIds[]", "%zz"])),
        st.one_of(ASCII, st.sampled_from(["1", "2,3", "-4", "x"])),
    ),
    max_size=6,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass"))
raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [b"", b"{", b"<r>", b'<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>', b"\xef\xbb\xbf{}", b"[]"]
    ),
)
bodies = st.one_of(json_bodies, xml_bodies, form_bodies, raw_bodies)

GOOD_AUTH = [
    basic("tje0", "Tje0"),
    {"Authorization": f"SOTicket {TICKET}"},
]
auth_headers = st.one_of(
    st.sampled_from(GOOD_AUTH),
    st.builds(lambda: {"Authorization": f"Bearer {make_jwt()}"}),
    st.sampled_from(["Basic", "SOTicket", "Bearer", "Digest", ""]).flatmap(
        lambda scheme: ASCII.map(lambda value: {"Authorization": f"{scheme} {value}".strip()})
    ),
    ASCII.map(lambda v: {"Authorization": "Basic " + base64.b64encode(v.encode()).decode()}),
    ASCII.map(lambda v: {"Cookie": f"erpsync_session={v}", "X-XSRF-TOKEN": v}),
    st.just({}),
)
optional_headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(
            ["application/xml", "text/xml;q=0.9, application/json;q=0.1", "*/*", "x/y;q=abc", ""]
        ),
        "Idempotency-Key": ASCII,
        "SO-AppToken": ASCII,
        "X-XSRF-TOKEN": ASCII,
    },
)
queries: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"$select": st.one_of(ASCII, st.sampled_from(["Id,State", "a/b"]))}),
    st.fixed_dictionaries({"id": ASCII}),
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.one_of(st.sampled_from(PATHS), st.sampled_from(AGENT_PATHS)))
    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH"]))
    headers = {**draw(auth_headers), **draw(optional_headers)}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "method": method,
        "path": path,
        # Path parameters are ids; a non-numeric one simply matches no route.
        "url": path.replace("{id}", str(draw(st.integers(min_value=1, max_value=2**31)))),
        "headers": headers,
        "params": draw(queries),
        "data": draw(bodies),
    }


def documented_statuses(path: str, method: str) -> set[int]:
    operation = DOCUMENT["paths"][path].get(method.lower())
    if operation is None:
        return {401, 405}  # auth runs before routing on /api/
    return {int(status) for status in operation["responses"]} | {401}


EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_no_request_gets_a_5xx_or_an_undocumented_answer(
    front_door: Service, request: dict[str, Any]
) -> None:
    response = await front_door.client.request(
        request["method"],
        request["url"],
        headers=request["headers"],
        params=request["params"],
        data=request["data"],
    )
    body = await response.read()
    assert response.status < 500, (response.status, body[:500])
    assert response.status in documented_statuses(request["path"], request["method"]), (
        response.status,
        body[:300],
    )
    if response.status >= 400:
        if response.content_type == "application/xml":
            assert b"<ErrorInfo" in body and b"<ErrorMessage>" in body
        else:
            error = json.loads(body)
            assert set(error) == {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
            assert "Traceback" not in error["ErrorMessage"]
