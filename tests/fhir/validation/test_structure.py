"""JSON shape, unknown elements, cardinality and choice types (http://hl7.org/fhir/R4/json.html)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrgate.fhir.validation import validate

from .helpers import issues_at, only_issue
from .samples import blood_pressure, medication_request, patient, transaction_bundle


@pytest.mark.parametrize("bad", [None, [], "Patient", 42, [{"resourceType": "Patient"}]])
def test_not_a_json_object(bad: Any) -> None:
    issue = only_issue(bad)
    assert issue.code == "structure"
    assert "JSON object" in issue.diagnostics


def test_missing_resource_type() -> None:
    issue = only_issue({"id": "x"})
    assert (issue.code, issue.expression) == ("required", "resourceType")


@pytest.mark.parametrize("rt", ["Patients", "patient", "DomainResource", "Resource", 7, "ActorDefinition"])
def test_unknown_resource_type(rt: Any) -> None:
    issue = only_issue({"resourceType": rt})
    assert (issue.code, issue.expression) == ("structure", "resourceType")
    assert repr(rt) in issue.diagnostics


@pytest.mark.parametrize(
    ("path", "key", "expression"),
    [
        ((), "favouriteColour", "Patient.favouriteColour"),
        (("name", 0), "nickname", "Patient.name[0].nickname"),  # in a datatype
        (("contact", 0), "email", "Patient.contact[0].email"),  # in a backbone element
        (("meta",), "version", "Patient.meta.version"),
        (("extension", 0), "valueFoo", "Patient.extension[0].valueFoo"),  # no such choice type
        (("maritalStatus", "coding", 0), "Code", "Patient.maritalStatus.coding[0].Code"),  # case matters
    ],
)
def test_unknown_elements(path: tuple[Any, ...], key: str, expression: str) -> None:
    resource = patient()
    target: Any = resource
    for step in path:
        target = target[step]
    target[key] = "x"
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("structure", expression)
    assert f"'{key}'" in issue.diagnostics


def test_unknown_choice_suffix_lists_the_allowed_ones() -> None:
    obs = blood_pressure()
    obs["valueDate"] = "2024-01-01"  # Observation.value[x] has no date
    issue = only_issue(obs)
    assert issue.expression == "Observation.valueDate"
    assert "valueQuantity" in issue.diagnostics and "valueDateTime" in issue.diagnostics


def test_bare_choice_name_is_unknown() -> None:
    obs = blood_pressure()
    obs["value"] = {"value": 1}
    assert issues_at(obs) == {"Observation.value": "structure"}


def test_two_alternatives_of_one_choice() -> None:
    obs = blood_pressure()
    obs["effectivePeriod"] = {"start": "2024-03-05"}
    issue = only_issue(obs)
    assert (issue.code, issue.expression) == ("structure", "Observation.effectivePeriod")
    assert "effective[x]" in issue.diagnostics


def test_choice_alternatives_in_different_objects_are_independent() -> None:
    obs = blood_pressure()
    obs["valueString"] = "see components"
    assert validate(obs) == []


@pytest.mark.parametrize(
    ("key", "value", "expression", "words"),
    [
        ("name", {"family": "Ortiz"}, "Patient.name", "JSON array"),  # max * needs an array
        ("gender", ["female"], "Patient.gender", "single"),  # max 1 needs no array
        ("managingOrganization", [{"reference": "Organization/1"}], "Patient.managingOrganization", "single"),
        ("name", [], "Patient.name", "empty array"),
        ("maritalStatus", {}, "Patient.maritalStatus", "empty object"),
        ("gender", None, "Patient.gender", "null"),
        ("name", None, "Patient.name", "null"),
        ("maritalStatus", "M", "Patient.maritalStatus", "JSON object"),
        ("birthDate", "", "Patient.birthDate", ""),
        ("active", "true", "Patient.active", "boolean"),
        ("multipleBirthInteger", "2", "Patient.multipleBirthInteger", "JSON number"),
        ("gender", {"value": "female"}, "Patient.gender", "primitive"),
    ],
)
def test_json_shape(key: str, value: Any, expression: str, words: str) -> None:
    resource = patient()
    resource.pop("multipleBirthInteger")
    resource[key] = value
    issue = only_issue(resource)
    assert issue.expression == expression
    assert issue.code in ("structure", "value")
    assert words in issue.diagnostics


def test_empty_string_is_a_value_error() -> None:
    resource = patient()
    resource["name"][0]["family"] = ""
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("value", "Patient.name[0].family")


def test_items_of_arrays_are_checked_with_their_index() -> None:
    resource = patient()
    resource["name"][1]["given"] = ["Maria", 7]
    resource["telecom"][1] = "m.ortiz@example.org"
    resource["address"][0]["line"] = [["41 Larch Street"]]
    assert issues_at(resource) == {
        "Patient.name[1].given[1]": "structure",
        "Patient.telecom[1]": "structure",
        "Patient.address[0].line[0]": "structure",
    }


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        ({"resourceType": "Observation", "status": "final"}, "Observation.code"),
        ({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/1"}}, "MedicationRequest.medication[x]"),
        ({"resourceType": "Patient", "link": [{"type": "seealso"}]}, "Patient.link[0].other"),
        ({"resourceType": "Patient", "extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
        ({"resourceType": "Patient", "text": {"status": "generated"}}, "Patient.text.div"),
    ],
)
def test_missing_required_element(resource: dict[str, Any], expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("required", expression)


def test_required_primitive_given_only_as_extension_is_present() -> None:
    obs = blood_pressure()
    del obs["status"]
    obs["_status"] = {"extension": [{"url": "http://example.org/why-unknown", "valueString": "lost"}]}
    assert validate(obs) == []


def test_every_problem_is_reported_not_just_the_first() -> None:
    obs = blood_pressure()
    del obs["status"]
    obs["component"][0]["valueQuantity"]["value"] = "142"
    obs["component"][1]["colour"] = "red"
    assert issues_at(obs) == {
        "Observation.status": "required",
        "Observation.component[0].valueQuantity.value": "structure",
        "Observation.component[1].colour": "structure",
    }


class TestPrimitiveExtensions:
    """``_name`` siblings carry a primitive's id and extensions (json.html#primitive)."""

    EXT = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}

    def test_extension_only_primitive(self) -> None:
        resource = patient()
        del resource["birthDate"]
        assert validate(resource) == []

    def test_aligned_arrays_with_nulls(self) -> None:
        resource = patient()
        resource["name"][0]["given"] = ["Maria", None]
        resource["name"][0]["_given"] = [None, self.EXT]
        assert validate(resource) == []

    def test_null_without_extension(self) -> None:
        resource = patient()
        resource["name"][0]["given"] = ["Maria", None]
        assert issues_at(resource) == {"Patient.name[0].given[1]": "structure"}

    def test_both_null(self) -> None:
        resource = patient()
        resource["name"][0]["given"] = ["Maria", None]
        resource["name"][0]["_given"] = [None, None]
        found = issues_at(resource)
        assert found == {"Patient.name[0].given[1]": "structure"}

    def test_misaligned_lengths(self) -> None:
        resource = patient()
        resource["name"][0]["_given"] = [None]
        assert issues_at(resource) == {"Patient.name[0].given": "structure"}

    def test_underscore_of_complex_element(self) -> None:
        resource = patient()
        resource["_maritalStatus"] = self.EXT
        issue = only_issue(resource)
        assert (issue.code, issue.expression) == ("structure", "Patient._maritalStatus")

    def test_underscore_of_unknown_element(self) -> None:
        resource = patient()
        resource["_shoeSize"] = self.EXT
        assert issues_at(resource) == {"Patient._shoeSize": "structure"}

    def test_contents_are_validated(self) -> None:
        resource = patient()
        resource["_gender"] = {"extension": [{"url": "http://example.org/x"}], "colour": "red"}
        assert issues_at(resource) == {
            "Patient.gender.extension[0]": "invariant",  # ext-1: neither value nor extensions
            "Patient.gender.colour": "structure",
        }

    def test_single_primitive_needs_an_object(self) -> None:
        resource = patient()
        resource["_gender"] = [self.EXT]
        assert issues_at(resource) == {"Patient.gender": "structure"}

    def test_choice_primitive(self) -> None:
        resource = patient()
        resource["_deceasedBoolean"] = self.EXT
        assert validate(resource) == []


