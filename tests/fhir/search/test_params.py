"""params.py: the search-parameter table against US Core 6.1 and the R4 element model.

The R4 element model oracle is fhirclient 4.4.0 (generated from the FHIR 4.0.1 StructureDefinitions):
every step of every path must be an element of the type reached so far, and the element a path
ends on must have a datatype the parameter type can index (search.html#ptypes).
"""

from __future__ import annotations

import pytest

from ehrgate.fhir.search.params import COMMON, REGISTRY, params_for, split_steps
from ehrgate.fhir.search.types import PARAM_TYPES, SearchParam

fhirelementfactory = pytest.importorskip("fhirclient.models.fhirelementfactory")
from fhirclient.models import (  # noqa: E402
    address,
    codeableconcept,
    coding,
    contactpoint,
    extension,
    fhirdate,
    fhirreference,
    humanname,
    identifier,
    period,
    quantity,
    resource,
    timing,
)

# US Core 6.1.0 server CapabilityStatement: every search parameter it marks SHALL or SHOULD, alone
# or as a member of a SHALL/SHOULD combination, with its type; plus the US Core-defined ones the
# profiles list (race, ethnicity, gender-identity, given).
US_CORE_6_1: dict[str, dict[str, str]] = {
    "AllergyIntolerance": {"patient": "reference", "clinical-status": "token"},
    "CarePlan": {"patient": "reference", "category": "token", "date": "date", "status": "token"},
    "CareTeam": {"patient": "reference", "status": "token", "role": "token"},
    "Condition": {
        "patient": "reference", "category": "token", "clinical-status": "token", "code": "token",
        "onset-date": "date", "asserted-date": "date", "recorded-date": "date", "abatement-date": "date",
        "encounter": "reference", "_lastUpdated": "date",
    },
    "Coverage": {"patient": "reference"},
    "Device": {"patient": "reference", "type": "token", "status": "token"},
    "DiagnosticReport": {
        "patient": "reference", "category": "token", "date": "date", "code": "token", "status": "token",
        "_lastUpdated": "date",
    },
    "DocumentReference": {
        "_id": "token", "patient": "reference", "category": "token", "date": "date", "type": "token",
        "status": "token", "period": "date",
    },
    "Encounter": {
        "_id": "token", "date": "date", "patient": "reference", "identifier": "token", "class": "token",
        "type": "token", "status": "token", "location": "reference", "discharge-disposition": "token",
        "_lastUpdated": "date",
    },
    "Goal": {"patient": "reference", "lifecycle-status": "token", "target-date": "date", "description": "token"},
    "Immunization": {"patient": "reference", "date": "date", "status": "token"},
    "Location": {
        "name": "string", "address": "string", "address-city": "string", "address-state": "string",
        "address-postalcode": "string",
    },
    "Medication": {"_id": "token"},
    "MedicationDispense": {"patient": "reference", "status": "token", "type": "token"},
    "MedicationRequest": {
        "patient": "reference", "intent": "token", "status": "token", "encounter": "reference",
        "authoredon": "date",
    },
    "Observation": {
        "patient": "reference", "category": "token", "code": "token", "date": "date", "status": "token",
        "_lastUpdated": "date",
    },
    "Organization": {"name": "string", "address": "string"},
    "Patient": {
        "_id": "token", "identifier": "token", "name": "string", "birthdate": "date", "family": "string",
        "given": "string", "gender": "token", "death-date": "date", "race": "token", "ethnicity": "token",
        "gender-identity": "token",
    },
    "Practitioner": {"name": "string", "identifier": "token"},
    "PractitionerRole": {"specialty": "token", "practitioner": "reference"},
    "Procedure": {"patient": "reference", "date": "date", "code": "token", "status": "token"},
    "Provenance": {"target": "reference", "patient": "reference"},
    "QuestionnaireResponse": {
        "_id": "token", "patient": "reference", "authored": "date", "questionnaire": "reference",
        "status": "token",
    },
    "RelatedPerson": {"_id": "token", "patient": "reference", "name": "string"},
    "ServiceRequest": {
        "_id": "token", "patient": "reference", "category": "token", "code": "token", "authored": "date",
        "status": "token",
    },
    "Specimen": {"_id": "token", "patient": "reference"},
}

