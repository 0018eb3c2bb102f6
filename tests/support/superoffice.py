"""A ``superoffice`` connection to the fake SuperOffice WebAPI, shared by its tests."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors import Connector, FieldMetadata, FieldType, FieldValue
from connectors.superoffice import SuperOfficeConfig, SuperOfficeConnector
from connectors.testing import Harness, make_context
from connectors.testing.superoffice_fake import (
    ENTITIES,
    LISTS,
    SYSTEM_USER_PATH,
    Credentials,
    SuperOfficeFake,
)

PASSWORD = "so-basic-pa55word-s3cret"
APP_TOKEN = "so-app-token-s3cret-0123456789"
SYSTEM_USER_TOKEN = "erpsync-demo-SysUsrT0ken"
PARTNER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PARTNER_PEM = PARTNER_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()


def online_credentials() -> Credentials:
    """An Online tenant: app token, system user token and the partner's public key."""
    return Credentials(
        app_token=APP_TOKEN,
        system_user_token=SYSTEM_USER_TOKEN,
        partner_public_key=PARTNER_KEY.public_key(),
    )


def basic_settings(fake: SuperOfficeFake, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": fake.url,
        "auth": {"type": "basic", "username": "erpsync", "password": password},
        **extra,
    }


def system_user_settings(fake: SuperOfficeFake, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": fake.url,
        "app_token": APP_TOKEN,
        "auth": {
            "type": "system_user",
            "system_user_token": SYSTEM_USER_TOKEN,
            "private_key": PARTNER_PEM,
            "context_identifier": "Cust12345",
            "login_url": fake.url + SYSTEM_USER_PATH,
            "jwt_public_key": fake.jwt_public_key_pem,
        },
        **extra,
    }


def columns(actor_type: str) -> dict[str, str]:
    """Field key -> archive column of an entity of the fake."""
    return {
        c.name.split("Udef/", 1)[1] if "Udef/" in c.name else c.name: c.name
        for c in ENTITIES[actor_type].columns
    }


def typed(actor_type: str, values: Mapping[str, FieldValue]) -> dict[str, Any]:
    """Field key -> text values as the fake's typed column values."""
    kinds = {c.name: c.type for c in ENTITIES[actor_type].columns}
    out: dict[str, Any] = {}
    for key, value in values.items():
        column = columns(actor_type)[key]
        kind = kinds[column]
        if value is None:
            out[column] = None
        elif kind in ("int", "listAny"):
            out[column] = int(value)
        elif kind == "decimal":
            out[column] = float(value)
        elif kind == "bool":
            out[column] = value == "1"
        else:
            out[column] = value
    return out


def text(actor_type: str, record: Mapping[str, Any]) -> dict[str, FieldValue]:
    """A record of the fake (column -> raw value) as field key -> text."""
    out: dict[str, FieldValue] = {}
    kinds = {c.name: c.type for c in ENTITIES[actor_type].columns}
    for key, column in columns(actor_type).items():
        value = record.get(column)
        if value is None or value == "" or (kinds[column] == "listAny" and value == 0):
            out[key] = None
        elif isinstance(value, bool):
            out[key] = "1" if value else "0"
        else:
            out[key] = str(value)
    return out


class SuperOfficeHarness(Harness):
    """The conformance kit's view of the fake: seed and read records directly."""

    idempotent_create = False

    def __init__(self, fake: SuperOfficeFake, settings: dict[str, Any], secrets: tuple[str, ...]):
        self.fake = fake
        self.settings = settings
        self.secrets = secrets

    def connector(self) -> Connector:
        config = SuperOfficeConfig.model_validate(self.settings)
        return SuperOfficeConnector(config, make_context())

    def broken_connector(self) -> Connector:
        wrong = basic_settings(self.fake, password=PASSWORD[::-1])
        return SuperOfficeConnector(SuperOfficeConfig.model_validate(wrong), make_context())

    def unknown_key(self, actor_type: str) -> str:
        return str(900_000 + len(self.fake.records[actor_type]))

    def sample_value(self, actor_type: str, field: FieldMetadata, n: int) -> FieldValue:
        if field.type is FieldType.List:
            return str(n % len(LISTS[field.list_name]) + 1)
        return super().sample_value(actor_type, field, n)

    async def seed(self, actor_type: str, values: Mapping[str, FieldValue]) -> str:
        return str(self.fake.put(actor_type, typed(actor_type, values)))

    async def read(self, actor_type: str, key: str) -> Mapping[str, FieldValue] | None:
        record = self.fake.get(actor_type, int(key)) if key.isdigit() else None
        return None if record is None else text(actor_type, record)


def basic_header(password: str = PASSWORD) -> str:
    return base64.b64encode(f"erpsync:{password}".encode()).decode()
