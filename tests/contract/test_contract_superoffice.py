"""The ``superoffice`` connector passes the conformance kit against the fake SuperOffice WebAPI,
onsite (Basic) and Online (system user ticket with SO-AppToken)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.testing import ConnectorContract, Harness
from connectors.testing.superoffice_fake import Credentials, SuperOfficeFake
from tests.support.superoffice import (
    APP_TOKEN,
    PARTNER_PEM,
    PASSWORD,
    SYSTEM_USER_TOKEN,
    SuperOfficeHarness,
    basic_header,
    basic_settings,
    online_credentials,
    system_user_settings,
)


class TestSuperOfficeOnsite(ConnectorContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        async with SuperOfficeFake(Credentials(users={"erpsync": PASSWORD})) as fake:
            yield SuperOfficeHarness(fake, basic_settings(fake), (PASSWORD, basic_header()))


class TestSuperOfficeOnline(ConnectorContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        credentials = online_credentials()
        credentials.users["erpsync"] = PASSWORD  # for the broken connector's wrong password
        async with SuperOfficeFake(credentials) as fake:
            secrets = (APP_TOKEN, SYSTEM_USER_TOKEN, PARTNER_PEM.splitlines()[1])
            yield SuperOfficeHarness(fake, system_user_settings(fake), secrets)
