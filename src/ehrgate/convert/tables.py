"""Vocabulary maps from HL7 v2 tables to FHIR codes, as the v2-to-FHIR IG's concept maps give them
(mappings/codesystems/*.csv of HL7/v2-to-fhir; the file each map follows is named above it).

A value not in a map is not invented: the element is left out (or, where FHIR requires it, the
module using the map says what it writes instead).
"""

from __future__ import annotations

__all__ = [
    "ADDRESS_TYPE", "ADDRESS_USE", "ALLERGY_CATEGORY", "ALLERGY_CRITICALITY", "ALLERGY_SEVERITY",
    "ALLERGY_TYPE", "APPOINTMENT_STATUS", "COMPLETION_STATUS", "CONTACT_ROLE", "DIAGNOSIS_ROLE",
    "ENCOUNTER_CLASS", "ENCOUNTER_PRIORITY", "ENCOUNTER_STATUS_BY_CLASS", "ENCOUNTER_STATUS_BY_EVENT", "GENDER",
    "INTERPRETATION", "MARITAL_STATUS", "NAME_USE", "OBSERVATION_STATUS", "ORDER_CONTROL_STATUS",
    "ORDER_STATUS", "PRIORITY", "RELATIONSHIP", "REPORT_STATUS", "ROUTE", "TELECOM_SYSTEM", "TELECOM_USE",
    "YES_NO",
]

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0004 = "http://terminology.hl7.org/CodeSystem/v2-0004"

# AdministrativeSex.csv (table 0001 → administrative-gender)
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}

# MaritalStatus.csv (table 0002 → v3-MaritalStatus; U/O/T → v3-NullFlavor)
MARITAL_STATUS: dict[str, tuple[str, str, str]] = {
    "A": ("L", "Legally Separated", "v3-MaritalStatus"), "D": ("D", "Divorced", "v3-MaritalStatus"),
    "M": ("M", "Married", "v3-MaritalStatus"), "S": ("S", "Never Married", "v3-MaritalStatus"),
    "W": ("W", "Widowed", "v3-MaritalStatus"), "C": ("C", "Common Law", "v3-MaritalStatus"),
    "G": ("T", "Domestic partner", "v3-MaritalStatus"), "P": ("T", "Domestic partner", "v3-MaritalStatus"),
    "R": ("T", "Domestic partner", "v3-MaritalStatus"), "E": ("L", "Legally Separated", "v3-MaritalStatus"),
    "N": ("A", "Annulled", "v3-MaritalStatus"), "I": ("I", "Interlocutory", "v3-MaritalStatus"),
    "B": ("U", "unmarried", "v3-MaritalStatus"), "U": ("UNK", "Unknown", "v3-NullFlavor"),
    "O": ("OTH", "Other", "v3-NullFlavor"), "T": ("NAVU", "Not available", "v3-NullFlavor"),
}

# PatientClass-EncounterClass.csv (table 0004 → v3-ActCode, else kept in v2-0004)
ENCOUNTER_CLASS: dict[str, tuple[str, str, str]] = {
    "E": (V3_ACT, "EMER", "emergency"), "I": (V3_ACT, "IMP", "inpatient encounter"),
    "O": (V3_ACT, "AMB", "ambulatory"), "P": (V3_ACT, "PRENC", "pre-admission"),
    "R": (V2_0004, "R", "Recurring patient"), "B": (V2_0004, "B", "Obstetrics"),
    "C": (V2_0004, "C", "Commercial Account"), "N": (V2_0004, "N", "Not Applicable"),
    "U": (V2_0004, "U", "Unknown"),
}

# PatientClass-EncounterStatus.csv (used when PV1-45 is empty)
ENCOUNTER_STATUS_BY_CLASS = {"E": "in-progress", "I": "in-progress", "O": "in-progress", "P": "planned",
                             "R": "in-progress", "B": "in-progress", "C": "in-progress", "N": "in-progress",
                             "U": "unknown"}

# EncounterPriority.csv (table 0217 → v3-ActPriority)
ENCOUNTER_PRIORITY = {"1": ("EM", "emergency"), "2": ("UR", "urgent"), "3": ("EL", "elective")}

