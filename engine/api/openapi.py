"""The OpenAPI 3.1 description of the front door, served at ``/openapi.json``.

``docs/openapi.json`` is this document written out (``python -m engine.api.openapi``); a test
keeps the two equal and checks the service against it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from connectors.model import CrmActorType, ErpActorType
from engine.api.bodies import SUPPORTED_TYPES
from engine.api.routes import BATCH_TASK_STATES

PATH = "/openapi.json"
REPO_COPY = Path("docs/openapi.json")

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON_XML = ("application/json", "application/xml")


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema} for media in _JSON_XML}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(_ERROR)}


def _body(ref: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {
        "required": False,
        "description": "JSON (any of the JSON media types), XML in the DataContract shape, or "
        "form data. Property names are case-insensitive; unknown properties are ignored.",
        "content": {media: {"schema": schema} for media in SUPPORTED_TYPES},
    }


_COMMON_ERRORS = {
    "400": _error("Malformed body or invalid argument; the message names the problem."),
    "401": _error("Missing or invalid credentials, or a session request without X-XSRF-TOKEN."),
    "403": _error(
        "The caller's user entry or application (auth.users/auth.apps `connections`) does not "
        "allow the connection named (ErpConnectionId) or the task's source connection; online "
        "mode: SO-AppToken missing or without the ErpSync grant (ErpSync calls); or a "
        "cross-site request riding the browser session."
    ),
    "405": _error("Only POST is allowed on agent URLs."),
    "413": _error("Body larger than server.max_body_bytes, or too many ids."),
    "415": _error("Unsupported Content-Type or charset."),
    "429": _error(
        "Too many failed password checks from this client (or for this user name): refused "
        "without checking the password until Retry-After seconds have passed."
    ),
    "503": _error("The database or the broker is unreachable; retry later (Retry-After)."),
}
# Text compared with stored text: PostgreSQL's text holds no NUL character (refused with 400).
NO_NUL = "^[^\\u0000]*$"
_SELECT_ITEM = "[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*"
_SELECT = {
    "name": "$select",
    "in": "query",
    "required": False,
    "description": "Comma-separated property names or paths (a/b). Other properties are "
    "returned as null; a name that is no property selects nothing. Validated (the pattern); "
    "no effect on 204 responses.",
    "schema": {
        "type": "string",
        "maxLength": 2000,
        "pattern": f"^ *({_SELECT_ITEM} *(, *{_SELECT_ITEM} *)*)?$",
    },
}
INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
_TASK_STATE = "(All|Unknown|New|Aquired|Started|Succeeded|Failed|SucceededManualCleanup)"
_AGENT_HEADERS = [
    {
        "name": "X-XSRF-TOKEN",
        "in": "header",
        "required": False,
        "description": "Required with the session cookie (no Authorization header).",
        "schema": {"type": "string"},
    },
    {
        "name": "SO-AppToken",
        "in": "header",
        "required": False,
        "description": "Application token; required for ErpSync calls in online mode.",
        "schema": {"type": "string"},
    },
]


def _agent(
    summary: str,
    body: str,
    responses: dict[str, Any],
    *,
    tag: str,
    extra_parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "post": {
            "tags": [tag],
            "summary": summary,
            "operationId": summary.split()[0],
            "parameters": [_SELECT, *_AGENT_HEADERS, *(extra_parameters or [])],
            "requestBody": _body(body),
            "responses": {**_COMMON_ERRORS, **responses},
        }
    }


def _task_agent(summary: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A Batch agent method taking a task ``Id``: 200 with ``schema``, 404 for an unknown task."""
    operation = _agent(
        summary,
        "IdRequest",
        {
            "200": {"description": description, "content": _content(schema)},
            "404": _error("No such task."),
        },
        tag="Batch",
    )
    operation["post"]["requestBody"]["required"] = True  # the Id has no default
    return operation


def _task_info_by_query() -> dict[str, Any]:
    """``GET GetBatchTaskInfo?id=N``: erpsync's extension, so the 204's Location answers GET."""
    task_id = {"name": "id", "in": "query", "required": True, "schema": INT32}
    return {
        "tags": ["Batch"],
        "summary": "GetBatchTaskInfo by query (erpsync's): the URL in ForceResync's Location",
        "operationId": "GetBatchTaskInfoByQuery",
        "parameters": [task_id, _SELECT, _AGENT_HEADERS[0]],
        "responses": {
            "200": {
                "description": "The task.",
                "content": _content({"$ref": "#/components/schemas/BatchTaskInfo"}),
            },
            **{status: _COMMON_ERRORS[status] for status in ("400", "401", "403", "503")},
            "404": _error("No such task."),
        },
    }


def _query(name: str, description: str, schema: dict[str, Any] = INT64) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _read(
    summary: str, operation: str, parameters: list[dict[str, Any]], schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "get": {
            "tags": ["Dashboard (read-only)"],
            "summary": summary,
            "operationId": operation,
            "parameters": [*_AGENT_HEADERS[:1], *parameters],
            "responses": {
                "200": {"description": "OK.", "content": {"application/json": {"schema": schema}}},
                "400": _error("An invalid query parameter; the message names it."),
                "401": _error("Missing or invalid credentials."),
                "404": _error("No such task."),
            },
        }
    }


def _dashboard_paths() -> dict[str, Any]:
    """The read-only endpoints behind the dashboard and the operator CLI (docs/operations.md)."""
    prefix = "/api/v1/erpsync"
    task_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1},
    }
    limit = _query(
        "limit", "Rows to return (1..1000).", {"type": "integer", "minimum": 1, "maximum": 1000}
    )
    connection = _query("connection", "Only this connection.", INT32)
    text = {"type": "string", "maxLength": 255, "pattern": NO_NUL}
    info = {"$ref": "#/components/schemas/BatchTaskInfo"}
    objects = {"type": "array", "items": {"type": "object"}}
    return {
        f"{prefix}/tasks": _read(
            "Batch tasks, newest first",
            "listTasks",
            [
                _query(
                    "state",
                    "Comma-separated BatchTaskState names (exact casing; All = any).",
                    {"type": "string", "pattern": f"^{_TASK_STATE}?(,{_TASK_STATE}?)*$"},
                ),
                limit,
                _query("before", "Only tasks with a smaller id (paging)."),
                _query("correlation_id", "Only tasks of commands with this CorrelationId.", text),
                _query("message_id", "Only the task of the command with this message id.", text),
            ],
            {"type": "array", "items": info},
        ),
        f"{prefix}/tasks/{{id}}": _read(
            "A task with its outcomes per target and first failures",
            "showTask",
            [task_id, limit],
            {
                "type": "object",
                "properties": {"Task": info, "Targets": objects, "Failures": objects},
                "required": ["Task", "Targets", "Failures"],
            },
        ),
        f"{prefix}/tasks/{{id}}/failures": _read(
            "A task's failed outcomes with reasons",
            "taskFailures",
            [task_id, limit, connection],
            objects,
        ),
        f"{prefix}/synclog": _read(
            "Field changes (old -> new), newest first",
            "syncLog",
            [
                _query("task", "Only this task."),
                _query("key", "Only this internal key."),
                connection,
                limit,
                _query("before", "Only rows with a smaller id (paging)."),
            ],
            objects,
        ),
        f"{prefix}/connections": _read(
            "Connections with their Active state, recent activity, health and breaker state",
            "connections",
            [],
            objects,
        ),
    }


