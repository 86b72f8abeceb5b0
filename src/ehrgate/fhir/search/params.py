"""The search parameters EHRGate indexes: one declarative table, resource type -> code -> SearchParam.

Facts (code, type, element path, reference targets, composite parts) come from the FHIR R4
(4.0.1) SearchParameter registry, http://hl7.org/fhir/R4/searchparameter-registry.html, plus the
US Core 6.1 SearchParameters that have no base equivalent (race, ethnicity, gender-identity,
Condition asserted-date, Encounter discharge-disposition, CareTeam role, Goal description).
Where US Core re-declares a base parameter we point ``definition`` at the base one, as US Core
itself asks ("Servers and Clients SHOULD use the standard FHIR SearchParameter").

Path syntax (what ``extract.py`` evaluates; ``.`` separates steps, every step fans out over
arrays, the empty path ``""`` is the resource itself, used by composites):

- ``name``: a JSON property. Choice elements are listed once per concrete type
  (``effectiveDateTime|effectivePeriod``), as FHIR JSON spells them.
- ``name(URL)``: the items of ``name`` (an ``extension`` list) whose ``url`` equals URL, e.g.
  ``extension(http://hl7.org/fhir/us/core/StructureDefinition/us-core-race).extension(ombCategory).valueCoding``
  for ``extension.where(url = '...')``; the URL may contain dots.
- ``name[key=value]``: the items of ``name`` whose ``key`` equals ``value``, e.g.
  ``telecom[system=email]`` for ``telecom.where(system = 'email')``.

Reference ``targets`` are the types a reference may point to; an empty tuple means any type.
Where the spec narrows a shared element (``subject.where(resolve() is Patient)``) targets holds
only the narrowed type, and the extractor indexes only references of a listed type.

``_profile`` is a ``uri`` parameter here: R4 declares it ``uri`` over ``meta.profile`` (canonical),
and later releases call it ``reference``; we match canonical URLs exactly either way.
Not declared: ``special`` parameters (Location ``near``), ``_text``/``_content``/``_list``/``_has``/
``_type`` (not index-backed), ``phonetic`` (needs a phonetic algorithm), and composites whose parts
are dates or references (``code-value-date``, DocumentReference ``relationship``), which
``CompositeRow`` cannot carry.
"""

from __future__ import annotations

from collections.abc import Iterable

from ehrgate.fhir.search.types import PARAM_TYPES, SearchParam

__all__ = ["COMMON", "REGISTRY", "params_for", "split_steps"]

_BASE = "http://hl7.org/fhir/SearchParameter/"
_US_CORE = "http://hl7.org/fhir/us/core/SearchParameter/"
_SD = "http://hl7.org/fhir/StructureDefinition/"
_US_SD = "http://hl7.org/fhir/us/core/StructureDefinition/"

# Multi-resource SearchParameter ids of R4 (one definition shared by many resource types).
CC, CD, CE, CI, CP, CT = (f"clinical-{x}" for x in ("code", "date", "encounter", "identifier", "patient", "type"))
MM, MS = "medications-medication", "medications-status"

# A row before it becomes a SearchParam: (code, type, paths, targets, definition id, narrowed, components)
_Row = tuple[str, str, tuple[str, ...], tuple[str, ...], str, bool, tuple[tuple[str, str], ...]]

# Common reference target sets (R4 Reference(...) lists).
PRACT = "Practitioner PractitionerRole"
WHO = f"{PRACT} Organization Patient RelatedPerson Device"  # Provenance.agent.who and friends
REQUESTER = f"{PRACT} Organization Patient RelatedPerson Device"
PERFORMER_ALL = f"{PRACT} Organization CareTeam HealthcareService Patient Device RelatedPerson"
ACTOR = f"Patient {PRACT} RelatedPerson Device HealthcareService Location"


def _split(paths: str) -> tuple[str, ...]:
    return tuple(paths.split("|"))


def tok(code: str, paths: str, d: str = "") -> _Row:
    return (code, "token", _split(paths), (), d, False, ())


def st(code: str, paths: str, d: str = "") -> _Row:
    return (code, "string", _split(paths), (), d, False, ())


def dt(code: str, paths: str, d: str = "") -> _Row:
    return (code, "date", _split(paths), (), d, False, ())


def ur(code: str, paths: str, d: str = "") -> _Row:
    return (code, "uri", _split(paths), (), d, False, ())


def qt(code: str, paths: str, d: str = "") -> _Row:
    return (code, "quantity", _split(paths), (), d, False, ())


def nm(code: str, paths: str, d: str = "") -> _Row:
    return (code, "number", _split(paths), (), d, False, ())


def rf(code: str, paths: str, targets: str = "", d: str = "", narrow: bool = False) -> _Row:
    """A reference parameter; ``narrow`` marks the spec's ``.where(resolve() is T)`` form."""
    return (code, "reference", _split(paths), tuple(targets.split()), d, narrow, ())


def pat(paths: str, d: str = CP) -> _Row:
    """The ``patient`` parameter over an element that may also point at non-patients."""
    return rf("patient", paths, "Patient", d, narrow=True)


def cp(code: str, base: str, parts: Iterable[tuple[str, str]], d: str = "") -> _Row:
    return (code, "composite", _split(base), (), d, False, tuple(parts))


def _individual(address_defn: str = "individual") -> list[_Row]:
    """Address and telecom parameters shared by Patient, Practitioner, RelatedPerson, Person."""
    a = address_defn
    return [
        st("address", "address", f"{a}-address"),
        st("address-city", "address.city", f"{a}-address-city"),
        st("address-country", "address.country", f"{a}-address-country"),
        st("address-postalcode", "address.postalCode", f"{a}-address-postalcode"),
        st("address-state", "address.state", f"{a}-address-state"),
        tok("address-use", "address.use", f"{a}-address-use"),
        tok("email", "telecom[system=email]", "individual-email"),
        tok("phone", "telecom[system=phone]", "individual-phone"),
        tok("telecom", "telecom", "individual-telecom"),
    ]


