"""Field mapping by direction and diffing."""

from __future__ import annotations

from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping
from tests.support.settings import customers

MAPPING = ActorTypeMapping.model_validate(
    customers(n="name both", p="phone to_erp", e="email to_crm", c="city none")[0]
)


def test_values_follow_directions() -> None:
    crm = {"name": "A", "phone": "1", "email": "x", "city": "Oslo"}
    assert mp.erp_values_from_crm(MAPPING, crm) == {"n": "A", "p": "1"}
    erp = {"n": "B", "p": "2", "e": "y", "c": "Bergen"}
    assert mp.crm_values_from_erp(MAPPING, erp) == {"name": "B", "email": "y"}


def test_diff_treats_blank_and_empty_as_equal_and_reports_old_values() -> None:
    assert mp.diff({"a": None, "b": "1", "c": "x"}, {"a": "", "b": "2", "c": None}) == {
        "b": ("1", "2"),
        "c": ("x", None),
    }


def test_missing_current_field_counts_as_blank() -> None:
    assert mp.diff({}, {"a": "v"}) == {"a": (None, "v")}
    assert mp.diff({}, {"a": None}) == {}


def test_field_lookups() -> None:
    assert mp.crm_field_of(MAPPING, "p") == "phone"
    assert mp.erp_field_of(MAPPING, "email") == "e"