def _idempotency_key(description: str) -> dict[str, Any]:
    """The optional ``Idempotency-Key`` header of a call that creates a task."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": f"{description} 1-255 printable ASCII characters.",
        "schema": {
            "type": "string",
            "maxLength": 255,
            "pattern": "^[!-~]([ -~]*[!-~])?$",
        },
    }


def _followup_paths() -> dict[str, Any]:
    """RetryFailed (erpsync's extension of the ErpSync agent) and the webhook deliveries."""
    retry = _agent(
        "RetryFailed: (erpsync's) a new task of exactly the records that failed in task Id; a "
        "record that failed on one target is pushed to that target only",
        "IdRequest",
        {
            "200": {
                "description": "Queued (broker confirmed): the new task's id.",
                "content": _content({"type": "integer", "format": "int64"}),
                "headers": {
                    "X-Batch-Task-Id": {
                        "schema": {"type": "integer"},
                        "description": "The new batch task id.",
                    },
                    "Location": {
                        "schema": {"type": "string"},
                        "description": "GetBatchTaskInfo?id=<new task id>.",
                    },
                },
            },
            "404": _error("No such task."),
            "409": _error(
                "The task has not finished yet, its source connection is inactive, every target "
                "its failed records would be pushed to is inactive (an inactive target is "
                "otherwise left out, named in the new task's description), or a request with "
                "the same Idempotency-Key is still being processed (Retry-After)."
            ),
            "422": _error(
                "The task has no failed records: nothing to retry; or the Idempotency-Key was "
                "used with a different request (IdempotencyException)."
            ),
            "503": _error("The broker did not confirm the command; nothing started."),
        },
        tag="ErpSync",
        extra_parameters=[
            _idempotency_key("Same key + same task Id: the same new task, nothing new.")
        ],
    )
    retry["post"]["requestBody"]["required"] = True
    delivery = {
        "type": "object",
        "properties": {
            "Id": {"type": "integer"},
            "TaskId": {"type": "integer"},
            "Webhook": {"type": "string"},
            "Attempts": {"type": "integer"},
            "LastStatus": {"type": ["integer", "null"]},
            "LastError": {"type": ["string", "null"]},
            "State": {"enum": ["pending", "delivered", "given_up"]},
            "NextAttempt": {"type": ["string", "null"], "format": "date-time"},
            "Delivered": {"type": ["string", "null"], "format": "date-time"},
            "GaveUp": {"type": ["string", "null"], "format": "date-time"},
            "Created": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "/api/v1/Agents/ErpSync/RetryFailed": retry,
        "/api/v1/erpsync/webhook-deliveries": _read(
            "Webhook deliveries of task.finished events, newest first",
            "webhookDeliveries",
            [
                _query(
                    "task_id",
                    "Only this task's.",
                    {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
                ),
                _query(
                    "limit",
                    "Rows to return (1..1000, default 100).",
                    {"type": "integer", "minimum": 1, "maximum": 1000},
                ),
            ],
            {"type": "array", "items": delivery},
        ),
        "/api/v1/erpsync/webhook-deliveries/{id}/resend": {
            "post": {
                "tags": ["ErpSync"],
                "summary": "Resend a given-up webhook delivery: due again, with max_attempts "
                "more POSTs",
                "operationId": "resendWebhookDelivery",
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "integer",
                            "format": "int64",
                            "minimum": 1,
                            "maximum": 2**63 - 1,
                        },
                    },
                    _AGENT_HEADERS[0],
                ],
                "responses": {
                    "200": {
                        "description": "Due again (State pending, Attempts 0).",
                        "content": {"application/json": {"schema": delivery}},
                    },
                    "400": _error("The id is not a delivery id."),
                    "401": _COMMON_ERRORS["401"],
                    "403": _COMMON_ERRORS["403"],
                    "404": _error("No such webhook delivery."),
                    "409": _error(
                        "The delivery is not given up (pending or delivered), or its webhook "
                        "is no longer configured."
                    ),
                    "503": _COMMON_ERRORS["503"],
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    task_id_header = {
        "X-Batch-Task-Id": {"schema": {"type": "integer"}, "description": "The batch task id."},
        "Location": {
            "schema": {"type": "string"},
            "description": "GetBatchTaskInfo?id=<task id>: answers GET (and POST).",
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "erpsync",
            "version": "1",
            "summary": "SuperOffice ERP Sync force resync, standalone.",
            "description": "See docs/api.md for content types, authentication and errors.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basic": []}, {"soTicket": []}, {"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/Agents/ErpSync/ForceResyncBatchTask": _agent(
                "ForceResyncBatchTask: resync from the CRM (ErpConnectionId <= 0) or an ERP "
                "connection to all other connections",
                "ForceResyncRequest",
                {
                    "204": {
                        "description": "Queued (broker confirmed).",
                        "headers": task_id_header,
                    },
                    "404": _error("ErpConnectionId is not a configured connection."),
                    "409": _error(
                        "The source connection is inactive (ToggleErpConnectionActive), or the "
                        "same Idempotency-Key is still being processed."
                    ),
                    "422": _error("Idempotency-Key reused with a different request."),
                    "503": _error("The broker did not confirm the command; nothing started."),
                },
                tag="ErpSync",
                extra_parameters=[
                    _idempotency_key("Same key + same command: same task, nothing new.")
                ],
            ),
            "/api/v1/Agents/Batch/GetBatchTaskInfo": {
                **_task_agent(
                    "GetBatchTaskInfo: one batch task",
                    "The task.",
                    {"$ref": "#/components/schemas/BatchTaskInfo"},
                ),
                "get": _task_info_by_query(),
            },
            "/api/v1/Agents/Batch/GetBatchTaskInfosByNameAndState": _agent(
                "GetBatchTaskInfosByNameAndState: tasks by name and state, newest first "
                "(at most 1000)",
                "NameAndStateRequest",
                {
                    "200": {
                        "description": "The tasks.",
                        "content": _content(
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/BatchTaskInfo"},
                            }
                        ),
                    }
                },
                tag="Batch",
            ),
            "/api/v1/Agents/Batch/StopBatchJob": _task_agent(
                "StopBatchJob: stop a running task between chunks",
                "true when stopped now; false when already finished.",
                {"type": "boolean"},
            ),
            "/api/session/login": {
                "post": {
                    "tags": ["Session"],
                    "summary": "Log in: sets erpsync_session (HttpOnly) and XSRF-TOKEN cookies",
                    "operationId": "login",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/LoginRequest"}
                            }
                        },
                    },
                    "responses": {
                        "204": {"description": "Logged in; cookies set."},
                        "400": _error("Username or Password missing or malformed."),
                        "401": _error("Wrong user name or password."),
                        "429": _error(
                            "Too many failed logins from this client or for this user name; "
                            "retry after Retry-After seconds."
                        ),
                        "413": _error("Body larger than server.max_body_bytes."),
                        "415": _error("Unsupported Content-Type."),
                    },
                }
            },
            "/api/session": {
                "get": {
                    "tags": ["Session"],
                    "summary": "The logged-in user",
                    "operationId": "session",
                    "security": [{"session": []}],
                    "responses": {
                        "200": {
                            "description": "Logged in.",
                            "content": _content(
                                {
                                    "type": "object",
                                    "properties": {"User": {"type": "string"}},
                                    "required": ["User"],
                                }
                            ),
                        },
                        "401": _error("Not logged in."),
                    },
                }
            },
            "/api/session/logout": {
                "post": {
                    "tags": ["Session"],
                    "summary": "Log out (needs X-XSRF-TOKEN); the session and token end",
                    "operationId": "logout",
                    "security": [{"session": []}],
                    "parameters": [_AGENT_HEADERS[0]],
                    "responses": {
                        "204": {"description": "Logged out; cookies cleared."},
                        "401": _error("No session, or the XSRF token does not match."),
                    },
                }
            },
            "/api/session/ticket": {
                "post": {
                    "tags": ["Session"],
                    "summary": "Issue an SOTicket for the caller (sessions.ticket_ttl seconds)",
                    "operationId": "ticket",
                    "responses": {
                        "200": {
                            "description": "The ticket (send as 'Authorization: SOTicket <t>').",
                            "content": _content(
                                {
                                    "type": "object",
                                    "properties": {
                                        "Ticket": {"type": "string"},
                                        "Expires": {"type": "string", "format": "date-time"},
                                    },
                                    "required": ["Ticket", "Expires"],
                                }
                            ),
                        },
                        "400": _error("Malformed body (the body is optional and unused)."),
                        "401": _error("Not authenticated."),
                        "413": _error("Body larger than server.max_body_bytes."),
                        "415": _error("Unsupported Content-Type."),
                    },
                }
            },
            **_dashboard_paths(),
            **_followup_paths(),
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic", "description": "Onsite only."},
                "soTicket": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'SOTicket <ticket>' (scheme name in any casing).",
                },
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "erpsync_session",
                    "description": "Plus header X-XSRF-TOKEN equal to the XSRF-TOKEN cookie.",
                },
            },
            "schemas": {
                "ForceResyncRequest": {
                    "type": "object",
                    "properties": {
                        "ErpConnectionId": {
                            "type": "integer",
                            "format": "int32",
                            "default": 0,
                            "description": "<= 0: from the CRM; > 0: from that connection.",
                        },
                        "InternalKeyIds": {
                            "type": "array",
                            "items": {"type": "integer", "format": "int32", "minimum": 1},
                            "default": [],
                            "description": "Internal keys to resync; empty = all linked "
                            "records. Duplicates are dropped.",
                        },
                    },
                    "example": {"ErpConnectionId": 589, "InternalKeyIds": [574, 137]},
                },
                "IdRequest": {
                    "type": "object",
                    "properties": {"Id": {"type": "integer", "format": "int32"}},
                    "required": ["Id"],
                },
                "NameAndStateRequest": {
                    "type": "object",
                    "properties": {
                        "Name": {"type": ["string", "null"], "maxLength": 255, "pattern": NO_NUL},
                        "State": {
                            "description": "A BatchTaskState name (any casing) or its number; "
                            "missing, empty or All: any state.",
                            "enum": [
                                *BATCH_TASK_STATES,
                                *BATCH_TASK_STATES.values(),
                                *(str(number) for number in BATCH_TASK_STATES.values()),
                                "",
                                None,
                            ],
                        },
                        "CorrelationId": {
                            "type": ["string", "null"],
                            "maxLength": 255,
                            "pattern": NO_NUL,
                            "description": "erpsync's: only tasks of commands published with "
                            "this CorrelationId (messages.md).",
                        },
                        "MessageId": {
                            "type": ["string", "null"],
                            "maxLength": 255,
                            "pattern": NO_NUL,
                            "description": "erpsync's: only the task of the command message "
                            "with this message id.",
                        },
                    },
                },
                "LoginRequest": {
                    "type": "object",
                    "properties": {
                        "Username": {
                            "type": "string",
                            "maxLength": 255,
                            "description": "An empty or unknown name is a failed login (401).",
                        },
                        "Password": {"type": "string", "maxLength": 1024},
                    },
                    "required": ["Username", "Password"],
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "Error": {"const": True},
                        "ErrorType": {"type": "string"},
                        "ErrorMessage": {"type": "string"},
                        "ErrorSource": {"type": "string"},
                    },
                    "required": ["Error", "ErrorType", "ErrorMessage", "ErrorSource"],
                },
                "BatchTaskInfo": _batch_task_info_schema(),
            },
        },
    }
    _force_resync_synchronous(doc)
    _add_links(doc)
    _add_readthrough(doc)
    _engine_control(doc)
    _with_parser_errors(doc["paths"])
    _with_login_throttle(doc["paths"])
    return doc