# Event-EncounterStatus.csv (trigger event → Encounter.status). A08 ("unknown" in the IG table) and
# the other update events are left out on purpose: an update must not erase the visit's state, so
# they fall back to PV1-45/PV1-2 like any message without a status-changing trigger.
ENCOUNTER_STATUS_BY_EVENT = {"A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "planned",
                             "A05": "planned", "A11": "cancelled", "A13": "in-progress"}

# ObservationResultStatusCodesInterpretation.csv (table 0085 → observation-status)
OBSERVATION_STATUS = {"A": "amended", "C": "corrected", "D": "entered-in-error", "F": "final",
                      "P": "preliminary", "X": "cancelled", "W": "entered-in-error"}

# ResultStatus-Non-Queries.csv (table 0123 → diagnostic-report-status)
REPORT_STATUS = {"O": "registered", "I": "registered", "S": "registered", "P": "preliminary",
                 "C": "corrected", "R": "partial", "F": "final", "X": "cancelled"}

# InterpretationCodes.csv (table 0078 → v3-ObservationInterpretation; codes equal, display given)
INTERPRETATION = {
    "<": "Off scale low", ">": "Off scale high", "A": "Abnormal", "AA": "Critical abnormal", "B": "Better",
    "CAR": "Carrier", "D": "Significant change down", "DET": "Detected", "E": "Equivocal",
    "EX": "outside threshold", "EXP": "Expected", "H": "High", "HH": "Critical high",
    "HU": "Significantly high", "I": "Intermediate", "IE": "Insufficient evidence", "IND": "Indeterminate",
    "L": "Low", "LL": "Critical low", "LU": "Significantly low", "MS": "moderately susceptible",
    "N": "Normal", "NCL": "No CLSI defined breakpoint", "ND": "Not detected", "NEG": "Negative",
    "NR": "Non-reactive", "NS": "Non-susceptible", "POS": "Positive", "R": "Resistant", "RR": "Reactive",
    "S": "Susceptible", "SDD": "Susceptible-dose dependent", "SYN-R": "Synergy - resistant",
    "SYN-S": "Synergy - susceptible", "U": "Significant change up", "VS": "very susceptible",
    "UNE": "Unexpected", "W": "Worse", "WR": "Weakly reactive",
}

# OrderControlCode-ServiceRequest.status.csv (table 0119 → request-status; used when ORC-5 is empty)
ORDER_CONTROL_STATUS = {"AF": "active", "CA": "active", "CR": "revoked", "DC": "revoked", "DF": "revoked",
                        "DR": "revoked", "FU": "completed", "HD": "active", "HR": "on-hold", "NW": "active",
                        "OC": "revoked", "OD": "revoked", "OH": "on-hold", "OK": "active", "PR": "active",
                        "PY": "active", "RL": "active", "RO": "active", "RQ": "active", "OF": "active",
                        "SC": "active", "SN": "active"}

# OrderStatus.csv (table 0038 → request-status)
ORDER_STATUS = {"CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error",
                "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active"}

# ExtendedPriorityCodes.csv (table 0485 → request-priority)
PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}

# FillerStatusCodes-Appointment.csv (table 0278 → appointmentstatus)
APPOINTMENT_STATUS = {"PENDING": "pending", "WAITLIST": "waitlist", "BOOKED": "booked", "STARTED": "checked-in",
                      "COMPLETE": "fulfilled", "CANCELLED": "cancelled", "DELETED": "entered-in-error",
                      "NOSHOW": "noshow"}

# CompletionStatus.csv (table 0322 → event-status, Immunization.status)
COMPLETION_STATUS = {"CP": "completed", "RE": "not-done", "NA": "not-done", "PA": "completed"}

# AllergenType-AllergyIntoleranceCategory.csv (table 0127)
ALLERGY_CATEGORY = {"DA": "medication", "FA": "food", "EA": "environment", "AA": "biologic",
                    "PA": "environment", "LA": "environment"}
# AllergyType.csv
ALLERGY_TYPE = {"DA": "allergy", "FA": "allergy", "MA": "allergy", "EA": "allergy", "AA": "allergy",
                "PA": "allergy", "LA": "allergy"}
