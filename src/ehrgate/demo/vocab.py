"""Code tables for the synthetic demo data: terminology facts, no patient data.

Every code here is a published concept of its code system (LOINC, SNOMED CT, ICD-10-CM, RxNorm,
CVX, UCUM, NUCC, HL7 terminology); displays follow the code system's own wording closely enough for
a human reading the chart. Code systems are always written as their canonical URIs (FHIR R4
"Using Codes", http://hl7.org/fhir/R4/terminologies-systems.html) because search by
``system|code`` and US Core validation both compare the URI exactly.

The tables are data, not logic, so the generator modules stay short and a reviewer can check a
code against the terminology browser line by line.
"""

from __future__ import annotations

from typing import NamedTuple

# --- code systems (canonical URIs) ----------------------------------------------------------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
NUCC = "http://nucc.org/provider-taxonomy"
BCP47 = "urn:ietf:bcp:47"
CDC_RACE = "urn:oid:2.16.840.1.113883.6.238"
THO = "http://terminology.hl7.org/CodeSystem/"
ACT_CODE = THO + "v3-ActCode"
ROLE_CODE = THO + "v3-RoleCode"
MARITAL = THO + "v3-MaritalStatus"
INTERPRETATION = THO + "v3-ObservationInterpretation"
PARTICIPATION = THO + "v3-ParticipationType"
ACT_SITE = THO + "v3-ActSite"
ROUTE_OF_ADMIN = THO + "v3-RouteOfAdministration"
OBS_CATEGORY = THO + "observation-category"
COND_CATEGORY = THO + "condition-category"
COND_CLINICAL = THO + "condition-clinical"
COND_VERIFICATION = THO + "condition-ver-status"
ALLERGY_CLINICAL = THO + "allergyintolerance-clinical"
ALLERGY_VERIFICATION = THO + "allergyintolerance-verification"
IDENTIFIER_TYPE = THO + "v2-0203"
DEGREE = THO + "v2-0360"
CONTACT_ROLE = THO + "v2-0131"
DIAG_SERVICE = THO + "v2-0074"
APPOINTMENT_TYPE = THO + "v2-0276"
IMM_FUNCTION = THO + "v2-0443"
ORG_TYPE = THO + "organization-type"
PHYSICAL_TYPE = THO + "location-physical-type"
PRACTITIONER_ROLE = THO + "practitioner-role"
DISCHARGE = THO + "discharge-disposition"
DIAGNOSIS_ROLE = THO + "diagnosis-role"
DOSE_RATE = THO + "dose-rate-type"
MED_REQUEST_CATEGORY = THO + "medicationrequest-category"
GOAL_ACHIEVEMENT = THO + "goal-achievement"
CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"

# Identifier systems we own. example.org is reserved for documentation (RFC 2606), so these can
# never collide with a real organisation's namespace.
MRN_SYSTEM = "https://ehrgate.example.org/mrn"
VISIT_SYSTEM = "https://ehrgate.example.org/visit-number"

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


def profile(name: str) -> dict[str, list[str]]:
    """``meta`` claiming one US Core 6.1 profile (unversioned canonical, as servers match it)."""
    return {"profile": [US_CORE + name]}


# --- shared vocabulary rows -----------------------------------------------------------------------
class Code(NamedTuple):
    system: str
    code: str
    display: str


class LabTest(NamedTuple):
    """A lab analyte: LOINC code, UCUM unit and the adult reference interval used for flags."""

    loinc: str
    display: str
    ucum: str
    unit: str
    low: float | None
    high: float | None
    decimals: int


class Panel(NamedTuple):
    loinc: str
    display: str
    tests: tuple[str, ...]


class ConditionDef(NamedTuple):
    """A diagnosis with both codings a US claim-aware EHR records (SNOMED CT problem + ICD-10-CM).

    ``prevalence`` is per age band (<18, 18-44, 45-64, 65+); chronic conditions go on the problem
    list, acute ones are encounter diagnoses that resolve.
    """

    key: str
    snomed: str
    snomed_display: str
    icd: str
    icd_display: str
    prevalence: tuple[float, float, float, float]
    meds: tuple[str, ...] = ()


class MedDef(NamedTuple):
    rxnorm: str
    display: str
    sig: str
    dose: float
    dose_unit: str
    dose_ucum: str
    frequency: int
    period: float
    period_unit: str
    route: str
    as_needed: bool = False
    course_days: int | None = None