def _force_resync_synchronous(doc: dict[str, Any]) -> None:
    """ForceResync, ForceResyncNoBlankValues, ForceResyncExternal(NoBlankValues): run the
    resync and answer SuperOffice's PluginResponse when its task has ended (issue 17)."""
    headers = {
        "X-Batch-Task-Id": {
            "schema": {"type": "integer"},
            "description": "The batch task that ran (absent when none was created).",
        },
        "Location": {
            "schema": {"type": "string"},
            "description": "GetBatchTaskInfo?id=<task id>, when a task was created.",
        },
    }
    answer = {
        "200": {
            "description": "PluginResponse: IsOk true when the task succeeded; false with "
            "ErrorCode ResyncFailed, ResyncStopped, UnknownInternalKeys, UnknownExternalKeys "
            "(nothing resynced), or ResyncTimeout (server.sync_timeout passed; the task goes "
            "on, follow it with GetBatchTaskInfo).",
            "headers": headers,
            "content": _content({"$ref": "#/components/schemas/PluginResponse"}),
        },
        "413": _error(
            "Body larger than server.max_body_bytes, or more records (ids, ERP keys, or all "
            "linked records of the source) than server.sync_max_keys: use ForceResyncBatchTask."
        ),
        "409": _error(
            "The source connection is inactive (ToggleErpConnectionActive); nothing started."
        ),
        "503": _error("The broker did not confirm the command; nothing started."),
    }
    by_internal = {
        **answer,
        "404": _error("ErpConnectionId is not a configured connection."),
    }
    by_external = {
        **answer,
        "404": _error(
            "ErpConnectionId is not a configured connection, or ErpActorType is not one of its "
            "ERP actor types."
        ),
    }
    no_blank = (
        " A blank source value (null or the empty string) never overwrites a non-blank "
        "target value, per field, at every hop (source to CRM, CRM to targets)."
    )
    operations = {
        "ForceResync": ("resync and wait for the result", "ForceResyncRequest", by_internal),
        "ForceResyncNoBlankValues": (
            "ForceResync, blank values never overwriting non-blank ones." + no_blank,
            "ForceResyncRequest",
            by_internal,
        ),
        "ForceResyncExternal": (
            "resync the records linked to ERP keys and wait; ERP keys not linked are reported "
            "per key",
            "ForceResyncExternalRequest",
            by_external,
        ),
        "ForceResyncExternalNoBlankValues": (
            "ForceResyncExternal, blank values never overwriting non-blank ones." + no_blank,
            "ForceResyncExternalRequest",
            by_external,
        ),
    }
    for name, (summary, body, responses) in operations.items():
        operation = _agent(f"{name}: {summary}", body, responses, tag="ErpSync")
        if body == "ForceResyncExternalRequest":
            # ErpConnectionId and ErpActorType have no default
            operation["post"]["requestBody"]["required"] = True
        doc["paths"][f"/api/v1/Agents/ErpSync/{name}"] = operation
    nullable_text = {"type": ["string", "null"]}
    doc["components"]["schemas"]["ForceResyncExternalRequest"] = {
        "type": "object",
        "properties": {
            "ErpConnectionId": {
                "type": "integer",
                "format": "int32",
                "minimum": 1,
                "maximum": 2**31 - 1,
                "description": "The ERP connection the keys belong to (the resync's source).",
            },
            "ErpActorType": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": NO_NUL,
                "description": "One of the connection's ERP actor types (its actor_types "
                "mapping; an exact match, else the one case-insensitive match), or SuperOffice's "
                "ErpActorType number (1 = Customer, 2 = Supplier, ...; also as a JSON number).",
            },
            "ExternalKeys": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_NUL},
                "description": "ERP keys; duplicates are dropped. Keys not linked on the "
                "connection as that actor type are reported per key. Missing or empty: every "
                "record linked to an actor of that type on the connection (SuperOffice's "
                "'or empty to resync all').",
            },
        },
        "required": ["ErpConnectionId", "ErpActorType"],
        "example": {"ErpConnectionId": 1, "ErpActorType": "Customer", "ExternalKeys": ["10001"]},
    }
    doc["components"]["schemas"]["PluginResponse"] = {
        "type": "object",
        "description": "SuperOffice's PluginResponse. Every property may be null ($select).",
        "properties": {
            "IsOk": {"type": ["boolean", "null"]},
            "UserExplanation": {**nullable_text, "maxLength": 254},
            "TechExplanation": {
                **nullable_text,
                "description": "The task, its Response and up to 20 records' failures or "
                "notes (skipped blank values), unknown ERP keys; at most 4000 characters.",
            },
            "ErrorCode": {
                **nullable_text,
                "description": "Empty when IsOk; else ResyncFailed, ResyncStopped, "
                "ResyncTimeout, UnknownInternalKeys, UnknownExternalKeys.",
            },
            "Changes": {"type": ["object", "null"], "description": "Not reported: null."},
            "Status": {"enum": ["Ok", "OkWithInfo", "Error", None]},
            "TableRight": {"type": ["object", "null"], "description": "Not reported: null."},
            "FieldProperties": {"type": ["object", "null"]},
        },
    }