# AllergySeverity-AllergyIntolerance.criticality.csv (table 0128)
ALLERGY_CRITICALITY = {"SV": "high", "MI": "low"}
# AllergySeverity-AllergyIntolerance.reaction.severity.csv (table 0128)
ALLERGY_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}

# DiagnosisType.csv (table 0052 → diagnosis-role; W and F have no target and keep their v2 code)
DIAGNOSIS_ROLE = {"A": ("AD", "Admission diagnosis")}

# TelecommunicationUseCode.csv (table 0201 → contact-point-use)
TELECOM_USE = {"PRN": "home", "WPN": "work", "PRS": "mobile"}
# TelecommunicationEquipmentType.csv (table 0202 → contact-point-system; CP is a mobile phone)
TELECOM_SYSTEM = {"PH": "phone", "FX": "fax", "MD": "other", "CP": "phone", "SAT": "other", "BP": "pager",
                  "INTERNET": "email", "X.400": "email", "TDD": "other", "TTY": "other"}

# AddressType-Use.csv / AddressType-Type.csv (table 0190)
ADDRESS_USE = {"BA": "old", "BI": "billing", "C": "temp", "B": "work", "H": "home", "O": "work"}
ADDRESS_TYPE = {"M": "postal", "SH": "postal"}

# NameType.csv (table 0200 → name-use)
NAME_USE = {"BAD": "old", "D": "usual", "L": "official", "M": "maiden", "MSK": "anonymous", "N": "nickname",
            "NAV": "temp", "R": "official", "TEMP": "temp"}

# Relationship.csv (table 0063 → v3-RoleCode, with EMR/EMC kept in table 0131)
RELATIONSHIP: dict[str, tuple[str, str]] = {
    "SEL": ("v3-RoleCode", "ONESELF"), "SPO": ("v3-RoleCode", "SPS"), "DOM": ("v3-RoleCode", "SIGOTHR"),
    "CHD": ("v3-RoleCode", "CHILD"), "GCH": ("v3-RoleCode", "GRNDCHILD"), "NCH": ("v3-RoleCode", "NCHILD"),
    "SCH": ("v3-RoleCode", "STPCHLD"), "FCH": ("v3-RoleCode", "CHLDFOST"), "DEP": ("v3-RoleCode", "DEP"),
    "WRD": ("v3-RoleCode", "WRD"), "PAR": ("v3-RoleCode", "PRN"), "MTH": ("v3-RoleCode", "MTH"),
    "FTH": ("v3-RoleCode", "FTH"), "CGV": ("v3-RoleCode", "CGV"), "GRD": ("v3-RoleCode", "GRD"),
    "GRP": ("v3-RoleCode", "GRPRN"), "EXF": ("v3-RoleCode", "EXT"), "SIB": ("v3-RoleCode", "SIB"),
    "BRO": ("v3-RoleCode", "BRO"), "SIS": ("v3-RoleCode", "SIS"), "FND": ("v3-RoleCode", "FRND"),
    "OAD": ("v3-RoleCode", "OAD"), "EME": ("v3-RoleCode", "EME"), "EMR": ("v2-0131", "E"),
    "ASC": ("v3-RoleCode", "ASC"), "EMC": ("v2-0131", "C"), "OWN": ("v3-RoleCode", "OWN"),
    "TRA": ("v3-RoleCode", "TRA"), "MGR": ("v3-RoleCode", "MGR"), "NON": ("v3-RoleCode", "NON"),
    "UNK": ("v2-0131", "U"), "OTH": ("v2-0131", "O"),
}
# ContactRole.csv (table 0131, codes kept)
CONTACT_ROLE = frozenset({"E", "C", "F", "I", "N", "S", "O", "U"})

# RouteOfAdministration.csv (table 0162 → v3-RouteOfAdministration where it differs)
ROUTE = {"ID": "IDINJ", "IV": "IVINJ", "SC": "SQ", "TD": "TRNSDERM"}

# YesNoIndicator.csv (table 0136)
YES_NO = {"Y": True, "N": False}