class AllergyDef(NamedTuple):
    system: str
    code: str
    display: str
    category: str
    kind: str
    reactions: tuple[str, ...]
    high_risk: bool


class VaccineDef(NamedTuple):
    cvx: str
    display: str
    min_age: int
    max_age: int


class ProcedureDef(NamedTuple):
    snomed: str
    display: str
    minutes: int


# --- vital signs (US Core vital-signs profiles; LOINC codes fixed by the FHIR vital signs profile)
VITALS: dict[str, tuple[str, str, str, str, str]] = {
    # key: (loinc, display, ucum, unit text, US Core profile)
    "bp": ("85354-9", "Blood pressure panel with all children optional", "", "", "us-core-blood-pressure"),
    "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg", ""),
    "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg", ""),
    "heart_rate": ("8867-4", "Heart rate", "/min", "beats/minute", "us-core-heart-rate"),
    "resp_rate": ("9279-1", "Respiratory rate", "/min", "breaths/minute", "us-core-respiratory-rate"),
    "temperature": ("8310-5", "Body temperature", "Cel", "°C", "us-core-body-temperature"),
    "weight": ("29463-7", "Body weight", "kg", "kg", "us-core-body-weight"),
    "height": ("8302-2", "Body height", "cm", "cm", "us-core-body-height"),
    "bmi": ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2", "us-core-bmi"),
    "spo2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", "us-core-pulse-oximetry"),
}
SPO2_ARTERIAL = Code(LOINC, "2708-6", "Oxygen saturation in Arterial blood")
SMOKING_STATUS = Code(LOINC, "72166-2", "Tobacco smoking status")
SMOKING_VALUES: tuple[tuple[Code, float], ...] = (
    (Code(SNOMED, "266919005", "Never smoked tobacco (finding)"), 0.55),
    (Code(SNOMED, "8517006", "Ex-smoker (finding)"), 0.25),
    (Code(SNOMED, "449868002", "Smokes tobacco daily (finding)"), 0.14),
    (Code(SNOMED, "428041000124106", "Occasional tobacco smoker (finding)"), 0.06),
)
CURRENT_SMOKER_CODES = frozenset({"449868002", "428041000124106"})