_TABLE: dict[str, list[_Row]] = {
    "Patient": [
        *_individual(),
        tok("active", "active"),
        dt("birthdate", "birthDate", "individual-birthdate"),
        dt("death-date", "deceasedDateTime"),
        tok("deceased", "deceasedBoolean|deceasedDateTime"),  # derived true/false, see extract.py
        st("family", "name.family", "individual-family"),
        tok("gender", "gender", "individual-gender"),
        rf("general-practitioner", "generalPractitioner", f"Organization {PRACT}"),
        st("given", "name.given", "individual-given"),
        tok("identifier", "identifier"),
        tok("language", "communication.language"),
        rf("link", "link.other", "Patient RelatedPerson"),
        st("name", "name"),
        rf("organization", "managingOrganization", "Organization"),
        tok("race", f"extension({_US_SD}us-core-race).extension(ombCategory).valueCoding"
            f"|extension({_US_SD}us-core-race).extension(detailed).valueCoding", "us-core-race"),
        tok("ethnicity", f"extension({_US_SD}us-core-ethnicity).extension(ombCategory).valueCoding"
            f"|extension({_US_SD}us-core-ethnicity).extension(detailed).valueCoding", "us-core-ethnicity"),
        tok("gender-identity", f"extension({_US_SD}us-core-genderIdentity).valueCodeableConcept",
            "us-core-patient-gender-identity"),
    ],
    "Practitioner": [
        *_individual(),
        tok("active", "active"),
        tok("communication", "communication"),
        st("family", "name.family", "individual-family"),
        tok("gender", "gender", "individual-gender"),
        st("given", "name.given", "individual-given"),
        tok("identifier", "identifier"),
        st("name", "name"),
    ],
    "PractitionerRole": [
        tok("active", "active"),
        dt("date", "period"),
        tok("email", "telecom[system=email]", "individual-email"),
        rf("endpoint", "endpoint", "Endpoint"),
        tok("identifier", "identifier"),
        rf("location", "location", "Location"),
        rf("organization", "organization", "Organization"),
        tok("phone", "telecom[system=phone]", "individual-phone"),
        rf("practitioner", "practitioner", "Practitioner"),
        tok("role", "code"),
        rf("service", "healthcareService", "HealthcareService"),
        tok("specialty", "specialty"),
        tok("telecom", "telecom", "individual-telecom"),
    ],
    "Organization": [
        tok("active", "active"),
        st("address", "address"),
        st("address-city", "address.city"),
        st("address-country", "address.country"),
        st("address-postalcode", "address.postalCode"),
        st("address-state", "address.state"),
        tok("address-use", "address.use"),
        rf("endpoint", "endpoint", "Endpoint"),
        tok("identifier", "identifier"),
        st("name", "name|alias"),
        rf("partof", "partOf", "Organization"),
        tok("type", "type"),
    ],
    "Location": [
        st("address", "address"),
        st("address-city", "address.city"),
        st("address-country", "address.country"),
        st("address-postalcode", "address.postalCode"),
        st("address-state", "address.state"),
        tok("address-use", "address.use"),
        rf("endpoint", "endpoint", "Endpoint"),
        tok("identifier", "identifier"),
        st("name", "name|alias"),
        tok("operational-status", "operationalStatus"),
        rf("organization", "managingOrganization", "Organization"),
        rf("partof", "partOf", "Location"),
        tok("status", "status"),
        tok("type", "type"),
    ],
    "Encounter": [
        rf("account", "account", "Account"),
        rf("appointment", "appointment", "Appointment"),
        rf("based-on", "basedOn", "ServiceRequest"),
        tok("class", "class"),
        dt("date", "period", CD),
        rf("diagnosis", "diagnosis.condition", "Condition Procedure"),
        tok("discharge-disposition", "hospitalization.dischargeDisposition", "us-core-encounter-discharge-disposition"),
        rf("episode-of-care", "episodeOfCare", "EpisodeOfCare"),
        tok("identifier", "identifier", CI),
        qt("length", "length"),
        rf("location", "location.location", "Location"),
        dt("location-period", "location.period"),
        rf("part-of", "partOf", "Encounter"),
        rf("participant", "participant.individual", f"{PRACT} RelatedPerson"),
        tok("participant-type", "participant.type"),
        pat("subject"),
        rf("practitioner", "participant.individual", "Practitioner", narrow=True),
        tok("reason-code", "reasonCode"),
        rf("reason-reference", "reasonReference", "Condition Procedure Observation ImmunizationRecommendation"),
        rf("service-provider", "serviceProvider", "Organization"),
        tok("special-arrangement", "hospitalization.specialArrangement"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group"),
        tok("type", "type", CT),
    ],
    "Condition": [
        qt("abatement-age", "abatementAge"),
        dt("abatement-date", "abatementDateTime|abatementPeriod"),
        st("abatement-string", "abatementString"),
        dt("asserted-date", f"extension({_SD}condition-assertedDate).valueDateTime", "us-core-condition-asserted-date"),
        rf("asserter", "asserter", f"{PRACT} Patient RelatedPerson"),
        tok("body-site", "bodySite"),
        tok("category", "category"),
        tok("clinical-status", "clinicalStatus"),
        tok("code", "code", CC),
        rf("encounter", "encounter", "Encounter"),
        tok("evidence", "evidence.code"),
        rf("evidence-detail", "evidence.detail"),
        tok("identifier", "identifier", CI),
        qt("onset-age", "onsetAge"),
        dt("onset-date", "onsetDateTime|onsetPeriod"),
        st("onset-info", "onsetString"),
        pat("subject"),
        dt("recorded-date", "recordedDate"),
        tok("severity", "severity"),
        tok("stage", "stage.summary"),
        rf("subject", "subject", "Patient Group"),
        tok("verification-status", "verificationStatus"),
    ],
    "Observation": [
        rf("based-on", "basedOn", "CarePlan DeviceRequest ImmunizationRecommendation MedicationRequest "
           "NutritionOrder ServiceRequest"),
        tok("category", "category"),
        tok("code", "code", CC),
        tok("combo-code", "code|component.code"),
        tok("combo-data-absent-reason", "dataAbsentReason|component.dataAbsentReason"),
        tok("combo-value-concept", "valueCodeableConcept|component.valueCodeableConcept"),
        qt("combo-value-quantity", "valueQuantity|component.valueQuantity"),
        tok("component-code", "component.code"),
        tok("component-data-absent-reason", "component.dataAbsentReason"),
        tok("component-value-concept", "component.valueCodeableConcept"),
        qt("component-value-quantity", "component.valueQuantity"),
        tok("data-absent-reason", "dataAbsentReason"),
        dt("date", "effectiveDateTime|effectivePeriod|effectiveTiming|effectiveInstant", CD),
        rf("derived-from", "derivedFrom", "DocumentReference ImagingStudy Media QuestionnaireResponse Observation "
           "MolecularSequence"),
        rf("device", "device", "Device DeviceMetric"),
        rf("encounter", "encounter", "Encounter", CE),
        rf("focus", "focus"),
        rf("has-member", "hasMember", "Observation QuestionnaireResponse MolecularSequence"),
        tok("identifier", "identifier", CI),
        tok("method", "method"),
        rf("part-of", "partOf", "MedicationAdministration MedicationDispense MedicationStatement Procedure "
           "Immunization ImagingStudy"),
        pat("subject"),
        rf("performer", "performer", f"{PRACT} Organization CareTeam Patient RelatedPerson"),
        rf("specimen", "specimen", "Specimen"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Device Location"),
        tok("value-concept", "valueCodeableConcept"),
        dt("value-date", "valueDateTime|valuePeriod"),
        qt("value-quantity", "valueQuantity"),
        st("value-string", "valueString"),
        cp("code-value-concept", "", [("code", "code"), ("value-concept", "valueCodeableConcept")]),
        cp("code-value-quantity", "", [("code", "code"), ("value-quantity", "valueQuantity")]),
        cp("code-value-string", "", [("code", "code"), ("value-string", "valueString")]),
        cp("combo-code-value-concept", "|component",
           [("combo-code", "code"), ("combo-value-concept", "valueCodeableConcept")]),
        cp("combo-code-value-quantity", "|component",
           [("combo-code", "code"), ("combo-value-quantity", "valueQuantity")]),
        cp("component-code-value-concept", "component",
           [("component-code", "code"), ("component-value-concept", "valueCodeableConcept")]),
        cp("component-code-value-quantity", "component",
           [("component-code", "code"), ("component-value-quantity", "valueQuantity")]),
    ],
    "DiagnosticReport": [
        rf("based-on", "basedOn", "CarePlan ImmunizationRecommendation MedicationRequest NutritionOrder "
           "ServiceRequest"),
        tok("category", "category"),
        tok("code", "code", CC),
        tok("conclusion", "conclusionCode"),
        dt("date", "effectiveDateTime|effectivePeriod", CD),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        dt("issued", "issued"),
        rf("media", "media.link", "Media"),
        pat("subject"),
        rf("performer", "performer", f"{PRACT} Organization CareTeam"),
        rf("result", "result", "Observation"),
        rf("results-interpreter", "resultsInterpreter", f"{PRACT} Organization CareTeam"),
        rf("specimen", "specimen", "Specimen"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Device Location"),
    ],
    "AllergyIntolerance": [
        rf("asserter", "asserter", f"Patient RelatedPerson {PRACT}"),
        tok("category", "category"),
        tok("clinical-status", "clinicalStatus"),
        tok("code", "code|reaction.substance", CC),
        tok("criticality", "criticality"),
        dt("date", "recordedDate", CD),
        tok("identifier", "identifier", CI),
        dt("last-date", "lastOccurrence"),
        tok("manifestation", "reaction.manifestation"),
        dt("onset", "reaction.onset"),
        rf("patient", "patient", "Patient", CP),
        rf("recorder", "recorder", f"{PRACT} Patient RelatedPerson"),
        tok("route", "reaction.exposureRoute"),
        tok("severity", "reaction.severity"),
        tok("type", "type", CT),
        tok("verification-status", "verificationStatus"),
    ],
    "MedicationRequest": [
        dt("authoredon", "authoredOn"),
        tok("category", "category"),
        tok("code", "medicationCodeableConcept", CC),
        dt("date", "dosageInstruction.timing.event", "medications-date"),
        rf("encounter", "encounter", "Encounter", "medications-encounter"),
        tok("identifier", "identifier", CI),
        rf("intended-dispenser", "dispenseRequest.performer", "Organization"),
        rf("intended-performer", "performer", f"{PRACT} Organization Patient Device RelatedPerson CareTeam"),
        tok("intended-performertype", "performerType"),
        tok("intent", "intent"),
        rf("medication", "medicationReference", "Medication", MM),
        pat("subject"),
        tok("priority", "priority"),
        rf("requester", "requester", REQUESTER),
        tok("status", "status", MS),
        rf("subject", "subject", "Patient Group"),
    ],
    "MedicationDispense": [
        tok("code", "medicationCodeableConcept", CC),
        rf("context", "context", "Encounter EpisodeOfCare"),
        rf("destination", "destination", "Location"),
        tok("identifier", "identifier", CI),
        rf("medication", "medicationReference", "Medication", MM),
        pat("subject"),
        rf("performer", "performer.actor", REQUESTER),
        rf("prescription", "authorizingPrescription", "MedicationRequest"),
        rf("receiver", "receiver", "Patient Practitioner"),
        rf("responsibleparty", "substitution.responsibleParty", PRACT),
        tok("status", "status", MS),
        rf("subject", "subject", "Patient Group"),
        tok("type", "type"),
        dt("whenhandedover", "whenHandedOver"),
        dt("whenprepared", "whenPrepared"),
    ],
    "MedicationAdministration": [
        tok("code", "medicationCodeableConcept", CC),
        rf("context", "context", "Encounter EpisodeOfCare"),
        rf("device", "device", "Device"),
        dt("effective-time", "effectiveDateTime|effectivePeriod"),
        tok("identifier", "identifier", CI),
        rf("medication", "medicationReference", "Medication", MM),
        pat("subject"),
        rf("performer", "performer.actor", f"{PRACT} Patient RelatedPerson Device"),
        tok("reason-given", "reasonCode"),
        tok("reason-not-given", "statusReason"),
        rf("request", "request", "MedicationRequest"),
        tok("status", "status", MS),
        rf("subject", "subject", "Patient Group"),
    ],
    "MedicationStatement": [
        tok("category", "category"),
        tok("code", "medicationCodeableConcept", CC),
        rf("context", "context", "Encounter EpisodeOfCare"),
        dt("effective", "effectiveDateTime|effectivePeriod"),
        tok("identifier", "identifier", CI),
        rf("medication", "medicationReference", "Medication", MM),
        rf("part-of", "partOf", "MedicationAdministration MedicationDispense MedicationStatement Procedure "
           "Observation"),
        pat("subject"),
        rf("source", "informationSource", f"Patient {PRACT} RelatedPerson Organization"),
        tok("status", "status", MS),
        rf("subject", "subject", "Patient Group"),
    ],
    "Medication": [
        tok("code", "code", CC),
        dt("expiration-date", "batch.expirationDate"),
        tok("form", "form"),
        tok("identifier", "identifier"),
        rf("ingredient", "ingredient.itemReference", "Substance Medication"),
        tok("ingredient-code", "ingredient.itemCodeableConcept"),
        tok("lot-number", "batch.lotNumber"),
        rf("manufacturer", "manufacturer", "Organization"),
        tok("status", "status"),
    ],
    "Immunization": [
        dt("date", "occurrenceDateTime", CD),
        tok("identifier", "identifier", CI),
        rf("location", "location", "Location"),
        st("lot-number", "lotNumber"),
        rf("manufacturer", "manufacturer", "Organization"),
        rf("patient", "patient", "Patient", CP),
        rf("performer", "performer.actor", f"{PRACT} Organization"),
        rf("reaction", "reaction.detail", "Observation"),
        dt("reaction-date", "reaction.date"),
        tok("reason-code", "reasonCode"),
        rf("reason-reference", "reasonReference", "Condition Observation DiagnosticReport"),
        st("series", "protocolApplied.series"),
        tok("status", "status"),
        tok("status-reason", "statusReason"),
        tok("target-disease", "protocolApplied.targetDisease"),
        tok("vaccine-code", "vaccineCode"),
    ],
    "Procedure": [
        rf("based-on", "basedOn", "CarePlan ServiceRequest"),
        tok("category", "category"),
        tok("code", "code", CC),
        dt("date", "performedDateTime|performedPeriod", CD),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        rf("instantiates-canonical", "instantiatesCanonical",
           "PlanDefinition ActivityDefinition Measure OperationDefinition Questionnaire"),
        ur("instantiates-uri", "instantiatesUri"),
        rf("location", "location", "Location"),
        rf("part-of", "partOf", "Procedure Observation MedicationAdministration"),
        pat("subject"),
        rf("performer", "performer.actor", f"{PRACT} Organization Patient RelatedPerson Device"),
        tok("reason-code", "reasonCode"),
        rf("reason-reference", "reasonReference", "Condition Observation Procedure DiagnosticReport DocumentReference"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group"),
    ],
    "DocumentReference": [
        rf("authenticator", "authenticator", f"{PRACT} Organization"),
        rf("author", "author", f"{PRACT} Organization Device Patient RelatedPerson"),
        tok("category", "category"),
        tok("contenttype", "content.attachment.contentType"),
        rf("custodian", "custodian", "Organization"),
        dt("date", "date"),
        st("description", "description"),
        rf("encounter", "context.encounter", "Encounter EpisodeOfCare", CE),
        tok("event", "context.event"),
        tok("facility", "context.facilityType"),
        tok("format", "content.format"),
        tok("identifier", "masterIdentifier|identifier", CI),
        tok("language", "content.attachment.language"),
        ur("location", "content.attachment.url"),
        pat("subject"),
        dt("period", "context.period"),
        rf("related", "context.related"),
        rf("relatesto", "relatesTo.target", "DocumentReference"),
        tok("relation", "relatesTo.code"),
        tok("security-label", "securityLabel"),
        tok("setting", "context.practiceSetting"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Practitioner Group Device"),
        tok("type", "type", CT),
    ],
    "CarePlan": [
        tok("activity-code", "activity.detail.code"),
        dt("activity-date", "activity.detail.scheduledTiming|activity.detail.scheduledPeriod"),
        rf("activity-reference", "activity.reference", "Appointment CommunicationRequest DeviceRequest "
           "MedicationRequest NutritionOrder Task ServiceRequest VisionPrescription RequestGroup"),
        rf("based-on", "basedOn", "CarePlan"),
        rf("care-team", "careTeam", "CareTeam"),
        tok("category", "category"),
        rf("condition", "addresses", "Condition"),
        dt("date", "period", CD),
        rf("encounter", "encounter", "Encounter"),
        rf("goal", "goal", "Goal"),
        tok("identifier", "identifier", CI),
        rf("instantiates-canonical", "instantiatesCanonical", "PlanDefinition Questionnaire Measure "
           "ActivityDefinition OperationDefinition"),
        ur("instantiates-uri", "instantiatesUri"),
        tok("intent", "intent"),
        rf("part-of", "partOf", "CarePlan"),
        pat("subject"),
        rf("performer", "activity.detail.performer", f"{PRACT} Organization RelatedPerson Patient CareTeam "
           "HealthcareService Device"),
        rf("replaces", "replaces", "CarePlan"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group"),
    ],
    "CareTeam": [
        tok("category", "category"),
        dt("date", "period", CD),
        rf("encounter", "encounter", "Encounter"),
        tok("identifier", "identifier", CI),
        rf("participant", "participant.member", f"{PRACT} RelatedPerson Patient Organization CareTeam"),
        pat("subject"),
        tok("role", "participant.role", "us-core-careteam-role"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group"),
    ],
    "Goal": [
        tok("achievement-status", "achievementStatus"),
        tok("category", "category"),
        tok("description", "description", "us-core-goal-description"),
        tok("identifier", "identifier", CI),
        tok("lifecycle-status", "lifecycleStatus"),
        pat("subject"),
        dt("start-date", "startDate"),
        rf("subject", "subject", "Patient Group Organization"),
        dt("target-date", "target.dueDate"),
    ],
    "Device": [
        st("device-name", "deviceName.name|type.coding.display|type.text"),
        tok("identifier", "identifier"),
        rf("location", "location", "Location"),
        st("manufacturer", "manufacturer"),
        st("model", "modelNumber"),
        rf("organization", "owner", "Organization"),
        rf("patient", "patient", "Patient"),
        tok("status", "status"),
        tok("type", "type"),
        st("udi-carrier", "udiCarrier.carrierHRF"),
        st("udi-di", "udiCarrier.deviceIdentifier"),
        ur("url", "url"),
    ],
    "Coverage": [
        rf("beneficiary", "beneficiary", "Patient"),
        tok("class-type", "class.type"),
        st("class-value", "class.value"),
        st("dependent", "dependent"),
        tok("identifier", "identifier"),
        rf("patient", "beneficiary", "Patient"),
        rf("payor", "payor", "Organization Patient RelatedPerson"),
        rf("policy-holder", "policyHolder", "Patient RelatedPerson Organization"),
        tok("status", "status"),
        rf("subscriber", "subscriber", "Patient RelatedPerson"),
        tok("type", "type"),
    ],
    "ServiceRequest": [
        dt("authored", "authoredOn"),
        rf("based-on", "basedOn", "CarePlan ServiceRequest MedicationRequest"),
        tok("body-site", "bodySite"),
        tok("category", "category"),
        tok("code", "code", CC),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        rf("instantiates-canonical", "instantiatesCanonical", "ActivityDefinition PlanDefinition"),
        ur("instantiates-uri", "instantiatesUri"),
        tok("intent", "intent"),
        dt("occurrence", "occurrenceDateTime|occurrencePeriod|occurrenceTiming"),
        pat("subject"),
        rf("performer", "performer", PERFORMER_ALL),
        tok("performer-type", "performerType"),
        tok("priority", "priority"),
        rf("replaces", "replaces", "ServiceRequest"),
        rf("requester", "requester", REQUESTER),
        tok("requisition", "requisition"),
        rf("specimen", "specimen", "Specimen"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Location Device"),
    ],
    "Specimen": [
        tok("accession", "accessionIdentifier"),
        tok("bodysite", "collection.bodySite"),
        dt("collected", "collection.collectedDateTime|collection.collectedPeriod"),
        rf("collector", "collection.collector", PRACT),
        tok("container", "container.type"),
        tok("container-id", "container.identifier"),
        tok("identifier", "identifier"),
        rf("parent", "parent", "Specimen"),
        pat("subject", ""),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Device Substance Location"),
        tok("type", "type"),
    ],
    "Provenance": [
        rf("agent", "agent.who", WHO),
        tok("agent-role", "agent.role"),
        tok("agent-type", "agent.type"),
        rf("entity", "entity.what"),
        rf("location", "location", "Location"),
        pat("target", ""),
        dt("recorded", "recorded"),
        tok("signature-type", "signature.type"),
        rf("target", "target"),
        dt("when", "occurredDateTime"),
    ],
    "RelatedPerson": [
        *_individual(),
        tok("active", "active"),
        dt("birthdate", "birthDate", "individual-birthdate"),
        tok("gender", "gender", "individual-gender"),
        tok("identifier", "identifier"),
        st("name", "name"),
        rf("patient", "patient", "Patient"),
        tok("relationship", "relationship"),
    ],
    "QuestionnaireResponse": [
        rf("author", "author", f"Device {PRACT} Patient RelatedPerson Organization"),
        dt("authored", "authored"),
        rf("based-on", "basedOn", "CarePlan ServiceRequest"),
        rf("encounter", "encounter", "Encounter"),
        tok("identifier", "identifier"),
        rf("part-of", "partOf", "Observation Procedure"),
        pat("subject", ""),
        rf("questionnaire", "questionnaire", "Questionnaire"),
        rf("source", "source", f"Patient {PRACT} RelatedPerson"),
        tok("status", "status"),
        rf("subject", "subject"),
    ],
    "Questionnaire": [
        tok("code", "item.code"),
        tok("context", "useContext.valueCodeableConcept"),
        tok("context-type", "useContext.code"),
        dt("date", "date"),
        ur("definition", "item.definition"),
        st("description", "description"),
        dt("effective", "effectivePeriod"),
        tok("identifier", "identifier"),
        tok("jurisdiction", "jurisdiction"),
        st("name", "name"),
        st("publisher", "publisher"),
        tok("status", "status"),
        tok("subject-type", "subjectType"),
        st("title", "title"),
        ur("url", "url"),
        tok("version", "version"),
    ],
    "Appointment": [
        rf("actor", "participant.actor", ACTOR),
        tok("appointment-type", "appointmentType"),
        rf("based-on", "basedOn", "ServiceRequest"),
        dt("date", "start"),
        tok("identifier", "identifier"),
        rf("location", "participant.actor", "Location", narrow=True),
        tok("part-status", "participant.status"),
        pat("participant.actor", ""),
        rf("practitioner", "participant.actor", "Practitioner", narrow=True),
        tok("reason-code", "reasonCode"),
        rf("reason-reference", "reasonReference", "Condition Procedure Observation ImmunizationRecommendation"),
        tok("service-category", "serviceCategory"),
        tok("service-type", "serviceType"),
        rf("slot", "slot", "Slot"),
        tok("specialty", "specialty"),
        tok("status", "status"),
        rf("supporting-info", "supportingInformation"),
    ],
    "AppointmentResponse": [
        rf("actor", "actor", ACTOR),
        rf("appointment", "appointment", "Appointment"),
        tok("identifier", "identifier"),
        rf("location", "actor", "Location", narrow=True),
        tok("part-status", "participantStatus"),
        pat("actor", ""),
        rf("practitioner", "actor", "Practitioner", narrow=True),
    ],
    "Slot": [
        tok("appointment-type", "appointmentType"),
        tok("identifier", "identifier"),
        rf("schedule", "schedule", "Schedule"),
        tok("service-category", "serviceCategory"),
        tok("service-type", "serviceType"),
        tok("specialty", "specialty"),
        dt("start", "start"),
        tok("status", "status"),
    ],
    "Schedule": [
        tok("active", "active"),
        rf("actor", "actor", ACTOR),
        dt("date", "planningHorizon"),
        tok("identifier", "identifier"),
        tok("service-category", "serviceCategory"),
        tok("service-type", "serviceType"),
        tok("specialty", "specialty"),
    ],
    "Task": [
        dt("authored-on", "authoredOn"),
        rf("based-on", "basedOn"),
        tok("business-status", "businessStatus"),
        tok("code", "code"),
        rf("encounter", "encounter", "Encounter"),
        rf("focus", "focus"),
        tok("group-identifier", "groupIdentifier"),
        tok("identifier", "identifier"),
        tok("intent", "intent"),
        dt("modified", "lastModified"),
        rf("owner", "owner", PERFORMER_ALL),
        rf("part-of", "partOf", "Task"),
        pat("for", ""),
        tok("performer", "performerType"),
        dt("period", "executionPeriod"),
        tok("priority", "priority"),
        rf("requester", "requester", REQUESTER),
        tok("status", "status"),
        rf("subject", "for"),
    ],
    "Group": [
        tok("actual", "actual"),
        tok("characteristic", "characteristic.code"),
        tok("code", "code"),
        tok("exclude", "characteristic.exclude"),
        tok("identifier", "identifier"),
        rf("managing-entity", "managingEntity", f"Organization RelatedPerson {PRACT}"),
        rf("member", "member.entity", f"Patient {PRACT} Device Medication Substance Group"),
        tok("type", "type"),
        tok("value", "characteristic.valueCodeableConcept|characteristic.valueBoolean"),
        cp("characteristic-value", "characteristic", [("characteristic", "code"), ("value", "valueCodeableConcept")]),
    ],
    "AuditEvent": [
        tok("action", "action"),
        st("address", "agent.network.address"),
        rf("agent", "agent.who", WHO),
        st("agent-name", "agent.name"),
        tok("agent-role", "agent.role"),
        tok("altid", "agent.altId"),
        dt("date", "recorded"),
        rf("entity", "entity.what"),
        st("entity-name", "entity.name"),
        tok("entity-role", "entity.role"),
        tok("entity-type", "entity.type"),
        tok("outcome", "outcome"),
        rf("patient", "agent.who|entity.what", "Patient", narrow=True),
        ur("policy", "agent.policy"),
        tok("site", "source.site"),
        rf("source", "source.observer", WHO),
        tok("subtype", "subtype"),
        tok("type", "type"),
    ],
    "FamilyMemberHistory": [
        tok("code", "condition.code", CC),
        dt("date", "date", CD),
        tok("identifier", "identifier", CI),
        rf("patient", "patient", "Patient", CP),
        tok("relationship", "relationship"),
        tok("sex", "sex"),
        tok("status", "status"),
    ],
    "Claim": [
        rf("care-team", "careTeam.provider", f"{PRACT} Organization"),
        dt("created", "created"),
        rf("encounter", "item.encounter", "Encounter"),
        rf("enterer", "enterer", PRACT),
        rf("facility", "facility", "Location"),
        tok("identifier", "identifier"),
        rf("insurer", "insurer", "Organization"),
        rf("patient", "patient", "Patient"),
        rf("payee", "payee.party", f"{PRACT} Organization Patient RelatedPerson"),
        tok("priority", "priority"),
        rf("provider", "provider", f"{PRACT} Organization"),
        tok("status", "status"),
        tok("use", "use"),
    ],
    "ExplanationOfBenefit": [
        rf("care-team", "careTeam.provider", f"{PRACT} Organization"),
        rf("claim", "claim", "Claim"),
        rf("coverage", "insurance.coverage", "Coverage"),
        dt("created", "created"),
        st("disposition", "disposition"),
        rf("encounter", "item.encounter", "Encounter"),
        rf("enterer", "enterer", PRACT),
        rf("facility", "facility", "Location"),
        tok("identifier", "identifier"),
        rf("patient", "patient", "Patient"),
        rf("payee", "payee.party", f"{PRACT} Organization Patient RelatedPerson"),
        rf("provider", "provider", f"{PRACT} Organization"),
        tok("status", "status"),
    ],
    "ImagingStudy": [
        rf("basedon", "basedOn", "CarePlan ServiceRequest Appointment AppointmentResponse Task"),
        tok("bodysite", "series.bodySite"),
        tok("dicom-class", "series.instance.sopClass"),
        rf("encounter", "encounter", "Encounter"),
        rf("endpoint", "endpoint|series.endpoint", "Endpoint"),
        tok("identifier", "identifier", CI),
        tok("instance", "series.instance.uid"),
        rf("interpreter", "interpreter", PRACT),
        tok("modality", "series.modality"),
        pat("subject"),
        rf("performer", "series.performer.actor", f"{PRACT} Organization CareTeam Patient Device RelatedPerson"),
        tok("reason", "reasonCode"),
        rf("referrer", "referrer", PRACT),
        tok("series", "series.uid"),
        dt("started", "started"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Device Group"),
    ],
    "Media": [
        rf("based-on", "basedOn", "ServiceRequest CarePlan"),
        dt("created", "createdDateTime|createdPeriod"),
        rf("device", "device", "Device DeviceMetric"),
        rf("encounter", "encounter", "Encounter"),
        tok("identifier", "identifier"),
        tok("modality", "modality"),
        rf("operator", "operator", f"{PRACT} Organization CareTeam Patient Device RelatedPerson"),
        pat("subject", ""),
        tok("site", "bodySite"),
        tok("status", "status"),
        rf("subject", "subject", f"Patient {PRACT} Group Device Specimen Location"),
        tok("type", "type"),
        tok("view", "view"),
    ],
    "Composition": [
        rf("attester", "attester.party", f"Patient {PRACT} RelatedPerson Organization"),
        rf("author", "author", f"{PRACT} Device Patient RelatedPerson Organization"),
        tok("category", "category"),
        tok("confidentiality", "confidentiality"),
        tok("context", "event.code"),
        dt("date", "date", CD),
        rf("encounter", "encounter", "Encounter", CE),
        rf("entry", "section.entry"),
        tok("identifier", "identifier", CI),
        pat("subject"),
        dt("period", "event.period"),
        tok("section", "section.code"),
        tok("status", "status"),
        rf("subject", "subject"),
        st("title", "title"),
        tok("type", "type", CT),
    ],
    "Consent": [
        tok("action", "provision.action"),
        rf("actor", "provision.actor.reference", f"Device Group CareTeam Organization Patient {PRACT} RelatedPerson"),
        tok("category", "category"),
        rf("consentor", "performer", f"Organization Patient {PRACT} RelatedPerson"),
        rf("data", "provision.data.reference"),
        dt("date", "dateTime", CD),
        tok("identifier", "identifier", CI),
        rf("organization", "organization", "Organization"),
        rf("patient", "patient", "Patient", CP),
        dt("period", "provision.period"),
        tok("purpose", "provision.purpose"),
        tok("scope", "scope"),
        tok("security-label", "provision.securityLabel"),
        rf("source-reference", "sourceReference", "Consent DocumentReference Contract QuestionnaireResponse"),
        tok("status", "status"),
    ],
    "EpisodeOfCare": [
        rf("care-manager", "careManager", PRACT),
        rf("condition", "diagnosis.condition", "Condition"),
        dt("date", "period", CD),
        tok("identifier", "identifier", CI),
        rf("incoming-referral", "referralRequest", "ServiceRequest"),
        rf("organization", "managingOrganization", "Organization"),
        rf("patient", "patient", "Patient", CP),
        tok("status", "status"),
        tok("type", "type", CT),
    ],
    "Flag": [
        rf("author", "author", f"Device Organization Patient {PRACT}"),
        dt("date", "period", CD),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier"),
        pat("subject"),
        rf("subject", "subject", f"Patient Location Group Organization {PRACT} PlanDefinition Medication Procedure"),
    ],
    "List": [
        tok("code", "code", CC),
        dt("date", "date", CD),
        tok("empty-reason", "emptyReason"),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        rf("item", "entry.item"),
        st("notes", "note.text"),
        pat("subject"),
        rf("source", "source", f"{PRACT} Patient Device"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Device Location"),
        st("title", "title"),
    ],
    "Communication": [
        rf("based-on", "basedOn"),
        tok("category", "category"),
        rf("encounter", "encounter", "Encounter"),
        tok("identifier", "identifier"),
        tok("medium", "medium"),
        rf("part-of", "partOf"),
        pat("subject", ""),
        dt("received", "received"),
        rf("recipient", "recipient", f"Device Organization Patient {PRACT} RelatedPerson Group CareTeam "
           "HealthcareService"),
        rf("sender", "sender", f"Device Organization Patient {PRACT} RelatedPerson HealthcareService"),
        dt("sent", "sent"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group"),
    ],
    "DeviceRequest": [
        dt("authored-on", "authoredOn"),
        rf("based-on", "basedOn"),
        tok("code", "codeCodeableConcept", CC),
        rf("device", "codeReference", "Device"),
        rf("encounter", "encounter", "Encounter", CE),
        dt("event-date", "occurrenceDateTime|occurrencePeriod"),
        tok("group-identifier", "groupIdentifier"),
        tok("identifier", "identifier", CI),
        tok("intent", "intent"),
        pat("subject"),
        rf("performer", "performer", PERFORMER_ALL),
        rf("requester", "requester", f"Device {PRACT} Organization"),
        tok("status", "status"),
        rf("subject", "subject", "Patient Group Location Device"),
    ],
    "DeviceUseStatement": [
        rf("device", "device", "Device"),
        tok("identifier", "identifier"),
        pat("subject"),
        rf("subject", "subject", "Patient Group"),
    ],
    "NutritionOrder": [
        dt("datetime", "dateTime"),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        tok("oraldiet", "oralDiet.type"),
        rf("patient", "patient", "Patient", CP),
        rf("provider", "orderer", PRACT),
        tok("status", "status"),
        tok("supplement", "supplement.type"),
    ],
    "RiskAssessment": [
        rf("condition", "condition", "Condition"),
        dt("date", "occurrenceDateTime", CD),
        rf("encounter", "encounter", "Encounter", CE),
        tok("identifier", "identifier", CI),
        tok("method", "method"),
        pat("subject"),
        rf("performer", "performer", f"{PRACT} Device"),
        nm("probability", "prediction.probabilityDecimal"),
        tok("risk", "prediction.qualitativeRisk"),
        rf("subject", "subject", "Patient Group"),
    ],
    "SupplyDelivery": [
        tok("identifier", "identifier", CI),
        rf("patient", "patient", "Patient", CP),
        rf("receiver", "receiver", PRACT),
        tok("status", "status"),
        rf("supplier", "supplier", f"{PRACT} Organization"),
    ],
    "Endpoint": [
        tok("connection-type", "connectionType"),
        tok("identifier", "identifier"),
        st("name", "name"),
        rf("organization", "managingOrganization", "Organization"),
        tok("payload-type", "payloadType"),
        tok("status", "status"),
    ],
    "HealthcareService": [
        tok("active", "active"),
        tok("characteristic", "characteristic"),
        rf("coverage-area", "coverageArea", "Location"),
        rf("endpoint", "endpoint", "Endpoint"),
        tok("identifier", "identifier"),
        rf("location", "location", "Location"),
        st("name", "name"),
        rf("organization", "providedBy", "Organization"),
        tok("program", "program"),
        tok("service-category", "category"),
        tok("service-type", "type"),
        tok("specialty", "specialty"),
    ],
    "Person": [
        *_individual(),
        dt("birthdate", "birthDate", "individual-birthdate"),
        tok("gender", "gender", "individual-gender"),
        tok("identifier", "identifier"),
        rf("link", "link.target", "Patient Practitioner RelatedPerson Person"),
        st("name", "name"),
        rf("organization", "managingOrganization", "Organization"),
        rf("patient", "link.target", "Patient", narrow=True),
        rf("practitioner", "link.target", "Practitioner", narrow=True),
        rf("relatedperson", "link.target", "RelatedPerson", narrow=True),
    ],
    "Basic": [
        rf("author", "author", f"{PRACT} Patient RelatedPerson Organization"),
        tok("code", "code"),
        dt("created", "created"),
        tok("identifier", "identifier"),
        pat("subject", ""),
        rf("subject", "subject"),
    ],
    "Account": [
        tok("identifier", "identifier"),
        st("name", "name"),
        rf("owner", "owner", "Organization"),
        pat("subject", ""),
        dt("period", "servicePeriod"),
        tok("status", "status"),
        rf("subject", "subject", f"Patient Device {PRACT} Location HealthcareService Organization"),
        tok("type", "type"),
    ],
    "Binary": [],
}

# http://hl7.org/fhir/R4/search.html#all - the parameters that apply to every resource.
_COMMON_ROWS: list[_Row] = [
    tok("_id", "id", "Resource-id"),
    dt("_lastUpdated", "meta.lastUpdated", "Resource-lastUpdated"),
    ur("_profile", "meta.profile", "Resource-profile"),
    tok("_security", "meta.security", "Resource-security"),
    ur("_source", "meta.source", "Resource-source"),
    tok("_tag", "meta.tag", "Resource-tag"),
]

_PRIMITIVE_SUFFIXES = {
    "Boolean": "boolean", "Code": "code", "Date": "date", "DateTime": "dateTime", "Decimal": "decimal",
    "Instant": "instant", "Integer": "integer", "String": "string", "Time": "time", "Uri": "uri",
}
_COMPLEX_SUFFIXES = ("CodeableConcept", "Coding", "Period", "Quantity", "Range", "Reference", "Timing", "Age")
# Choice elements ([x]) used in the table; their concrete JSON names become ``.ofType(T)`` in FHIRPath.
_CHOICE_PREFIXES = frozenset({
    "abatement", "code", "collected", "created", "deceased", "due", "effective", "item", "medication",
    "occurred", "occurrence", "onset", "performed", "probability", "scheduled", "source", "start", "value",
})


def split_steps(path: str) -> list[str]:
    """Split a table path on ``.`` outside ``(...)`` and ``[...]`` (URLs in filters contain dots)."""
    steps: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in path:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "." and depth == 0:
            steps.append("".join(current))
            current = []
        else:
            current.append(ch)
    steps.append("".join(current))
    return [s for s in steps if s]


def _fhirpath_step(step: str) -> str:
    if step.endswith(")") and "(" in step:
        name, url = step[:-1].split("(", 1)
        return f"{name}.where(url = '{url}')"
    if step.endswith("]") and "[" in step:
        name, cond = step[:-1].split("[", 1)
        key, value = cond.split("=", 1)
        return f"{name}.where({key} = '{value}')"
    for prefix in _CHOICE_PREFIXES:
        if step.startswith(prefix) and len(step) > len(prefix):
            suffix = step[len(prefix) :]
            if suffix in _PRIMITIVE_SUFFIXES:
                return f"{prefix}.ofType({_PRIMITIVE_SUFFIXES[suffix]})"
            if suffix in _COMPLEX_SUFFIXES:
                return f"{prefix}.ofType({suffix})"
    return step


def _expression(resource: str, row: _Row) -> str:
    _code, _type, paths, targets, _d, narrow, _components = row
    parts = []
    for path in paths:
        text = ".".join([resource, *(_fhirpath_step(s) for s in split_steps(path))])
        if narrow:
            text += ".where(" + " or ".join(f"resolve() is {t}" for t in targets) + ")"
        parts.append(text)
    return " | ".join(parts)


def _definition(resource: str, code: str, defn: str) -> str:
    if not defn:
        return f"{_BASE}{resource}-{code}"
    return f"{_US_CORE}{defn}" if defn.startswith("us-core-") else f"{_BASE}{defn}"


# Expressions the spec writes in a form the path table cannot (derived values).
_EXPRESSIONS = {("Patient", "deceased"): "Patient.deceased.exists() and Patient.deceased != false"}


def _build(resource: str, rows: list[_Row]) -> dict[str, SearchParam]:
    out: dict[str, SearchParam] = {}
    for row in rows:
        code, type_, paths, targets, defn, _narrow, components = row
        if type_ not in PARAM_TYPES:
            raise ValueError(f"Search parameter {resource}.{code}: type {type_!r} is not one of {PARAM_TYPES}")
        if code in out:
            raise ValueError(f"Search parameter {resource}.{code} is declared twice")
        out[code] = SearchParam(
            code=code,
            type=type_,
            resource=resource,
            paths=paths,
            targets=targets,
            components=components,
            expression=_EXPRESSIONS.get((resource, code)) or _expression(resource, row),
            definition=_definition(resource, code, defn),
        )
    return out


COMMON: dict[str, SearchParam] = _build("Resource", _COMMON_ROWS)
REGISTRY: dict[str, dict[str, SearchParam]] = {rt: _build(rt, rows) for rt, rows in sorted(_TABLE.items())}
_MERGED: dict[str, dict[str, SearchParam]] = {rt: {**COMMON, **params} for rt, params in REGISTRY.items()}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """The parameters searchable on ``resource_type``: the common ones plus its own.

    A type EHRGate has no table for still gets the common parameters (``_id``, ``_lastUpdated``, ...).
    The returned dict is shared; do not mutate it.
    """
    merged = _MERGED.get(resource_type)
    return merged if merged is not None else COMMON
