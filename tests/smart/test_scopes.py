"""SMART scopes: v1 and v2 syntax, normalisation, subset rules, consent descriptions."""

from __future__ import annotations

import pytest

from ehrgate.smart.scopes import ScopeError, category_alternatives, describe, parse_scope, parse_scopes

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.mark.parametrize(
    ("text", "context", "res_type", "letters", "query"),
    [
        ("patient/Observation.read", "patient", "Observation", "rs", ()),
        ("user/*.write", "user", "*", "cud", ()),
        ("patient/*.*", "patient", "*", "cruds", ()),
        ("system/Patient.rs", "system", "Patient", "rs", ()),
        ("patient/Observation.cruds", "patient", "Observation", "cruds", ()),
        ("patient/Observation.rs?category=laboratory", "patient", "Observation", "rs", (("category", "laboratory"),)),
        (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "rs", (("category", LAB),)),
    ],
)
def test_resource_scopes_parse(text: str, context: str, res_type: str, letters: str, query: tuple) -> None:
    scope = parse_scope(text)
    assert scope.raw == text
    assert scope.resource is not None
    assert (scope.resource.context, scope.resource.res_type, scope.resource.letters, scope.resource.query) == (
        context, res_type, letters, query,
    )


@pytest.mark.parametrize(
    "text", ["openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"]
)
def test_context_scopes_are_kept_verbatim(text: str) -> None:
    scope = parse_scope(text)
    assert scope.resource is None and scope.raw == text
    assert "does not use" not in describe(scope)


@pytest.mark.parametrize(
    "text",
    ["patient/Observation.sr", "patient/Observation.rr", "patient/Observation.x", "patient/observation.read",
     "patient/Observation.read?category=x", "patient/Observation.rs?category=", "user/Observation"],
)
def test_bad_resource_scopes_name_the_scope(text: str) -> None:
    with pytest.raises(ScopeError, match=repr(text).replace("?", r"\?").replace(".", r"\.").replace("*", r"\*")):
        parse_scope(text)


def test_v1_and_v2_are_one_model() -> None:
    assert parse_scope("patient/Observation.read").covers(parse_scope("patient/Observation.rs"))
    assert parse_scope("patient/Observation.rs").covers(parse_scope("patient/Observation.read"))
    assert parse_scope("user/*.*").covers(parse_scope("user/Patient.cruds"))
    assert not parse_scope("user/*.read").covers(parse_scope("user/Patient.c"))


def test_subset_rules() -> None:
    granted = parse_scopes("openid fhirUser launch/patient offline_access patient/Observation.rs patient/Condition.read")
    assert parse_scopes("patient/Observation.r openid").is_subset_of(granted)
    assert parse_scopes(f"patient/Observation.rs?category={LAB}").is_subset_of(granted)  # narrower
    assert not parse_scopes("patient/Observation.rs user/Observation.rs").is_subset_of(granted)  # other context
    assert not parse_scopes("patient/Observation.cruds").is_subset_of(granted)  # more letters
    assert not parse_scopes("patient/*.rs").is_subset_of(granted)  # wildcard widens
    assert not parse_scopes("online_access").is_subset_of(granted)
    narrow = parse_scopes(f"patient/Observation.rs?category={LAB}")
    assert not parse_scopes("patient/Observation.rs").is_subset_of(narrow)  # dropping the constraint widens
    assert [s.raw for s in parse_scopes("a b a").scopes] == ["a", "b"]


def test_descriptions_are_plain_language() -> None:
    assert describe(parse_scope("patient/Observation.rs")) == "Read and search observations (Observation) for the selected patient."
    assert describe(parse_scope("user/*.write")) == "Create, update and delete all kinds of records that you can see."
    text = describe(parse_scope(f"patient/Observation.rs?category={LAB}"))
    assert text.endswith("only where category laboratory.")
    assert "which this server does not use" in describe(parse_scope("weird-scope"))


def test_category_alternatives_for_granular_consent() -> None:
    alts = category_alternatives(parse_scope("patient/Condition.rs"))
    assert [a.raw for a, _ in alts][0] == (
        "patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis"
    )
    assert all(parse_scope("patient/Condition.rs").covers(a) for a, _ in alts)
    assert category_alternatives(parse_scope("patient/Patient.rs")) == ()
    assert category_alternatives(parse_scope("patient/Condition.read")) == ()  # v1 has no query form