# --- laboratory --------------------------------------------------------------------------------
LABS: dict[str, LabTest] = {
    "glucose": LabTest("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 70, 99, 0),
    "creatinine": LabTest("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0.6, 1.3, 2),
    "sodium": LabTest("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 135, 145, 0),
    "potassium": LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 3.5, 5.1, 1),
    "hba1c": LabTest("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 4.0, 5.6, 1),
    "hemoglobin": LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 12.0, 17.5, 1),
    "wbc": LabTest("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "10*3/uL", 4.0, 11.0, 1),
    "platelets": LabTest("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", "10*3/uL", 150, 400, 0),
    "cholesterol": LabTest("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", None, 199, 0),
    "hdl": LabTest("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 40, None, 0),
    "triglycerides": LabTest("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", None, 149, 0),
    "ldl": LabTest(
        "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", "mg/dL", None, 99, 0
    ),
}
PANELS: dict[str, Panel] = {
    "bmp": Panel("51990-0", "Basic metabolic panel - Blood", ("glucose", "sodium", "potassium", "creatinine")),
    "cbc": Panel("58410-2", "CBC panel - Blood by Automated count", ("hemoglobin", "wbc", "platelets")),
    "lipid": Panel("24331-1", "Lipid 1996 panel - Serum or Plasma", ("cholesterol", "hdl", "triglycerides", "ldl")),
    "a1c": Panel("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", ("hba1c",)),
}
INTERPRETATIONS = {"N": "Normal", "H": "High", "L": "Low"}
# Analytes whose adult reference interval differs by sex: key -> {gender: (low, high)}.
SEX_SPECIFIC_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "hemoglobin": {"male": (13.5, 17.5), "female": (12.0, 15.5)},
    "creatinine": {"male": (0.74, 1.35), "female": (0.59, 1.04)},
}

# --- conditions --------------------------------------------------------------------------------
CHRONIC: dict[str, ConditionDef] = {
    c.key: c
    for c in (
        ConditionDef("hypertension", "38341003", "Hypertensive disorder, systemic arterial (disorder)",
                     "I10", "Essential (primary) hypertension", (0.0, 0.12, 0.35, 0.6), ("lisinopril",)),
        ConditionDef("diabetes", "44054006", "Diabetes mellitus type 2 (disorder)",
                     "E11.9", "Type 2 diabetes mellitus without complications", (0.0, 0.04, 0.14, 0.25), ("metformin",)),
        ConditionDef("prediabetes", "714628002", "Prediabetes (finding)",
                     "R73.03", "Prediabetes", (0.0, 0.1, 0.2, 0.2)),
        ConditionDef("hyperlipidemia", "55822004", "Hyperlipidemia (disorder)",
                     "E78.5", "Hyperlipidemia, unspecified", (0.0, 0.08, 0.3, 0.45), ("simvastatin",)),
        ConditionDef("asthma", "195967001", "Asthma (disorder)",
                     "J45.909", "Unspecified asthma, uncomplicated", (0.1, 0.08, 0.08, 0.07), ("albuterol", "fluticasone")),
        ConditionDef("ckd3", "433144002", "Chronic kidney disease stage 3 (disorder)",
                     "N18.30", "Chronic kidney disease, stage 3 unspecified", (0.0, 0.01, 0.05, 0.15)),
        ConditionDef("anemia", "87522002", "Iron deficiency anemia (disorder)",
                     "D50.9", "Iron deficiency anemia, unspecified", (0.03, 0.06, 0.05, 0.08)),
        ConditionDef("obesity", "414916001", "Obesity (disorder)",
                     "E66.9", "Obesity, unspecified", (0.12, 0.3, 0.38, 0.32)),
        ConditionDef("hypothyroidism", "40930008", "Hypothyroidism (disorder)",
                     "E03.9", "Hypothyroidism, unspecified", (0.0, 0.04, 0.07, 0.1), ("levothyroxine",)),
        ConditionDef("depression", "370143000", "Major depressive disorder (disorder)",
                     "F32.9", "Major depressive disorder, single episode, unspecified", (0.03, 0.1, 0.09, 0.07),
                     ("sertraline",)),
        ConditionDef("osteoarthritis", "239873007", "Osteoarthritis of knee (disorder)",
                     "M17.9", "Osteoarthritis of knee, unspecified", (0.0, 0.02, 0.12, 0.3), ("naproxen",)),
        ConditionDef("cad", "53741008", "Coronary arteriosclerosis (disorder)",
                     "I25.10", "Atherosclerotic heart disease of native coronary artery without angina pectoris",
                     (0.0, 0.005, 0.05, 0.15), ("clopidogrel", "nitroglycerin")),
        ConditionDef("rhinitis", "367498001", "Seasonal allergic rhinitis (disorder)",
                     "J30.2", "Other seasonal allergic rhinitis", (0.1, 0.15, 0.12, 0.08), ("loratadine",)),
    )
}

# Acute problems by encounter setting; prevalence here is a relative weight (<18, 18-44, 45-64, 65+).
ACUTE: dict[str, ConditionDef] = {
    c.key: c
    for c in (
        ConditionDef("bronchitis", "10509002", "Acute bronchitis (disorder)",
                     "J20.9", "Acute bronchitis, unspecified", (1, 2, 2, 2), ("acetaminophen",)),
        ConditionDef("sinusitis", "444814009", "Viral sinusitis (disorder)",
                     "J01.90", "Acute sinusitis, unspecified", (1, 3, 3, 2), ("amox_clav",)),
        ConditionDef("strep", "43878008", "Streptococcal sore throat (disorder)",
                     "J02.0", "Streptococcal pharyngitis", (3, 1, 0.5, 0.2), ("penicillin_v",)),
        ConditionDef("otitis", "65363002", "Otitis media (disorder)",
                     "H66.90", "Otitis media, unspecified, unspecified ear", (4, 0.3, 0.2, 0.1), ("amoxicillin",)),
        ConditionDef("ankle_sprain", "44465007", "Sprain of ankle (disorder)",
                     "S93.409A", "Sprain of unspecified ligament of unspecified ankle, initial encounter",
                     (2, 2, 1, 0.5), ("ibuprofen",)),
        ConditionDef("chest_pain", "29857009", "Chest pain (finding)",
                     "R07.9", "Chest pain, unspecified", (0.1, 1, 3, 3)),
        ConditionDef("laceration", "283371005", "Laceration of forearm (disorder)",
                     "S51.819A", "Laceration without foreign body of unspecified forearm, initial encounter",
                     (1, 1, 0.5, 0.3), ("acetaminophen",)),
        ConditionDef("pneumonia", "233604007", "Pneumonia (disorder)",
                     "J18.9", "Pneumonia, unspecified organism", (1, 1, 2, 4), ("amox_clav",)),
        ConditionDef("cellulitis", "128045006", "Cellulitis (disorder)",
                     "L03.90", "Cellulitis, unspecified", (0.5, 1, 1, 1), ("amoxicillin",)),
    )
}
ACUTE_BY_SETTING: dict[str, tuple[str, ...]] = {
    "AMB": ("bronchitis", "sinusitis", "strep", "otitis"),
    "EMER": ("chest_pain", "ankle_sprain", "laceration"),
    "IMP": ("pneumonia", "cellulitis"),
}

# --- medications (RxNorm semantic clinical drugs) ----------------------------------------------
ROUTES = {
    "oral": Code(SNOMED, "26643006", "Oral route (qualifier value)"),
    "inhaled": Code(SNOMED, "447694001", "Respiratory tract route (qualifier value)"),
    "sublingual": Code(SNOMED, "37839007", "Sublingual route (qualifier value)"),
    "im": Code(SNOMED, "78421000", "Intramuscular route (qualifier value)"),
}
MEDS: dict[str, MedDef] = {
    "lisinopril": MedDef("314076", "lisinopril 10 MG Oral Tablet",
                         "Take 1 tablet by mouth once daily", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "amlodipine": MedDef("197361", "amlodipine 5 MG Oral Tablet",
                         "Take 1 tablet by mouth once daily", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "metformin": MedDef("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
                        "Take 1 tablet by mouth once daily with the evening meal", 1, "tablet", "{tablet}", 1, 1, "d",
                        "oral"),
    "simvastatin": MedDef("312961", "simvastatin 20 MG Oral Tablet",
                          "Take 1 tablet by mouth every evening", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "albuterol": MedDef("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
                        "Inhale 2 puffs every 4 hours as needed for wheezing", 2, "puff", "{puff}", 1, 4, "h",
                        "inhaled", as_needed=True),
    "fluticasone": MedDef("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
                          "Inhale 2 puffs twice daily; rinse mouth after use", 2, "puff", "{puff}", 2, 1, "d",
                          "inhaled"),
    "levothyroxine": MedDef("966222", "levothyroxine sodium 0.05 MG Oral Tablet",
                            "Take 1 tablet by mouth every morning on an empty stomach", 1, "tablet", "{tablet}", 1,
                            1, "d", "oral"),
    "sertraline": MedDef("312941", "sertraline 50 MG Oral Tablet",
                         "Take 1 tablet by mouth once daily", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "naproxen": MedDef("849574", "naproxen sodium 220 MG Oral Tablet",
                       "Take 1 tablet by mouth every 12 hours as needed for knee pain", 1, "tablet", "{tablet}", 1,
                       12, "h", "oral", as_needed=True),
    "clopidogrel": MedDef("309362", "clopidogrel 75 MG Oral Tablet",
                          "Take 1 tablet by mouth once daily", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "nitroglycerin": MedDef("705129", "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
                            "Spray 1 dose under the tongue every 5 minutes as needed for chest pain, up to 3 doses",
                            1, "spray", "{actuat}", 1, 5, "min", "sublingual", as_needed=True),
    "loratadine": MedDef("665078", "loratadine 5 MG Chewable Tablet",
                         "Chew 1 tablet once daily during allergy season", 1, "tablet", "{tablet}", 1, 1, "d", "oral"),
    "epinephrine": MedDef("1870230", "NDA020800 0.3 ML epinephrine 1 MG/ML Auto-Injector",
                          "Inject 0.3 mg into the outer thigh once as needed for anaphylaxis; call 911", 0.3, "mg",
                          "mg", 1, 1, "d", "im", as_needed=True),
    "acetaminophen": MedDef("313782", "acetaminophen 325 MG Oral Tablet",
                            "Take 2 tablets by mouth every 6 hours as needed for pain or fever", 2, "tablet",
                            "{tablet}", 1, 6, "h", "oral", as_needed=True, course_days=7),
    "ibuprofen": MedDef("310965", "ibuprofen 200 MG Oral Tablet",
                        "Take 2 tablets by mouth every 8 hours as needed for pain, with food", 2, "tablet",
                        "{tablet}", 1, 8, "h", "oral", as_needed=True, course_days=10),
    "amox_clav": MedDef("562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet",
                        "Take 1 tablet by mouth every 8 hours for 10 days", 1, "tablet", "{tablet}", 3, 1, "d",
                        "oral", course_days=10),
    "amoxicillin": MedDef("308182", "amoxicillin 250 MG Oral Capsule",
                          "Take 1 capsule by mouth every 8 hours for 10 days", 1, "capsule", "{capsule}", 3, 1, "d",
                          "oral", course_days=10),
    "penicillin_v": MedDef("834102", "penicillin V potassium 500 MG Oral Tablet",
                           "Take 1 tablet by mouth twice daily for 10 days", 1, "tablet", "{tablet}", 2, 1, "d",
                           "oral", course_days=10),
}
ALTERNATIVE_MEDS = {"lisinopril": "amlodipine"}

# --- allergies ---------------------------------------------------------------------------------
MANIFESTATIONS: dict[str, tuple[Code, str]] = {
    # key: (SNOMED finding, usual severity)
    "hives": (Code(SNOMED, "247472004", "Wheal (finding)"), "mild"),
    "rash": (Code(SNOMED, "271807003", "Eruption of skin (disorder)"), "mild"),
    "itching": (Code(SNOMED, "418290006", "Itching (finding)"), "mild"),
    "dyspnea": (Code(SNOMED, "267036007", "Dyspnea (finding)"), "moderate"),
    "angioedema": (Code(SNOMED, "402387002", "Allergic angioedema (disorder)"), "severe"),
    "anaphylaxis": (Code(SNOMED, "39579001", "Anaphylaxis (disorder)"), "severe"),
    "rhinoconjunctivitis": (Code(SNOMED, "878820003", "Rhinoconjunctivitis (disorder)"), "mild"),
    "vomiting": (Code(SNOMED, "300359004", "Finding of vomiting (finding)"), "moderate"),
}
ALLERGIES: tuple[AllergyDef, ...] = (
    AllergyDef(SNOMED, "764146007", "Penicillin (substance)", "medication", "allergy", ("hives", "rash", "anaphylaxis"),
               False),
    AllergyDef(SNOMED, "763875007", "Product containing sulfonamide (product)", "medication", "allergy",
               ("rash", "itching"), False),
    AllergyDef(RXNORM, "1191", "aspirin", "medication", "intolerance", ("dyspnea", "hives"), False),
    AllergyDef(RXNORM, "10831", "sulfamethoxazole / trimethoprim", "medication", "allergy", ("rash",), False),
    AllergyDef(SNOMED, "762952008", "Peanut (substance)", "food", "allergy", ("hives", "angioedema", "anaphylaxis"),
               True),
    AllergyDef(SNOMED, "442571000124108", "Tree nut (substance)", "food", "allergy", ("hives", "vomiting"), True),
    AllergyDef(SNOMED, "102263004", "Eggs (edible) (substance)", "food", "allergy", ("hives", "vomiting"), False),
    AllergyDef(SNOMED, "111088007", "Latex (substance)", "environment", "allergy", ("itching", "rash"), False),
    AllergyDef(SNOMED, "288328004", "Bee venom (substance)", "environment", "allergy", ("hives", "anaphylaxis"),
               True),
    AllergyDef(SNOMED, "260147004", "House dust mite (organism)", "environment", "allergy",
               ("rhinoconjunctivitis",), False),
    AllergyDef(SNOMED, "782576004", "Tree pollen (substance)", "environment", "allergy", ("rhinoconjunctivitis",),
               False),
    AllergyDef(SNOMED, "264287008", "Animal dander (substance)", "environment", "allergy",
               ("rhinoconjunctivitis", "itching"), False),
)
NO_KNOWN_ALLERGY = Code(SNOMED, "716186003", "No known allergy (situation)")

# --- immunizations (CVX short descriptions) ------------------------------------------------------
FLU = VaccineDef("140", "Influenza, seasonal, injectable, preservative free", 3, 200)
VACCINES: tuple[VaccineDef, ...] = (
    VaccineDef("20", "DTaP", 0, 6),
    VaccineDef("10", "IPV", 0, 6),
    VaccineDef("03", "MMR", 1, 6),
    VaccineDef("21", "varicella", 1, 6),
    VaccineDef("83", "Hep A, ped/adol, 2 dose", 1, 17),
    VaccineDef("115", "Tdap", 11, 200),
    VaccineDef("114", "meningococcal MCV4P", 11, 18),
    VaccineDef("165", "HPV9", 11, 26),
    VaccineDef("113", "Td (adult) preservative free", 19, 200),
    VaccineDef("43", "Hep B, adult", 19, 59),
    VaccineDef("187", "zoster recombinant", 50, 200),
    VaccineDef("133", "Pneumococcal conjugate PCV 13", 65, 200),
    VaccineDef("33", "pneumococcal polysaccharide PPV23", 65, 200),
)
INJECTION_SITES = (Code(ACT_SITE, "LA", "left arm"), Code(ACT_SITE, "RA", "right arm"))
INTRAMUSCULAR = Code(ROUTE_OF_ADMIN, "IM", "Injection, intramuscular")
SUBCUTANEOUS = Code(ROUTE_OF_ADMIN, "SC", "Injection, subcutaneous")
SUBCUTANEOUS_VACCINES = frozenset({"03", "21"})

# --- procedures --------------------------------------------------------------------------------
PROCEDURES: dict[str, ProcedureDef] = {
    "ecg": ProcedureDef("29303009", "Electrocardiographic procedure (procedure)", 15),
    "chest_xray": ProcedureDef("399208008", "Plain chest X-ray (procedure)", 20),
    "suture": ProcedureDef("288086009", "Suture open wound (procedure)", 30),
    "throat_culture": ProcedureDef("117015009", "Throat culture (procedure)", 5),
    "spirometry": ProcedureDef("127783003", "Spirometry (procedure)", 20),
    "depression_screening": ProcedureDef("171207006", "Depression screening (procedure)", 10),
    "med_reconciliation": ProcedureDef("430193006", "Medication reconciliation (procedure)", 10),
}
PROCEDURE_FOR_ACUTE = {"chest_pain": "ecg", "pneumonia": "chest_xray", "laceration": "suture",
                       "strep": "throat_culture"}

# --- encounters --------------------------------------------------------------------------------
ENCOUNTER_CLASSES = {
    "AMB": Code(ACT_CODE, "AMB", "ambulatory"),
    "EMER": Code(ACT_CODE, "EMER", "emergency"),
    "IMP": Code(ACT_CODE, "IMP", "inpatient encounter"),
}
ENCOUNTER_TYPES = {
    "checkup": Code(SNOMED, "185349003", "Encounter for check up (procedure)"),
    "well_child": Code(SNOMED, "410620009", "Well child visit (procedure)"),
    "followup": Code(SNOMED, "390906007", "Follow-up encounter (procedure)"),
    "acute": Code(SNOMED, "185345009", "Encounter for symptom (procedure)"),
    "emergency": Code(SNOMED, "50849002", "Emergency room admission (procedure)"),
    "inpatient": Code(SNOMED, "32485007", "Hospital admission (procedure)"),
}
PRIMARY_PERFORMER = Code(PARTICIPATION, "PPRF", "primary performer")
ATTENDER = Code(PARTICIPATION, "ATND", "attender")
DISCHARGED_HOME = Code(DISCHARGE, "home", "Home")
DISCHARGE_DIAGNOSIS = Code(DIAGNOSIS_ROLE, "DD", "Discharge diagnosis")

# --- demographics ------------------------------------------------------------------------------
RACES = {
    "white": Code(CDC_RACE, "2106-3", "White"),
    "black": Code(CDC_RACE, "2054-5", "Black or African American"),
    "asian": Code(CDC_RACE, "2028-9", "Asian"),
    "aian": Code(CDC_RACE, "1002-5", "American Indian or Alaska Native"),
    "nhpi": Code(CDC_RACE, "2076-8", "Native Hawaiian or Other Pacific Islander"),
}
ETHNICITIES = {
    True: Code(CDC_RACE, "2135-2", "Hispanic or Latino"),
    False: Code(CDC_RACE, "2186-5", "Not Hispanic or Latino"),
}
LANGUAGES = {
    "en-US": "English (United States)",
    "es": "Spanish",
    "vi": "Vietnamese",
    "pl": "Polish",
    "fr": "French",
    "hi": "Hindi",
}
MARITAL_STATUSES = {
    "M": Code(MARITAL, "M", "Married"),
    "S": Code(MARITAL, "S", "Never Married"),
    "D": Code(MARITAL, "D", "Divorced"),
    "W": Code(MARITAL, "W", "Widowed"),
}
MRN_TYPE = Code(IDENTIFIER_TYPE, "MR", "Medical Record Number")
EMERGENCY_CONTACT = Code(CONTACT_ROLE, "C", "Emergency Contact")
PARENT = Code(ROLE_CODE, "PRN", "parent")
PATIENT_ROLE = Code(SNOMED, "116154003", "Patient (person)")