# Types the task names beyond US Core, with a few parameters each must have.
OTHER_TYPES: dict[str, dict[str, str]] = {
    "Appointment": {"actor": "reference", "date": "date", "patient": "reference", "status": "token"},
    "Slot": {"schedule": "reference", "start": "date", "status": "token"},
    "Schedule": {"actor": "reference", "date": "date", "active": "token"},
    "Task": {"patient": "reference", "owner": "reference", "status": "token", "code": "token"},
    "Group": {"member": "reference", "code": "token", "characteristic-value": "composite"},
    "Binary": {},
    "AuditEvent": {"patient": "reference", "date": "date", "agent": "reference", "entity": "reference"},
    "Questionnaire": {"url": "uri", "status": "token", "code": "token", "name": "string"},
}

# Parameters the task lists by name for Patient and Observation.
NAMED = {
    "Patient": (
        "identifier name family given birthdate gender address address-city address-state address-postalcode "
        "address-country telecom phone email general-practitioner organization active deceased link language"
    ),
    "Observation": (
        "code category subject patient encounter date status value-quantity value-concept value-string "
        "value-date combo-code component-code code-value-quantity component-code-value-quantity "
        "combo-code-value-quantity performer based-on derived-from has-member specimen identifier"
    ),
}


def _cases(table: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(rt, code, type_) for rt, params in table.items() for code, type_ in params.items()]


@pytest.mark.parametrize(("resource", "code", "type_"), _cases(US_CORE_6_1) + _cases(OTHER_TYPES))
def test_required_parameters_are_declared_with_their_type(resource: str, code: str, type_: str) -> None:
    assert resource in REGISTRY, f"{resource} has no parameter table"
    param = params_for(resource).get(code)
    assert param is not None, f"{resource}?{code} is not declared"
    assert param.type == type_


@pytest.mark.parametrize("resource", sorted(NAMED))
def test_named_parameters_are_declared(resource: str) -> None:
    missing = [code for code in NAMED[resource].split() if code not in REGISTRY[resource]]
    assert missing == []


def test_common_parameters() -> None:
    assert {code: p.type for code, p in COMMON.items()} == {
        "_id": "token", "_lastUpdated": "date", "_tag": "token", "_profile": "uri", "_security": "token",
        "_source": "uri",
    }
    assert all(p.resource == "Resource" for p in COMMON.values())
    for rt in REGISTRY:
        assert COMMON.items() <= params_for(rt).items()
    assert params_for("Basic")["code"].resource == "Basic"
    assert params_for("NoSuchType") == COMMON


def test_table_size() -> None:
    assert len(REGISTRY) >= 33
    assert sum(len(p) for p in REGISTRY.values()) >= 600


ALL = [(rt, code) for rt, params in REGISTRY.items() for code in params]


@pytest.mark.parametrize(("resource", "code"), ALL)
def test_parameter_is_well_formed(resource: str, code: str) -> None:
    p = REGISTRY[resource][code]
    assert (p.code, p.resource) == (code, resource)
    assert p.type in PARAM_TYPES and p.type != "special"
    assert p.paths and all(isinstance(path, str) for path in p.paths)
    assert p.definition.startswith(("http://hl7.org/fhir/SearchParameter/", "http://hl7.org/fhir/us/core/SearchParameter/"))
    assert p.expression.startswith(resource)
    if p.type == "reference":
        assert all(t in _R4_TYPES for t in p.targets), p.targets
    else:
        assert p.targets == ()
    if p.type == "composite":
        assert len(p.components) == 2
        assert all(part in REGISTRY[resource] for part, _sub in p.components)
    else:
        assert p.components == ()


@pytest.mark.parametrize(
    ("resource", "code", "expression", "definition"),
    [
        ("Observation", "patient", "Observation.subject.where(resolve() is Patient)", "clinical-patient"),
        ("Observation", "code", "Observation.code", "clinical-code"),
        ("Observation", "value-quantity", "Observation.value.ofType(Quantity)", "Observation-value-quantity"),
        ("Observation", "code-value-quantity", "Observation", "Observation-code-value-quantity"),
        ("Condition", "onset-date", "Condition.onset.ofType(dateTime) | Condition.onset.ofType(Period)",
         "Condition-onset-date"),
        ("Patient", "email", "Patient.telecom.where(system = 'email')", "individual-email"),
        ("Patient", "birthdate", "Patient.birthDate", "individual-birthdate"),
        ("Condition", "asserted-date",
         "Condition.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/condition-assertedDate')"
         ".value.ofType(dateTime)", "us-core-condition-asserted-date"),
        ("MedicationRequest", "status", "MedicationRequest.status", "medications-status"),
        ("Encounter", "discharge-disposition", "Encounter.hospitalization.dischargeDisposition",
         "us-core-encounter-discharge-disposition"),
    ],
)
def test_expression_and_definition(resource: str, code: str, expression: str, definition: str) -> None:
    p = REGISTRY[resource][code]
    assert p.expression == expression
    assert p.definition.rsplit("/", 1)[1] == definition


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("subject", ["subject"]),
        ("", []),
        ("a.b.c", ["a", "b", "c"]),
        ("extension(http://x.org/a.b).extension(ombCategory).valueCoding",
         ["extension(http://x.org/a.b)", "extension(ombCategory)", "valueCoding"]),
        ("telecom[system=email]", ["telecom[system=email]"]),
    ],
)
def test_split_steps(path: str, steps: list[str]) -> None:
    assert split_steps(path) == steps


