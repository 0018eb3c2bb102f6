"""Settings of a ``rest`` connection: base URL, authentication and, per actor type, the paths and
JSON names of its records (see :mod:`connectors.rest`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import connectors as sdk
from connectors import httpkit


class BearerAuth(BaseModel):
    """``Authorization: Bearer <token>``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(BaseModel):
    """HTTP Basic authentication."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(BaseModel):
    """An API key in a request header."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["api_key"]
    header: str = "X-Api-Key"
    key: SecretStr


class RestField(BaseModel):
    """One field of an actor type: its JSON property and metadata."""

    model_config = ConfigDict(extra="forbid")

    json_name: str | None = Field(None, description="JSON property; defaults to the field key.")
    type: sdk.FieldType = sdk.FieldType.Text
    display_name: str = ""
    max_length: int = Field(0, ge=0)
    access: sdk.FieldAccess = sdk.FieldAccess.Normal


class RestActorType(BaseModel):
    """How one actor type maps onto the API."""

    model_config = ConfigDict(extra="forbid")

    get_many: str = Field(description="Path template reading actors by key, with '{keys}'.")
    save: str = Field(description="Path of the batch update.")
    save_method: Literal["POST", "PUT", "PATCH"] = "POST"
    create: str | None = Field(None, description="Path creating one actor; None: cannot create.")
    changed_since: str | None = Field(
        None, description="Path template listing changed actors, with '{since}' and '{limit}'."
    )
    key_field: str = "id"
    modified_field: str | None = "updated_at"
    items_field: str | None = Field("items", description="Property holding arrays; None: bare.")
    errors_field: str = "errors"
    max_keys_per_request: int = Field(100, ge=1, le=10_000)
    fields: dict[str, RestField]

    @field_validator("fields", mode="before")
    @classmethod
    def _field_list(cls, value: Any) -> Any:
        return {str(k): {} for k in value} if isinstance(value, list) else value

    @field_validator("get_many", "save", "create", "changed_since")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("paths start with '/' (they are appended to base_url)")
        return value

    @field_validator("get_many")
    @classmethod
    def _keys(cls, value: str) -> str:
        if "{keys}" not in value:
            raise ValueError("the get_many template must contain '{keys}'")
        return value


class RestConfig(BaseModel):
    """Settings of a ``rest`` connection."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="Scheme, host, port and optional path prefix.")
    auth: Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")] | None = None
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers (kept secret: they often carry keys)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for a whole request.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to get a connection.")
    read_timeout: float = Field(15.0, gt=0, description="Seconds between bytes of a response.")
    max_connections: int = Field(10, ge=1, le=1000)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_retry_after: float = Field(60.0, ge=0, description="Cap on an honoured Retry-After.")
    idempotency_header: str = "Idempotency-Key"
    test_path: str | None = Field(None, description="GET path for test_connection.")
    actor_types: dict[str, RestActorType]

    _nest_flat_keys = model_validator(mode="before")(httpkit.nest_flat_keys)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return httpkit.http_url(value, "base_url", "'auth'").rstrip("/")
