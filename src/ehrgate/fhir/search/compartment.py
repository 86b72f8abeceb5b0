"""Patient compartment membership, from the R4 CompartmentDefinition "patient".

http://hl7.org/fhir/R4/compartmentdefinition-patient.html lists, per resource type, the search
parameters that place a resource in a patient's compartment: a resource is in Patient/x's
compartment when one of those parameters refers to Patient/x. Types absent from the table are
never in a patient compartment (Binary, Organization, Medication, ...). A Patient is also in
its own compartment (the compartment's identity is the patient), and - per the definition's
``link`` entry - in the compartment of every Patient it links to.

The store records the ids returned here with every write; the access policy, ``Patient/x/*``
searches, ``$everything`` and Bulk Data patient export all read that one record.
"""

from __future__ import annotations

from collections.abc import Iterable

from ehrgate.fhir.search.types import ReferenceRow

__all__ = ["PATIENT_COMPARTMENT", "patient_compartments"]

PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    "Account": ("subject",),
    "AdverseEvent": ("subject",),
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "Appointment": ("actor",),
    "AppointmentResponse": ("actor",),
    "AuditEvent": ("patient",),
    "Basic": ("patient", "author"),
    "BodyStructure": ("patient",),
    "CarePlan": ("patient", "performer"),
    "CareTeam": ("patient", "participant"),
    "ChargeItem": ("subject",),
    "Claim": ("patient", "payee"),
    "ClaimResponse": ("patient",),
    "ClinicalImpression": ("subject",),
    "Communication": ("subject", "sender", "recipient"),
    "CommunicationRequest": ("subject", "sender", "recipient", "requester"),
    "Composition": ("subject", "author", "attester"),
    "Condition": ("patient", "asserter"),
    "Consent": ("patient",),
    "Coverage": ("policy-holder", "subscriber", "beneficiary", "payor"),
    "CoverageEligibilityRequest": ("patient",),
    "CoverageEligibilityResponse": ("patient",),
    "DetectedIssue": ("patient",),
    "DeviceRequest": ("subject", "performer"),
    "DeviceUseStatement": ("subject",),
    "DiagnosticReport": ("subject",),
    "DocumentManifest": ("subject", "author", "recipient"),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("patient",),
    "EnrollmentRequest": ("subject",),
    "EpisodeOfCare": ("patient",),
    "ExplanationOfBenefit": ("patient", "payee"),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("patient",),
    "Goal": ("patient",),
    "Group": ("member",),
    "ImagingStudy": ("patient",),
    "Immunization": ("patient",),
    "ImmunizationEvaluation": ("patient",),
    "ImmunizationRecommendation": ("patient",),
    "Invoice": ("subject", "patient", "recipient"),
    "List": ("subject", "source"),
    "MeasureReport": ("patient",),
    "Media": ("subject",),
    "MedicationAdministration": ("patient", "performer", "subject"),
    "MedicationDispense": ("subject", "patient", "receiver"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "MolecularSequence": ("patient",),
    "NutritionOrder": ("patient",),
    "Observation": ("subject", "performer"),
    "Patient": ("link",),
    "Person": ("patient",),
    "Procedure": ("patient", "performer"),
    "Provenance": ("patient",),
    "QuestionnaireResponse": ("subject", "author"),
    "RelatedPerson": ("patient",),
    "RequestGroup": ("subject", "participant"),
    "ResearchSubject": ("individual",),
    "RiskAssessment": ("subject",),
    "Schedule": ("actor",),
    "ServiceRequest": ("subject", "performer"),
    "Specimen": ("subject",),
    "SupplyDelivery": ("patient",),
    "SupplyRequest": ("requester",),
    "VisionPrescription": ("patient",),
}

_PARAMS: dict[str, frozenset[str]] = {rt: frozenset(codes) for rt, codes in PATIENT_COMPARTMENT.items()}


def patient_compartments(
    resource_type: str, resource_id: str | None, reference_rows: Iterable[ReferenceRow]
) -> set[str]:
    """Ids of the Patients whose compartment holds this resource.

    Only rows of the type's compartment parameters count, and only when they point at a
    ``Patient`` (a CarePlan ``performer`` that is a Practitioner places it in no compartment).
    """
    params = _PARAMS.get(resource_type)
    ids: set[str] = set()
    if resource_type == "Patient" and resource_id:
        ids.add(resource_id)
    if params is None:
        return ids
    for row in reference_rows:
        if row.target_type == "Patient" and row.target_id and row.param in params:
            ids.add(row.target_id)
    return ids