# --- the R4 element-model oracle ---------------------------------------------------------------

def _r4_resource_types() -> set[str]:
    names = [c for c in fhirelementfactory.FHIRElementFactory.instantiate.__code__.co_consts
             if isinstance(c, str) and c[:1].isupper() and c.isalpha()]
    found = set()
    for name in names:
        try:
            instance = fhirelementfactory.FHIRElementFactory.instantiate(name, None)
        except TypeError:  # a name in the factory's constants that is not a model class
            continue
        if isinstance(instance, resource.Resource):
            found.add(name)
    return found


_R4_TYPES = _r4_resource_types()

# The element datatypes each parameter type can index (search.html#ptypes). Classes are fhirclient's.
_INDEXABLE: dict[str, tuple[type, ...]] = {
    "token": (str, bool, codeableconcept.CodeableConcept, coding.Coding, identifier.Identifier,
              contactpoint.ContactPoint),
    "string": (str, humanname.HumanName, address.Address),
    "reference": (fhirreference.FHIRReference, str),
    "date": (fhirdate.FHIRDate, period.Period, timing.Timing),
    "quantity": (quantity.Quantity,),
    "number": (float, int),
    "uri": (str,),
}


def _element_type(start: type, path: str) -> type:
    """Walk ``path`` over fhirclient's model classes; fail if a step is not an R4 element."""
    current = start
    for step in split_steps(path):
        name = step.split("(", 1)[0].split("[", 1)[0]
        props = {p[1]: p for p in current().elementProperties()}
        assert name in props, f"{current.__name__} has no element {name!r} (path {path!r})"
        if "(" in step:
            assert props[name][2] is extension.Extension, f"{step!r}: filter by url needs an extension list"
        if "[" in step:
            key = step.split("[", 1)[1].split("=", 1)[0]
            inner = {p[1] for p in props[name][2]().elementProperties()}
            assert key in inner, f"{step!r}: {props[name][2].__name__} has no {key!r}"
        current = props[name][2]
    return current


def _resource_class(resource: str) -> type:
    return type(fhirelementfactory.FHIRElementFactory.instantiate(resource, None))


@pytest.mark.parametrize(("resource", "code"), ALL)
def test_paths_are_r4_elements_of_an_indexable_type(resource: str, code: str) -> None:
    p: SearchParam = REGISTRY[resource][code]
    cls = _resource_class(resource)
    if p.type == "composite":
        for base in p.paths:
            base_cls = _element_type(cls, base) if base else cls
            for part, sub in p.components:
                part_type = REGISTRY[resource][part].type
                assert issubclass(_element_type(base_cls, sub), _INDEXABLE[part_type]), (part, sub)
        return
    derived = (resource, code) == ("Patient", "deceased")  # true/false from deceased[x], see extract.py
    for path in p.paths:
        end = _element_type(cls, path)
        if not derived:
            assert issubclass(end, _INDEXABLE[p.type]), f"{resource}.{path} is {end.__name__}, not {p.type}-indexable"


def test_r4_resource_type_list_is_complete() -> None:
    assert {"Patient", "Observation", "MolecularSequence", "DeviceMetric", "Substance"} <= _R4_TYPES
    assert "ObservationComponent" not in _R4_TYPES
    assert set(REGISTRY) <= _R4_TYPES


@pytest.mark.parametrize("code", sorted(COMMON))
def test_common_paths_are_r4_elements(code: str) -> None:
    p = COMMON[code]
    for path in p.paths:
        assert issubclass(_element_type(_resource_class("Patient"), path), _INDEXABLE[p.type])
