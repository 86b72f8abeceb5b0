"""Required terminology bindings of FHIR R4 (4.0.1) that the structural validator enforces.

http://hl7.org/fhir/R4/terminologies.html#required: a code in an element with a *required* binding
SHALL come from the bound value set. The tables below hold the R4 value sets most used on writes
(resource status and intent codes, the datatypes' use/system codes, Bundle.type...). Each key of
``REQUIRED`` is ``<type>.<element>`` in the naming of ``r4_definitions.json`` (backbone elements by
the path that defines them, e.g. ``Bundle.entry.request.method``).

Bindings on ``code`` elements check the code itself. Bindings on ``CodeableConcept`` / ``Coding``
elements check only codings whose ``system`` is the value set's code system: other systems are the
sender's business (and cannot be judged without a terminology server).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REQUIRED", "VALUE_SETS", "ValueSet"]

_THO = "http://terminology.hl7.org/CodeSystem/"


@dataclass(frozen=True)
class ValueSet:
    name: str
    codes: frozenset[str]
    system: str | None = None  # the one code system of the value set, for Coding/CodeableConcept checks

    def expected(self) -> str:
        return f"{self.name}: {' | '.join(sorted(self.codes))}"


def _vs(name: str, codes: str, system: str | None = None) -> ValueSet:
    return ValueSet(name, frozenset(codes.split()), system)


VALUE_SETS: dict[str, ValueSet] = {
    vs.name: vs
    for vs in (
        # Datatypes (datatypes.html, narrative.html, metadatatypes.html)
        _vs("AdministrativeGender", "male female other unknown"),
        _vs("ContactPointSystem", "phone fax email pager url sms other"),
        _vs("ContactPointUse", "home work temp old mobile"),
        _vs("NameUse", "usual official temp nickname anonymous old maiden"),
        _vs("AddressUse", "home work temp old billing"),
        _vs("AddressType", "postal physical both"),
        _vs("IdentifierUse", "usual official temp secondary old"),
        _vs("QuantityComparator", "< <= >= >"),
        _vs("NarrativeStatus", "generated extensions additional empty"),
        _vs("UnitsOfTime", "s min h d wk mo a"),
        _vs("DaysOfWeek", "mon tue wed thu fri sat sun"),
        _vs("RelatedArtifactType",
            "documentation justification citation predecessor successor derived-from depends-on composed-of"),
        _vs("ContributorType", "author editor reviewer endorser"),
        # Shared workflow code systems (workflow patterns)
        _vs("PublicationStatus", "draft active retired unknown"),
        _vs("EventStatus", "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"),
        _vs("RequestStatus", "draft active on-hold revoked completed entered-in-error unknown"),
        _vs("RequestIntent",
            "proposal plan directive order original-order reflex-order filler-order instance-order option"),
        _vs("RequestPriority", "routine urgent asap stat"),
        _vs("ObservationStatus",
            "registered preliminary final amended corrected cancelled entered-in-error unknown"),
        _vs("FinancialResourceStatusCodes", "active cancelled draft entered-in-error"),
        _vs("ExplanationOfBenefitStatus", "active cancelled draft entered-in-error"),
        _vs("Use", "claim preauthorization predetermination"),
        _vs("RemittanceOutcome", "queued complete error partial"),
        # Resources
        _vs("LinkType", "replaced-by replaces refer seealso"),
        _vs("EncounterStatus",
            "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"),
        _vs("EncounterLocationStatus", "planned active reserved completed"),
        _vs("EpisodeOfCareStatus", "planned waitlist active onhold finished cancelled entered-in-error"),
        _vs("ConditionClinicalStatusCodes", "active recurrence relapse inactive remission resolved",
            _THO + "condition-clinical"),
        _vs("ConditionVerificationStatus", "unconfirmed provisional differential confirmed refuted entered-in-error",
            _THO + "condition-ver-status"),
        _vs("AllergyIntoleranceClinicalStatusCodes", "active inactive resolved",
            _THO + "allergyintolerance-clinical"),
        _vs("AllergyIntoleranceVerificationStatusCodes", "unconfirmed confirmed refuted entered-in-error",
            _THO + "allergyintolerance-verification"),
        _vs("AllergyIntoleranceType", "allergy intolerance"),
        _vs("AllergyIntoleranceCategory", "food medication environment biologic"),
        _vs("AllergyIntoleranceCriticality", "low high unable-to-assess"),
        _vs("AllergyIntoleranceSeverity", "mild moderate severe"),
        _vs("MedicationRequestStatus",
            "active on-hold cancelled completed entered-in-error stopped draft unknown"),
        _vs("MedicationRequestIntent",
            "proposal plan order original-order reflex-order filler-order instance-order option"),
        _vs("MedicationStatementStatus",
            "active completed entered-in-error intended stopped on-hold unknown not-taken"),
        _vs("MedicationAdministrationStatus",
            "in-progress not-done on-hold completed entered-in-error stopped unknown"),
        _vs("MedicationDispenseStatus",
            "preparation in-progress cancelled on-hold completed entered-in-error stopped declined unknown"),
        _vs("MedicationStatus", "active inactive entered-in-error"),
        _vs("ImmunizationStatus", "completed entered-in-error not-done"),
        _vs("DiagnosticReportStatus",
            "registered partial preliminary final amended corrected appended cancelled entered-in-error unknown"),
        _vs("DocumentReferenceStatus", "current superseded entered-in-error"),
        _vs("CompositionStatus", "preliminary final amended entered-in-error"),
        _vs("DocumentRelationshipType", "replaces transforms signs appends"),
        _vs("CarePlanIntent", "proposal plan order option"),
        _vs("CarePlanActivityStatus",
            "not-started scheduled in-progress on-hold completed cancelled stopped unknown entered-in-error"),
        _vs("CarePlanActivityKind",
            "Appointment CommunicationRequest DeviceRequest MedicationRequest NutritionOrder Task "
            "ServiceRequest VisionPrescription"),
        _vs("CareTeamStatus", "proposed active suspended inactive entered-in-error"),
        _vs("GoalLifecycleStatus",
            "proposed planned accepted active on-hold completed cancelled entered-in-error rejected"),
        _vs("AppointmentStatus",
            "proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in waitlist"),
        _vs("ParticipantRequired", "required optional information-only"),
        _vs("ParticipationStatus", "accepted declined tentative needs-action"),
        _vs("SlotStatus", "busy free busy-unavailable busy-tentative entered-in-error"),
        _vs("TaskStatus",
            "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed "
            "entered-in-error"),
        _vs("TaskIntent",
            "unknown proposal plan order original-order reflex-order filler-order instance-order option"),
        _vs("BundleType",
            "document message transaction transaction-response batch batch-response history searchset collection"),
        _vs("HTTPVerb", "GET HEAD POST PUT DELETE PATCH"),
        _vs("SearchEntryMode", "match include outcome"),
        _vs("IssueSeverity", "fatal error warning information"),
        _vs("IssueType",
            "invalid structure required value invariant security login unknown expired forbidden suppressed "
            "processing not-supported duplicate multiple-matches not-found deleted too-long code-invalid "
            "extension too-costly business-rule conflict transient lock-error no-store exception timeout "
            "incomplete throttled informational"),
        _vs("ImagingStudyStatus", "registered available cancelled entered-in-error unknown"),
        _vs("SpecimenStatus", "available unavailable unsatisfactory entered-in-error"),
        _vs("DeviceStatus", "active inactive entered-in-error unknown"),
        _vs("LocationStatus", "active suspended inactive"),
        _vs("LocationMode", "instance kind"),
        _vs("ProvenanceEntityRole", "derivation revision quotation source removal"),
        _vs("QuestionnaireResponseStatus", "in-progress completed amended entered-in-error stopped"),
        _vs("FamilyHistoryStatus", "partial completed entered-in-error health-unknown"),
        _vs("ConsentState", "draft proposed active rejected inactive entered-in-error"),
        _vs("GroupType", "person animal practitioner device medication substance"),
        _vs("ListStatus", "current retired entered-in-error"),
        _vs("ListMode", "working snapshot changes"),
        _vs("FlagStatus", "active inactive entered-in-error"),
        _vs("EndpointStatus", "active suspended error off entered-in-error test"),
        _vs("SubscriptionStatus", "requested active error off"),
        _vs("AuditEventAction", "C R U D E"),
        _vs("AuditEventOutcome", "0 4 8 12"),
    )
}

_CANONICAL_RESOURCES = (
    "ActivityDefinition CapabilityStatement ChargeItemDefinition CodeSystem CompartmentDefinition ConceptMap "
    "EffectEvidenceSynthesis EventDefinition Evidence EvidenceVariable ExampleScenario GraphDefinition "
    "ImplementationGuide Library Measure MessageDefinition NamingSystem OperationDefinition PlanDefinition "
    "Questionnaire ResearchDefinition ResearchElementDefinition RiskEvidenceSynthesis SearchParameter "
    "StructureDefinition StructureMap TerminologyCapabilities TestScript ValueSet"
).split()

_PATHS: dict[str, str] = {
    "Patient.gender": "AdministrativeGender",
    "Patient.contact.gender": "AdministrativeGender",
    "Patient.link.type": "LinkType",
    "Practitioner.gender": "AdministrativeGender",
    "RelatedPerson.gender": "AdministrativeGender",
    "Person.gender": "AdministrativeGender",
    "ContactPoint.system": "ContactPointSystem",
    "ContactPoint.use": "ContactPointUse",
    "HumanName.use": "NameUse",
    "Address.use": "AddressUse",
    "Address.type": "AddressType",
    "Identifier.use": "IdentifierUse",
    "Quantity.comparator": "QuantityComparator",
    "Age.comparator": "QuantityComparator",
    "Count.comparator": "QuantityComparator",
    "Distance.comparator": "QuantityComparator",
    "Duration.comparator": "QuantityComparator",
    "Narrative.status": "NarrativeStatus",
    "Timing.repeat.durationUnit": "UnitsOfTime",
    "Timing.repeat.periodUnit": "UnitsOfTime",
    "Timing.repeat.dayOfWeek": "DaysOfWeek",
    "RelatedArtifact.type": "RelatedArtifactType",
    "Contributor.type": "ContributorType",
    "Observation.status": "ObservationStatus",
    "RiskAssessment.status": "ObservationStatus",
    "Encounter.status": "EncounterStatus",
    "Encounter.statusHistory.status": "EncounterStatus",
    "Encounter.location.status": "EncounterLocationStatus",
    "EpisodeOfCare.status": "EpisodeOfCareStatus",
    "EpisodeOfCare.statusHistory.status": "EpisodeOfCareStatus",
    "Condition.clinicalStatus": "ConditionClinicalStatusCodes",
    "Condition.verificationStatus": "ConditionVerificationStatus",
    "AllergyIntolerance.clinicalStatus": "AllergyIntoleranceClinicalStatusCodes",
    "AllergyIntolerance.verificationStatus": "AllergyIntoleranceVerificationStatusCodes",
    "AllergyIntolerance.type": "AllergyIntoleranceType",
    "AllergyIntolerance.category": "AllergyIntoleranceCategory",
    "AllergyIntolerance.criticality": "AllergyIntoleranceCriticality",
    "AllergyIntolerance.reaction.severity": "AllergyIntoleranceSeverity",
    "MedicationRequest.status": "MedicationRequestStatus",
    "MedicationRequest.intent": "MedicationRequestIntent",
    "MedicationRequest.priority": "RequestPriority",
    "MedicationStatement.status": "MedicationStatementStatus",
    "MedicationAdministration.status": "MedicationAdministrationStatus",
    "MedicationDispense.status": "MedicationDispenseStatus",
    "Medication.status": "MedicationStatus",
    "Immunization.status": "ImmunizationStatus",
    "Procedure.status": "EventStatus",
    "Communication.status": "EventStatus",
    "Communication.priority": "RequestPriority",
    "Media.status": "EventStatus",
    "CommunicationRequest.status": "RequestStatus",
    "CommunicationRequest.priority": "RequestPriority",
    "DiagnosticReport.status": "DiagnosticReportStatus",
    "DocumentReference.status": "DocumentReferenceStatus",
    "DocumentReference.docStatus": "CompositionStatus",
    "DocumentReference.relatesTo.code": "DocumentRelationshipType",
    "Composition.status": "CompositionStatus",
    "CarePlan.status": "RequestStatus",
    "CarePlan.intent": "CarePlanIntent",
    "CarePlan.activity.detail.status": "CarePlanActivityStatus",
    "CarePlan.activity.detail.kind": "CarePlanActivityKind",
    "CareTeam.status": "CareTeamStatus",
    "Goal.lifecycleStatus": "GoalLifecycleStatus",
    "Appointment.status": "AppointmentStatus",
    "Appointment.participant.required": "ParticipantRequired",
    "Appointment.participant.status": "ParticipationStatus",
    "AppointmentResponse.participantStatus": "ParticipationStatus",
    "Slot.status": "SlotStatus",
    "Task.status": "TaskStatus",
    "Task.intent": "TaskIntent",
    "Task.priority": "RequestPriority",
    "ServiceRequest.status": "RequestStatus",
    "ServiceRequest.intent": "RequestIntent",
    "ServiceRequest.priority": "RequestPriority",
    "DeviceRequest.status": "RequestStatus",
    "DeviceRequest.intent": "RequestIntent",
    "DeviceRequest.priority": "RequestPriority",
    "Bundle.type": "BundleType",
    "Bundle.entry.request.method": "HTTPVerb",
    "Bundle.entry.search.mode": "SearchEntryMode",
    "OperationOutcome.issue.severity": "IssueSeverity",
    "OperationOutcome.issue.code": "IssueType",
    "Claim.status": "FinancialResourceStatusCodes",
    "Claim.use": "Use",
    "ClaimResponse.status": "FinancialResourceStatusCodes",
    "ClaimResponse.use": "Use",
    "ClaimResponse.outcome": "RemittanceOutcome",
    "Coverage.status": "FinancialResourceStatusCodes",
    "ExplanationOfBenefit.status": "ExplanationOfBenefitStatus",
    "ExplanationOfBenefit.use": "Use",
    "ExplanationOfBenefit.outcome": "RemittanceOutcome",
    "ImagingStudy.status": "ImagingStudyStatus",
    "Specimen.status": "SpecimenStatus",
    "Device.status": "DeviceStatus",
    "Location.status": "LocationStatus",
    "Location.mode": "LocationMode",
    "Location.hoursOfOperation.daysOfWeek": "DaysOfWeek",
    "PractitionerRole.availableTime.daysOfWeek": "DaysOfWeek",
    "HealthcareService.availableTime.daysOfWeek": "DaysOfWeek",
    "Provenance.entity.role": "ProvenanceEntityRole",
    "QuestionnaireResponse.status": "QuestionnaireResponseStatus",
    "FamilyMemberHistory.status": "FamilyHistoryStatus",
    "Consent.status": "ConsentState",
    "Group.type": "GroupType",
    "List.status": "ListStatus",
    "List.mode": "ListMode",
    "Flag.status": "FlagStatus",
    "Endpoint.status": "EndpointStatus",
    "Subscription.status": "SubscriptionStatus",
    "AuditEvent.action": "AuditEventAction",
    "AuditEvent.outcome": "AuditEventOutcome",
    **{f"{resource}.status": "PublicationStatus" for resource in _CANONICAL_RESOURCES},
}

REQUIRED: dict[str, ValueSet] = {path: VALUE_SETS[name] for path, name in _PATHS.items()}