def _add_links(doc: dict[str, Any]) -> None:
    """The ErpSync link endpoints and connection views (engine/api/links.py): their paths and
    carriers. Every response property may be null (``$select``)."""

    def one_of(names: list[str]) -> dict[str, Any]:
        return {
            "description": "The name, or its number.",
            "anyOf": [
                {"type": "string", "enum": names},
                {"type": "integer", "minimum": 0, "maximum": len(names) - 1},
            ],
        }

    crm_type = one_of([m.value for m in CrmActorType])
    erp_type = one_of([m.value for m in ErpActorType])
    record_id = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 2**31 - 1}
    connection = {**INT32, "description": "An ERP connection id (the CRM, 0, has none)."}
    erp_key = {
        "type": "string",
        "minLength": 1,
        "maxLength": 254,
        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
    }
    text = {"type": ["string", "null"]}
    integer = {"type": ["integer", "null"]}
    boolean = {"type": ["boolean", "null"]}
    free = {"type": ["object", "null"]}

    def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema

    def nullable(ref: str) -> dict[str, Any]:
        return {"anyOf": [{"$ref": f"#/components/schemas/{ref}"}, {"type": "null"}]}

    def array_of(ref: str) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": {"$ref": f"#/components/schemas/{ref}"}}

    carrier = {"TableRight": free, "FieldProperties": free}
    link = {
        "ErpConnectionId": connection,
        "CrmRecordId": record_id,
        "CrmActorType": crm_type,
        "ErpKey": erp_key,
        "ErpActorType": erp_type,
    }
    field_value = obj(
        {
            "DisplayName": {"type": ["string", "null"]},
            "CrmFieldKey": {"type": ["string", "null"]},
            "Value": {"type": ["string", "null"]},
            "DisplayValue": {"type": ["string", "null"]},
            "SyncToCrm": {"type": ["boolean", "null"]},
            "SyncToErp": {"type": ["boolean", "null"]},
        }
    )
    schemas = {
        "CreateActorLinkRequest": obj(link, list(link)),
        "ConnectActorRequest": obj(
            {
                **link,
                "FieldValues": {
                    "type": ["array", "null"],
                    "maxItems": 500,
                    "items": field_value,
                    "description": "The values chosen per CRM field: SyncToCrm writes Value "
                    "to the CRM record, SyncToErp to the ERP fields mapped to it; only values "
                    "that differ, each logged (JSON and XML only; ignored in form bodies). A "
                    "CrmFieldKey the mapping lacks is 404.",
                },
            },
            list(link),
        ),
        "BreakActorLinkRequest": obj(
            {k: link[k] for k in ("ErpConnectionId", "CrmRecordId", "CrmActorType")},
            ["ErpConnectionId", "CrmRecordId", "CrmActorType"],
        ),
        "CreateErpActorFromCrmRequest": obj(
            {
                "ConnectionId": connection,
                "CrmEntityId": record_id,
                "ErpActorType": erp_type,
                "CrmActorType": crm_type,
                "ErpFieldKeyValues": {
                    "type": ["object", "null"],
                    "propertyNames": {"maxLength": 255},
                    "additionalProperties": {
                        "type": ["string", "null"],
                        "maxLength": 4000,
                        "pattern": NO_NUL,
                    },
                    "description": "ERP field values on top of the CRM record's mapped ones "
                    "(JSON and XML only; ignored in form bodies).",
                },
            },
            ["ConnectionId", "CrmEntityId", "ErpActorType", "CrmActorType"],
        ),
        "RecordRequest": obj(
            {"CrmActorType": crm_type, "EntityId": record_id}, ["CrmActorType", "EntityId"]
        ),
        "AllConnectionsRequest": obj(
            {
                "IncludeDeleted": {
                    "type": ["boolean", "null"],
                    "description": "Accepted; configured connections are never deleted.",
                }
            }
        ),
        "ConnectionRequest": obj({"ErpConnectionId": connection}, ["ErpConnectionId"]),
        "ToggleConnectionActiveRequest": obj(
            {
                "ErpConnectionId": connection,
                "Active": {
                    "type": ["boolean", "null"],
                    "description": "erpsync's: set the state instead of toggling it (the same "
                    "call twice leaves it as asked). Absent or null: toggle, as SuperOffice.",
                },
            },
            ["ErpConnectionId"],
        ),
        "ConnectionSummaryRequest": obj(
            {"ErpSyncConnectionId": connection}, ["ErpSyncConnectionId"]
        ),
        "ActorTypeMappingRequest": obj(
            {"ErpConnectionId": connection, "ActorType": erp_type},
            ["ErpConnectionId", "ActorType"],
        ),
        "CrmActorTypeRequest": obj(
            {"ErpConnectionId": connection, "ErpActorType": erp_type},
            ["ErpConnectionId", "ErpActorType"],
        ),
        "ErpConnection": obj(
            {
                "ErpConnectionId": integer,
                "ErpConnectorId": integer,
                "DisplayName": text,
                "DisplayDescription": text,
                "Active": {
                    **boolean,
                    "description": "False once set inactive (ToggleErpConnectionActive): the "
                    "sync leaves the connection out.",
                },
                "ConnectionId": {
                    "type": ["string", "null"],
                    "description": "A GUID derived from the connection id (stable).",
                },
                "MostRecentTimestamp": {
                    "type": ["string", "null"],
                    "description": "The continuous sync's watermark (the connector's "
                    "last_modified text); null before its first run.",
                },
                "ConfigFields": {
                    "type": ["object", "null"],
                    "description": "Always empty: connector settings may hold credentials.",
                },
                "Deleted": boolean,
                "AllAccess": {
                    "type": ["boolean", "null"],
                    "description": "True when no auth.users/auth.apps list leaves it out.",
                },
                "UserGroupAccessIds": {"type": ["array", "null"], "items": {"type": "integer"}},
                "AssociateAccessIds": {"type": ["array", "null"], "items": {"type": "integer"}},
                **carrier,
                "Connector": {
                    "type": ["string", "null"],
                    "description": "erpsync's: the connector's entry-point name.",
                },
            }
        ),
        "FieldMetadata": obj(
            {
                "FieldKey": text,
                "Rank": integer,
                "DisplayName": text,
                "DisplayDescription": text,
                "FieldType": text,
                "ListName": text,
                "DefaultValue": text,
                "MaxLength": integer,
                "Access": text,
                "ShowInSearch": boolean,
                **carrier,
                "Value": {
                    "type": ["string", "null"],
                    "description": "erpsync's: the linked actor's current value, read live.",
                },
            }
        ),
        "ErpConnectionData": obj(
            {
                "ErpConnectionId": integer,
                "ConnectionName": text,
                "Connected": boolean,
                "ErpFields": array_of("FieldMetadata"),
                "CrmActorType": text,
                "ErpActorType": text,
                "ErpActorTypes": {"type": ["array", "null"], "items": {"type": "string"}},
                **carrier,
                "InternalKeyId": {**integer, "description": "erpsync's: the record's key."},
                "ErpKey": {**text, "description": "erpsync's: the linked actor's key."},
                "LinkBroken": {
                    "type": ["object", "null"],
                    "description": "erpsync's: the link broken with BreakActorLink, if any.",
                    "properties": {
                        "ErpActorType": text,
                        "ErpKey": text,
                        "BrokenBy": text,
                        "BrokenAt": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
                "ReadError": {
                    **text,
                    "description": "erpsync's: why the values could not be read.",
                },
            }
        ),
        "ErpSyncActorSummary": obj(
            {
                "ActorType": text,
                "HasMappings": boolean,
                "Defaults": text,
                "Mappings": text,
                **carrier,
            }
        ),
        "ErpSyncConnectionSummary": obj(
            {
                "DisplayName": text,
                "DisplayDescription": text,
                "Active": boolean,
                "Deleted": boolean,
                "LastSync": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "When the latest finished task with outcomes on this "
                    "connection finished.",
                },
                "Actors": array_of("ErpSyncActorSummary"),
                **carrier,
                "Links": {**integer, "description": "erpsync's: records linked here."},
                "BrokenLinks": {**integer, "description": "erpsync's: links broken here."},
                "LastTaskId": integer,
                "LastTaskOutcomes": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "integer"},
                    "description": "erpsync's: that task's outcomes here, by status.",
                },
            }
        ),
        "ErpSyncFieldMapping": obj(
            {
                "ErpFieldId": integer,
                "CrmFieldKey": text,
                "CrmDisplayName": text,
                "CrmDisplayTooltip": text,
                "ErpFieldKey": text,
                "FieldType": text,
                "ErpDisplayName": text,
                "ErpDisplayTooltip": text,
                "SyncToCrm": boolean,
                "SyncToErp": boolean,
                "ShowInGui": boolean,
                "ShowInSearch": boolean,
                "AlreadyMapped": boolean,
                "MissingInERP": boolean,
                "MissingInCRM": boolean,
                "Access": text,
                "ListReference": text,
                **carrier,
            }
        ),
        "ErpSyncActorTypeMapping": obj(
            {
                "ErpConnectionId": integer,
                "IsActive": boolean,
                "FieldMappings": array_of("ErpSyncFieldMapping"),
                "ActorTypeErp": text,
                "ActorTypeCrm": text,
                **carrier,
                "CreateMissing": {**boolean, "description": "erpsync's: create_missing."},
            }
        ),
    }
    # The demo's ids (erpsync demo seed): company 1 is C00001 on ERP 1 and 10001 on ERP 2.
    link_example = {
        "ErpConnectionId": 1,
        "CrmRecordId": 1,
        "CrmActorType": "Contact",
        "ErpKey": "C00001",
        "ErpActorType": "Customer",
    }
    examples = {
        "CreateActorLinkRequest": link_example,
        "ConnectActorRequest": {
            **link_example,
            "FieldValues": [
                {
                    "DisplayName": "Name",
                    "CrmFieldKey": "name",
                    "Value": "Acme",
                    "DisplayValue": "Acme",
                    "SyncToCrm": False,
                    "SyncToErp": True,
                }
            ],
        },
        "BreakActorLinkRequest": {
            "ErpConnectionId": 2,
            "CrmRecordId": 1,
            "CrmActorType": "Contact",
        },
        "CreateErpActorFromCrmRequest": {
            "ConnectionId": 2,
            "CrmEntityId": 1,
            "ErpActorType": "Customer",
            "CrmActorType": "Contact",
            "ErpFieldKeyValues": {"town": "Oslo"},
        },
        "RecordRequest": {"CrmActorType": "Contact", "EntityId": 1},
        "AllConnectionsRequest": {"IncludeDeleted": False},
        "ConnectionRequest": {"ErpConnectionId": 1},
        "ToggleConnectionActiveRequest": {"ErpConnectionId": 1},
        "ConnectionSummaryRequest": {"ErpSyncConnectionId": 1},
        "ActorTypeMappingRequest": {"ErpConnectionId": 1, "ActorType": "Customer"},
        "CrmActorTypeRequest": {"ErpConnectionId": 1, "ErpActorType": "Customer"},
    }
    for name, example in examples.items():
        schemas[name]["example"] = example
    doc["components"]["schemas"].update(schemas)
    unknown = _error("The connection (or the mapping of the actor types) is not configured.")
    conflict = _error(
        "ConflictException: the record is already linked to another actor on that connection, "
        "or the actor to another record (the message names the link in the way)."
    )

    def returns(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": _content(schema)}

    def operation(summary: str, body: str, responses: dict[str, Any]) -> dict[str, Any]:
        made = _agent(summary, body, {"404": unknown, **responses}, tag="ErpSync")
        made["post"]["requestBody"]["required"] = True
        return made

    true_false = {"type": "boolean"}
    reasons = returns(
        "Why the toggle failed: empty, it did not (a refusal is an HTTP error). The state "
        "the call left is in X-Connection-Active.",
        {"type": "array", "items": {"type": "string"}},
    )
    reasons["headers"] = {
        "X-Connection-Active": {
            "schema": {"type": "string", "enum": ["true", "false"]},
            "description": "erpsync's: whether the connection is active now.",
        }
    }
    toggled = operation(
        "ToggleErpConnectionActive: toggle (or, with erpsync's Active, set) whether the "
        "connection takes part in the sync",
        "ToggleConnectionActiveRequest",
        {"200": reasons},
    )
    toggled["post"]["description"] = (
        "An inactive connection is left out by the continuous sync, SyncAll and ForceSyncAll, "
        "is not pushed to by any resync, and a resync from it is 409. Kept in PostgreSQL; "
        "a connection never toggled is active. The CRM (0) is not an ERP connection: 404."
    )
    linked = returns(
        "true: linked (or already linked so) and the chosen values applied; false: a link is "
        "in the way (where ConnectActor is 409), nothing changed, that link named in "
        "X-Link-Conflict.",
        true_false,
    )
    linked["headers"] = {
        "X-Link-Conflict": {
            "schema": {"type": "string", "maxLength": 300},
            "description": "erpsync's, with false: the link in the way (ConnectActor's 409 "
            "message), ASCII, one line.",
        }
    }
    tried = operation(
        "TryConnectActor: ConnectActor answering false instead of 409",
        "ConnectActorRequest",
        {
            "200": linked,
            "503": _error("A system is unavailable: linked, values not applied; retry."),
        },
    )
    tried["post"]["description"] = (
        'The same arguments, checks and work as ConnectActor. Only the outcome "a link is in '
        'the way" (the record linked to another actor on that connection, or the actor to '
        "another record) is an answer, false; every other refusal keeps ConnectActor's status "
        "(400, 403, 404, 503), including a failure to apply the values once linked."
    )
    paths = {
        "CreateActorLink": operation(
            "CreateActorLink: link a CRM record to an ERP actor",
            "CreateActorLinkRequest",
            {
                "200": returns("true: linked (also when it already was).", true_false),
                "409": conflict,
            },
        ),
        "ConnectActor": operation(
            "ConnectActor: link like CreateActorLink and apply the chosen values",
            "ConnectActorRequest",
            {
                "204": {"description": "Linked, and the chosen values applied."},
                "409": conflict,
                "503": _error("A system is unavailable: linked, values not applied; retry."),
            },
        ),
        "TryConnectActor": tried,
        "BreakActorLink": operation(
            "BreakActorLink: unlink; the record stays out of that connection's syncs until "
            "linked again",
            "BreakActorLinkRequest",
            {"200": returns("true: broken; false: there was no link.", true_false)},
        ),
        "CreateErpActorFromCrm": operation(
            "CreateErpActorFromCrm: create the ERP actor from the CRM record and link it",
            "CreateErpActorFromCrmRequest",
            {
                "200": returns("true: created and linked.", true_false),
                "409": conflict,
                "503": _error("The connection is unavailable; retry later (Retry-After)."),
            },
        ),
        "GetConnectionsAndDisplayFields": operation(
            "GetConnectionsAndDisplayFields: the record's link on each connection, with the "
            "linked actor's mapped fields",
            "RecordRequest",
            {
                "200": returns(
                    "One per connection mapping the CRM type.", array_of("ErpConnectionData")
                )
            },
        ),
        "GetAllConnections": operation(
            "GetAllConnections: the configured ERP connections the caller may touch",
            "AllConnectionsRequest",
            {"200": returns("The connections.", array_of("ErpConnection"))},
        ),
        "GetConnection": operation(
            "GetConnection: one configured connection",
            "ConnectionRequest",
            {"200": returns("The connection.", nullable("ErpConnection"))},
        ),
        "ToggleErpConnectionActive": toggled,
        "GetErpSyncConnectionSummary": operation(
            "GetErpSyncConnectionSummary: actor types, last sync and link counts",
            "ConnectionSummaryRequest",
            {"200": returns("The summary.", nullable("ErpSyncConnectionSummary"))},
        ),
        "GetActorTypeMapping": operation(
            "GetActorTypeMapping: the field mapping of one ERP actor type",
            "ActorTypeMappingRequest",
            {"200": returns("The mapping.", nullable("ErpSyncActorTypeMapping"))},
        ),
        "GetCrmActorType": operation(
            "GetCrmActorType: the CRM actor type an ERP actor type maps to",
            "CrmActorTypeRequest",
            {"200": returns("The CrmActorType name.", {"type": "string"})},
        ),
    }
    for name, item in paths.items():
        doc["paths"][f"/api/v1/Agents/ErpSync/{name}"] = item


def _add_readthrough(doc: dict[str, Any]) -> None:
    """The ErpSync read-through endpoints (engine/api/readthrough.py): live values and metadata
    from the connections. Their arguments are the link endpoints' (same rules)."""
    schemas = doc["components"]["schemas"]
    link = schemas["CreateActorLinkRequest"]["properties"]
    text = {"type": ["string", "null"]}
    boolean = {"type": ["boolean", "null"]}
    free = {"type": ["object", "null"]}

    def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {"type": "object", "properties": properties, "required": required}

    def array_of(ref: str) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": {"$ref": f"#/components/schemas/{ref}"}}

    new = {
        "FieldValuesFromCrmRequest": obj(
            {"RecordId": link["CrmRecordId"], "ActorTypeCrm": link["CrmActorType"]},
            ["RecordId", "ActorTypeCrm"],
        ),
        "FieldValuesFromErpRequest": obj(
            {
                "ErpConnectionId": link["ErpConnectionId"],
                "ActorTypeErp": link["ErpActorType"],
                "ErpKey": link["ErpKey"],
            },
            ["ErpConnectionId", "ActorTypeErp", "ErpKey"],
        ),
        "ErpFieldValuesRequest": obj(
            {
                "ErpConnectionId": link["ErpConnectionId"],
                "CrmActorType": link["CrmActorType"],
                "EntityId": link["CrmRecordId"],
                "FieldKeys": {
                    "type": ["array", "null"],
                    "maxItems": 500,
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
                    },
                    "description": "ERP field keys of the linked actor's type, mapped or not "
                    '("Show in ERP tab"); a key the connector does not list is 404.',
                },
            },
            ["ErpConnectionId", "CrmActorType", "EntityId"],
        ),
        "ErpSyncFieldValue": {
            "type": "object",
            "properties": {
                "DisplayName": text,
                "CrmFieldKey": text,
                "Value": {**text, "description": "Null when blank, and for Password fields."},
                "DisplayValue": {**text, "description": "A List value's item text."},
                "SyncToCrm": boolean,
                "SyncToErp": boolean,
                "TableRight": free,
                "FieldProperties": free,
                "ErpFieldKey": {
                    **text,
                    "description": "erpsync's (GetFieldValuesFromErp): the ERP field.",
                },
            },
        },
    }
    new["ConnectionByConfigRequest"] = obj(
        {
            "ErpConnectionId": link["ErpConnectionId"],
            "ConfigFields": {
                "type": ["object", "null"],
                "maxProperties": 100,
                "propertyNames": {
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
                },
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 16384,
                    "pattern": NO_NUL,
                },
                "description": "SuperOffice's StringDictionary: option name (a key of the "
                "connection's settings in TOML, any casing; a__b for a nested one where the "
                "connector takes flat keys) -> text, coerced as an ERPSYNC_CONNECTION_<ID>__<KEY> "
                "override is. Options not given keep their configured values, except secrets "
                "(never carried into a test: give them). An option the connector does not take, "
                "or settings its model refuses, is 400. Nothing is saved. XML: DataContract "
                "key/value pairs, SOAP's StringKeyValuePair, or an element per option.",
            },
        },
        ["ErpConnectionId"],
    )
    examples = {
        "ConnectionByConfigRequest": {
            "ErpConnectionId": 1,
            "ConfigFields": {"schema": "demo_erp1", "pool_max_size": "2"},
        },
        "FieldValuesFromCrmRequest": {"RecordId": 1, "ActorTypeCrm": "Contact"},
        "FieldValuesFromErpRequest": {
            "ErpConnectionId": 1,
            "ActorTypeErp": "Customer",
            "ErpKey": "C00001",
        },
        "ErpFieldValuesRequest": {
            "ErpConnectionId": 1,
            "CrmActorType": "Contact",
            "EntityId": 1,
            "FieldKeys": ["credit_limit", "name"],
        },
    }
    for name, example in examples.items():
        new[name]["example"] = example
    schemas.update(new)

    def operation(summary: str, body: str, responses: dict[str, Any]) -> dict[str, Any]:
        unknown = _error(
            "Not configured (the connection, or its mapping of the actor type), not found (the "
            "record or actor), not linked, or not a field of the actor type."
        )
        failed = _error(
            "The connection is unavailable or misconfigured (Retry-After), or the database "
            "or the broker is unreachable."
        )
        made = _agent(summary, body, {"404": unknown, "503": failed, **responses}, tag="ErpSync")
        made["post"]["requestBody"]["required"] = True
        made["post"]["responses"]["400"] = _error(
            "Malformed body or invalid argument, or the connection refused the request."
        )
        return made

    def returns(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": _content(schema)}

    values = returns("The values (ErpSyncFieldValue).", array_of("ErpSyncFieldValue"))
    tested = returns("true: the connector's test passed.", {"type": "boolean"})
    tested["headers"] = {
        "X-Connection-Test-Message": {
            "schema": {"type": "string", "maxLength": 300},
            "description": "The connector's message (why false), ASCII, one line.",
        }
    }
    by_config = operation(
        "TestConnectionByConfig: the connector's test with other settings (nothing saved)",
        "ConnectionByConfigRequest",
        {"200": tested},
    )
    by_config["post"]["description"] = (
        "A connector of its own, configured with the connection's settings and ConfigFields on "
        "top, opened, tested and closed within the connection's timeout; outside the "
        "connection's gate (its breaker and slots are the configured system's). false (the "
        "reason in X-Connection-Test-Message) when it cannot open, connect or pass its test; "
        "503 (Retry-After) when too many such tests are running in the process."
    )
    by_config["post"]["responses"]["400"] = _error(
        "Malformed body or invalid argument, or ConfigFields that do not configure the "
        "connection's connector (an option it does not take, a value its model refuses, a "
        "secret not given); the message names the options, never their values."
    )
    paths = {
        "TestConnectionById": operation(
            "TestConnectionById: the connector's test of its system",
            "ConnectionRequest",
            {"200": tested},
        ),
        "TestConnectionByConfig": by_config,
        "GetFieldValuesFromCrm": operation(
            "GetFieldValuesFromCrm: the CRM record's mapped fields, read live",
            "FieldValuesFromCrmRequest",
            {"200": values},
        ),
        "GetFieldValuesFromErp": operation(
            "GetFieldValuesFromErp: the ERP actor's mapped fields, read live",
            "FieldValuesFromErpRequest",
            {"200": values},
        ),
        "GetErpFieldValues": operation(
            "GetErpFieldValues: fields of the ERP actor a CRM record is linked to",
            "ErpFieldValuesRequest",
            {
                "200": returns(
                    "The values in the order of FieldKeys (null: blank, or a Password).",
                    {"type": "array", "items": {"type": ["string", "null"]}},
                )
            },
        ),
        "GetFieldsForNewErpActor": operation(
            "GetFieldsForNewErpActor: the fields to fill when creating the ERP actor",
            "CrmActorTypeRequest",
            {
                "200": returns(
                    "The connector's Mandatory fields the mapping does not fill.",
                    array_of("FieldMetadata"),
                )
            },
        ),
        "SupportsAdvancedSearch": operation(
            "SupportsAdvancedSearch: whether the connector can search actors",
            "CrmActorTypeRequest",
            {"200": returns("true: it can.", {"type": "boolean"})},
        ),
    }
    for name, item in paths.items():
        doc["paths"][f"/api/v1/Agents/ErpSync/{name}"] = item


def _engine_control(doc: dict[str, Any]) -> None:
    """The continuous sync's control (engine/api/engine_control.py, docs/api.md)."""
    erpsync = "/api/v1/Agents/ErpSync"
    nullable_text = {"type": ["string", "null"]}
    status = {"$ref": "#/components/schemas/ErpSyncEngineStatus"}
    plugin = {"$ref": "#/components/schemas/PluginResponse"}
    doc["paths"].update(
        {
            f"{erpsync}/GetEngineStatus": _agent(
                "GetEngineStatus: whether the continuous sync runs, its interval, and "
                "erpsync's per-connection schedule",
                "NoArguments",
                {"200": {"description": "The engine status.", "content": _content(status)}},
                tag="ErpSync",
            ),
            f"{erpsync}/ChangeEngineStatus": _agent(
                "ChangeEngineStatus: Run=true starts the continuous sync (every active connection "
                "runs at once), false stops it",
                "ChangeEngineStatusRequest",
                {"200": {"description": "The new engine status.", "content": _content(status)}},
                tag="ErpSync",
            ),
            f"{erpsync}/ChangeEngineInterval": _agent(
                "ChangeEngineInterval: seconds between the runs of each connection",
                "ChangeEngineIntervalRequest",
                {"204": {"description": "Changed."}},
                tag="ErpSync",
            ),
            f"{erpsync}/SyncAll": _agent(
                "SyncAll: run every active connection's incremental sync now",
                "NoArguments",
                {"200": {"description": "IsOk false when stopped.", "content": _content(plugin)}},
                tag="ErpSync",
            ),
            f"{erpsync}/ForceSyncAll": _agent(
                "ForceSyncAll: every active connection's incremental sync now, once, even when "
                "automatic sync is off",
                "NoArguments",
                {
                    "200": {
                        "description": "IsOk false when the continuous sync is not enabled.",
                        "content": _content(plugin),
                    }
                },
                tag="ErpSync",
            ),
            "/api/v1/erpsync/engine/sync-from-start": {
                "post": {
                    "tags": ["ErpSync"],
                    "summary": "erpsync: every active connection's next run (now, once, even when "
                    "automatic sync is off) forgets its watermarks and reads every record",
                    "operationId": "syncFromStart",
                    "parameters": [_AGENT_HEADERS[0]],
                    "responses": {
                        "200": {
                            "description": "A PluginResponse; IsOk false when the continuous "
                            "sync is not enabled.",
                            "content": {"application/json": {"schema": plugin}},
                        },
                        "401": _COMMON_ERRORS["401"],
                        "403": _COMMON_ERRORS["403"],
                    },
                }
            },
            "/api/v1/erpsync/engine": _read(
                "The continuous sync's status (GetEngineStatus as JSON)",
                "engineStatus",
                [],
                status,
            ),
        }
    )
    for name in ("ChangeEngineStatus", "ChangeEngineInterval"):
        doc["paths"][f"{erpsync}/{name}"]["post"]["requestBody"]["required"] = True
    timespan = (
        "^(0[1-9]|1[0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$|^00:(0[1-9]|[1-5][0-9]):[0-5][0-9]$"
        "|^00:00:(0[1-9]|[1-5][0-9])$"
    )
    doc["components"]["schemas"].update(
        {
            "NoArguments": {"type": "object", "description": "No arguments."},
            "ChangeEngineStatusRequest": {
                "type": "object",
                "properties": {"Run": {"type": "boolean"}},
                "required": ["Run"],
            },
            "ChangeEngineIntervalRequest": {
                "type": "object",
                "properties": {
                    "Interval": {
                        "description": "A TimeSpan hh:mm:ss (00:00:01 to 23:59:59), or seconds "
                        "(more than 0, at most 86400). Also read, as SuperOffice's TimeSpan is: "
                        "hh:mm, 1.00:00:00, and an xs:duration (PT30S, PT1H30M, P1D).",
                        "oneOf": [
                            {"type": "string", "pattern": timespan},
                            {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                        ],
                    }
                },
                "required": ["Interval"],
            },
            "ErpSyncEngineStatus": {
                "type": "object",
                "properties": {
                    "IsRunning": {"type": ["boolean", "null"]},
                    "StatusMessage": nullable_text,
                    "Interval": nullable_text,
                    "TableRight": {"type": "null"},
                    "FieldProperties": {"type": ["object", "null"]},
                    "Workers": {
                        "type": ["object", "null"],
                        "description": "erpsync's: the live workers (a lease renewed within "
                        "engine.stale_after) and how many of them run the continuous sync; "
                        "IsRunning is false while RunningSync is 0.",
                        "properties": {
                            "Alive": {"type": ["integer", "null"]},
                            "RunningSync": {"type": ["integer", "null"]},
                        },
                    },
                    "Connections": {
                        "type": ["array", "null"],
                        "description": "erpsync's: each connection's Active state, "
                        "watermarks, last run, lag (seconds since the last run that read every "
                        "change) and next run (null while inactive).",
                        "items": {"type": "object"},
                    },
                },
            },
            "PluginResponse": {
                "type": "object",
                "properties": {
                    "IsOk": {"type": ["boolean", "null"]},
                    "UserExplanation": nullable_text,
                    "TechExplanation": nullable_text,
                    "ErrorCode": nullable_text,
                    "Changes": {"type": "null"},
                    "Status": nullable_text,
                    "TableRight": {"type": "null"},
                    "FieldProperties": {"type": ["object", "null"]},
                },
            },
        }
    )


def _batch_task_info_schema() -> dict[str, Any]:
    """Every property may be null: ``$select`` nulls the properties it does not name."""
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    integer = {"type": ["integer", "null"]}
    string = {"type": ["string", "null"]}
    boolean = {"type": ["boolean", "null"]}
    return {
        "type": "object",
        "properties": {
            "Id": integer,
            "Name": string,
            "AssociateId": integer,
            "DetailsTable": integer,
            "DetailsRecord": integer,
            "IsSystemTask": boolean,
            "IsInternalTask": boolean,
            "ParameterObject": {"type": ["object", "null"], "description": "Always null here."},
            "LastStarted": nullable_time,
            "Created": nullable_time,
            "StartCount": integer,
            "DatabaseSerialNumber": string,
            "Context": string,
            "Result": string,
            "State": string,
            "Description": string,
            "Response": string,
            "Request": string,
            "ProgressDescription": string,
            "ProgressPercent": integer,
            "FileName": string,
            "CancellationBehaviour": string,
            "TableRight": {"type": ["object", "null"]},
            "FieldProperties": {"type": ["object", "null"]},
            "CorrelationId": {
                "type": ["string", "null"],
                "description": "erpsync's: the command message's CorrelationId.",
            },
            "MessageId": {
                "type": ["string", "null"],
                "description": "erpsync's: the id of the message that carried the command.",
            },
            "Statistics": {
                "type": ["object", "null"],
                "properties": {
                    "SourceConnectionId": integer,
                    "TotalRecords": integer,
                    "DoneRecords": integer,
                    "UnknownKeys": integer,
                    "Updated": integer,
                    "Unchanged": integer,
                    "Created": integer,
                    "Failed": integer,
                    "FieldsChanged": integer,
                    "Chunks": integer,
                    "PushUnits": integer,
                    "RetryChunks": integer,
                    "ChunksDone": integer,
                    "Finished": nullable_time,
                    "Stopped": boolean,
                    "StoppedBy": {"type": ["string", "null"]},
                    "StoppedAt": nullable_time,
                },
            },
        },
    }


def _with_parser_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation may get aiohttp's plain-text 400 for a request its HTTP parser refuses
    (a request line or header over 8190 bytes, a NUL in a header) before any handler runs."""
    plain = {"text/plain": {"schema": {"type": "string"}}}
    for operations in paths.values():
        for operation in operations.values():
            responses = operation["responses"]
            error = responses.get("400", _error("Malformed request."))
            responses["400"] = {**error, "content": {**error["content"], **plain}}
    return paths


def _with_login_throttle(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation that checks credentials may answer 429: a client (or user name) with too
    many failed password checks is refused before its password is checked."""
    for operations in paths.values():
        for operation in operations.values():
            responses = operation["responses"]
            if "401" in responses:
                responses.setdefault("429", _COMMON_ERRORS["429"])
    return paths


def render() -> bytes:
    """The document as pretty-printed JSON (the form kept in the repository)."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2) + b"\n"


routes = web.RouteTableDef()


@routes.get(PATH)
async def serve(request: web.Request) -> web.Response:
    """The OpenAPI document (public, like the health probes)."""
    return web.Response(body=render(), content_type="application/json", charset="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Write the document to docs/openapi.json, or to the path given."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.api.openapi", description="Write the OpenAPI document."
    )
    parser.add_argument("target", nargs="?", type=Path, default=REPO_COPY)
    args = parser.parse_args(argv)
    args.target.write_bytes(render())


if __name__ == "__main__":
    main()
