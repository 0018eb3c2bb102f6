"""``erpsync links`` as a process against the running service."""

from __future__ import annotations

import orjson
import pytest

from tests.support.cli import operator_env, run_cli
from tests.support.service import Service


@pytest.fixture
def env(service: Service) -> dict[str, str]:
    return operator_env(str(service.server.make_url("/")))


async def test_links_show_break_refused_create_and_connect(
    service: Service, env: dict[str, str]
) -> None:
    code, out, err = await run_cli("links", "show", "1", env=env)
    assert code == 0, err
    assert "1 ERP one" in out and "Customer E1-1" in out and "phone='999'" in out

    code, out, err = await run_cli("links", "break", "2", "1", env=env)
    assert (code, out.strip()) == (0, "broke the link of Contact 1 on connection 2"), err
    code, out, err = await run_cli("links", "show", "1", "--json", env=env)
    erp2 = orjson.loads(out)[1]
    assert (erp2["Connected"], erp2["LinkBroken"]["ErpKey"]) == (False, "E2-1")

    # E2-2 is record 2's: refused with the API's message, exit 1
    code, out, err = await run_cli("links", "create", "2", "1", "E2-2", env=env)
    assert code == 1
    assert "409: Customer 'E2-2' on connection 2 (ERP two) is already linked" in err

    code, out, err = await run_cli("links", "connect", "2", "1", "E2-1", env=env)
    assert (code, out.strip()) == (0, "Contact 1 is linked to Customer 'E2-1' on 2"), err
    code, out, err = await run_cli("links", "create", "2", "1", "E2-1", "--json", env=env)
    assert (code, out.strip()) == (0, "true"), err


async def test_links_compare_shows_crm_and_erp_values_side_by_side(env: dict[str, str]) -> None:
    # record 1: ERP 1's phone differs (999 against the CRM's 100)
    code, out, err = await run_cli("links", "compare", "1", "1", env=env)
    assert code == 0, err
    assert "Contact 1 / Customer E1-1" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["phone"] == ["phone", "'100'", "->", "'999'", "phone", "*"]
    assert rows["name"] == ["name", "'Co", "1'", "<->", "'Co", "1'", "name"]
    code, out, err = await run_cli("links", "compare", "2", "1", "--json", env=env)
    assert code == 0, err
    compared = orjson.loads(out)
    assert (compared["ErpActorType"], compared["ErpKey"]) == ("Customer", "E2-1")
    assert {v["ErpFieldKey"]: v["Value"] for v in compared["Erp"]}["mail"] == "old@x"
    assert {v["CrmFieldKey"]: v["Value"] for v in compared["Crm"]}["email"] == "1@crm"
    # before linking: any actor of the connection
    code, out, err = await run_cli(
        "links", "compare", "1", "1", "--erp-key", "E1-2", "--json", env=env
    )
    assert code == 0, err
    assert {v["ErpFieldKey"]: v["Value"] for v in orjson.loads(out)["Erp"]}["name"] == "Old name"
    code, out, err = await run_cli("links", "compare", "1", "9", env=env)
    assert code == 1
    assert "Contact 9 is not linked on connection 1" in err and "--erp-key" in err