class TestNestedResources:
    def test_contained_resource_is_validated_with_its_path(self) -> None:
        mr = medication_request()
        mr["contained"][0]["code"]["coding"][0]["system"] = "http://www.nlm.nih.gov/research/umls/rxnorm "
        mr["contained"][0]["manufacturer"] = "Acme"
        assert issues_at(mr) == {
            "MedicationRequest.contained[0].code.coding[0].system": "value",
            "MedicationRequest.contained[0].manufacturer": "structure",
        }

    def test_contained_needs_a_resource_type(self) -> None:
        mr = medication_request()
        del mr["contained"][0]["resourceType"]
        assert issues_at(mr) == {"MedicationRequest.contained[0].resourceType": "required"}

    def test_contained_must_not_nest_or_carry_version(self) -> None:
        mr = medication_request()
        inner = mr["contained"][0]
        inner["contained"] = [{"resourceType": "Substance", "code": {"text": "lisinopril"}}]
        inner["meta"] = {"versionId": "2"}
        assert issues_at(mr) == {
            "MedicationRequest.contained[0].contained": "invariant",  # dom-2
            "MedicationRequest.contained[0].meta": "invariant",  # dom-4
        }

    def test_bundle_entries_are_validated_with_prefix(self) -> None:
        bundle = transaction_bundle()
        bundle["entry"][0]["resource"]["birthDate"] = "1987-02-30"
        bundle["entry"][2]["resource"]["clinicalStatus"]["coding"][0]["code"] = "cured"
        assert issues_at(bundle) == {
            "Bundle.entry[0].resource.birthDate": "value",
            "Bundle.entry[2].resource.clinicalStatus.coding[0].code": "code-invalid",
        }

    def test_bundle_entry_resource_must_be_a_resource(self) -> None:
        bundle = transaction_bundle()
        bundle["entry"][1]["resource"] = {"resourceType": "Foo"}
        bundle["entry"][2]["resource"] = [patient()]
        assert issues_at(bundle) == {
            "Bundle.entry[1].resource.resourceType": "structure",
            "Bundle.entry[2].resource": "structure",
        }

    def test_nested_bundle(self) -> None:
        inner = transaction_bundle()
        inner["type"] = "collection"
        for entry in inner["entry"]:
            entry.pop("request")
        inner["entry"].pop()
        inner["entry"][1]["resource"]["encounter"] = {"reference": "Encounter/enc-5531"}
        inner["entry"][0]["resource"]["gender"] = "f"
        outer = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": inner}]}
        assert issues_at(outer) == {"Bundle.entry[0].resource.entry[0].resource.gender": "code-invalid"}


def test_diagnostics_name_the_element_the_value_and_the_expectation() -> None:
    resource = patient()
    resource["birthDate"] = "23/11/1987"
    issue = only_issue(resource)
    assert issue.diagnostics.startswith("Patient.birthDate: '23/11/1987' is invalid; expected a date")
    assert issue.severity == "error"
    assert issue.to_json()["expression"] == ["Patient.birthDate"]


def test_long_values_are_shortened_in_messages() -> None:
    resource = patient()
    resource["birthDate"] = "9" * 5000
    issue = only_issue(resource)
    assert len(issue.diagnostics) < 300


def test_absurd_nesting_is_reported_not_raised() -> None:
    reference: dict[str, Any] = {"display": "end"}
    for _ in range(5000):
        reference = {"identifier": {"assigner": reference}}
    issues = validate({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                       "subject": reference})
    assert [i.code for i in issues][-1:] == ["too-costly"]
