"""Segment and field names for common segments, as the HL7 v2.5.1 standard names them (OBX-20..22
and MSH-22..25 from v2.6). Used by ``tree.format_tree``; a field not listed is shown by number only.

Sources: HL7 v2.5.1 chapters 2 (MSH, MSA, ERR, NTE), 3 (EVN, PID, PV1, NK1, AL1), 4 (ORC, RXA),
6 (DG1, IN1), 7 (OBR, OBX, SPM), 9 (TXA), 10 (SCH, AIL, AIP).
"""

from __future__ import annotations

__all__ = ["SEGMENTS", "field_name", "segment_name"]

_AIX_TAIL = ("Start Date/Time", "Start Date/Time Offset", "Start Date/Time Offset Units", "Duration",
             "Duration Units", "Allow Substitution Code", "Filler Status Code")

#: segment id -> (segment name, field names in order from field 1)
SEGMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "MSH": ("Message Header", (
        "Field Separator", "Encoding Characters", "Sending Application", "Sending Facility",
        "Receiving Application", "Receiving Facility", "Date/Time of Message", "Security", "Message Type",
        "Message Control ID", "Processing ID", "Version ID", "Sequence Number", "Continuation Pointer",
        "Accept Acknowledgment Type", "Application Acknowledgment Type", "Country Code", "Character Set",
        "Principal Language of Message", "Alternate Character Set Handling Scheme",
        "Message Profile Identifier", "Sending Responsible Organization", "Receiving Responsible Organization",
        "Sending Network Address", "Receiving Network Address")),
    "EVN": ("Event Type", (
        "Event Type Code", "Recorded Date/Time", "Date/Time Planned Event", "Event Reason Code", "Operator ID",
        "Event Occurred", "Event Facility")),
    "PID": ("Patient Identification", (
        "Set ID - PID", "Patient ID", "Patient Identifier List", "Alternate Patient ID - PID", "Patient Name",
        "Mother's Maiden Name", "Date/Time of Birth", "Administrative Sex", "Patient Alias", "Race",
        "Patient Address", "County Code", "Phone Number - Home", "Phone Number - Business", "Primary Language",
        "Marital Status", "Religion", "Patient Account Number", "SSN Number - Patient",
        "Driver's License Number - Patient", "Mother's Identifier", "Ethnic Group", "Birth Place",
        "Multiple Birth Indicator", "Birth Order", "Citizenship", "Veterans Military Status", "Nationality",
        "Patient Death Date and Time", "Patient Death Indicator", "Identity Unknown Indicator",
        "Identity Reliability Code", "Last Update Date/Time", "Last Update Facility", "Species Code",
        "Breed Code", "Strain", "Production Class Code", "Tribal Citizenship")),
    "PV1": ("Patient Visit", (
        "Set ID - PV1", "Patient Class", "Assigned Patient Location", "Admission Type", "Preadmit Number",
        "Prior Patient Location", "Attending Doctor", "Referring Doctor", "Consulting Doctor",
        "Hospital Service", "Temporary Location", "Preadmit Test Indicator", "Re-admission Indicator",
        "Admit Source", "Ambulatory Status", "VIP Indicator", "Admitting Doctor", "Patient Type",
        "Visit Number", "Financial Class", "Charge Price Indicator", "Courtesy Code", "Credit Rating",
        "Contract Code", "Contract Effective Date", "Contract Amount", "Contract Period", "Interest Code",
        "Transfer to Bad Debt Code", "Transfer to Bad Debt Date", "Bad Debt Agency Code",
        "Bad Debt Transfer Amount", "Bad Debt Recovery Amount", "Delete Account Indicator",
        "Delete Account Date", "Discharge Disposition", "Discharged to Location", "Diet Type",
        "Servicing Facility", "Bed Status", "Account Status", "Pending Location", "Prior Temporary Location",
        "Admit Date/Time", "Discharge Date/Time", "Current Patient Balance", "Total Charges",
        "Total Adjustments", "Total Payments", "Alternate Visit ID", "Visit Indicator",
        "Other Healthcare Provider")),
    "NK1": ("Next of Kin / Associated Parties", (
        "Set ID - NK1", "Name", "Relationship", "Address", "Phone Number", "Business Phone Number",
        "Contact Role", "Start Date", "End Date", "Next of Kin / Associated Parties Job Title",
        "Next of Kin / Associated Parties Job Code/Class", "Next of Kin / Associated Parties Employee Number",
        "Organization Name - NK1", "Marital Status", "Administrative Sex", "Date/Time of Birth",
        "Living Dependency", "Ambulatory Status", "Citizenship", "Primary Language", "Living Arrangement",
        "Publicity Code", "Protection Indicator", "Student Indicator", "Religion", "Mother's Maiden Name",
        "Nationality", "Ethnic Group", "Contact Reason", "Contact Person's Name",
        "Contact Person's Telephone Number", "Contact Person's Address",
        "Next of Kin/Associated Party's Identifiers", "Job Status", "Race", "Handicap",
        "Contact Person Social Security Number", "Next of Kin Birth Place", "VIP Indicator")),
    "OBR": ("Observation Request", (
        "Set ID - OBR", "Placer Order Number", "Filler Order Number", "Universal Service Identifier",
        "Priority - OBR", "Requested Date/Time", "Observation Date/Time", "Observation End Date/Time",
        "Collection Volume", "Collector Identifier", "Specimen Action Code", "Danger Code",
        "Relevant Clinical Information", "Specimen Received Date/Time", "Specimen Source",
        "Ordering Provider", "Order Callback Phone Number", "Placer Field 1", "Placer Field 2",
        "Filler Field 1", "Filler Field 2", "Results Rpt/Status Chng - Date/Time", "Charge to Practice",
        "Diagnostic Serv Sect ID", "Result Status", "Parent Result", "Quantity/Timing", "Result Copies To",
        "Parent", "Transportation Mode", "Reason for Study", "Principal Result Interpreter",
        "Assistant Result Interpreter", "Technician", "Transcriptionist", "Scheduled Date/Time",
        "Number of Sample Containers", "Transport Logistics of Collected Sample", "Collector's Comment",
        "Transport Arrangement Responsibility", "Transport Arranged", "Escort Required",
        "Planned Patient Transport Comment", "Procedure Code", "Procedure Code Modifier",
        "Placer Supplemental Service Information", "Filler Supplemental Service Information",
        "Medically Necessary Duplicate Procedure Reason", "Result Handling",
        "Parent Universal Service Identifier")),
    "OBX": ("Observation/Result", (
        "Set ID - OBX", "Value Type", "Observation Identifier", "Observation Sub-ID", "Observation Value",
        "Units", "References Range", "Abnormal Flags", "Probability", "Nature of Abnormal Test",
        "Observation Result Status", "Effective Date of Reference Range", "User Defined Access Checks",
        "Date/Time of the Observation", "Producer's ID", "Responsible Observer", "Observation Method",
        "Equipment Instance Identifier", "Date/Time of the Analysis", "Observation Site",
        "Observation Instance Identifier", "Mood Code", "Performing Organization Name",
        "Performing Organization Address", "Performing Organization Medical Director")),
    "ORC": ("Common Order", (
        "Order Control", "Placer Order Number", "Filler Order Number", "Placer Group Number", "Order Status",
        "Response Flag", "Quantity/Timing", "Parent", "Date/Time of Transaction", "Entered By", "Verified By",
        "Ordering Provider", "Enterer's Location", "Call Back Phone Number", "Order Effective Date/Time",
        "Order Control Code Reason", "Entering Organization", "Entering Device", "Action By",
        "Advanced Beneficiary Notice Code", "Ordering Facility Name", "Ordering Facility Address",
        "Ordering Facility Phone Number", "Ordering Provider Address", "Order Status Modifier",
        "Advanced Beneficiary Notice Override Reason", "Filler's Expected Availability Date/Time",
        "Confidentiality Code", "Order Type", "Enterer Authorization Mode",
        "Parent Universal Service Identifier")),
    "AL1": ("Patient Allergy Information", (
        "Set ID - AL1", "Allergen Type Code", "Allergen Code/Mnemonic/Description", "Allergy Severity Code",
        "Allergy Reaction Code", "Identification Date")),
    "DG1": ("Diagnosis", (
        "Set ID - DG1", "Diagnosis Coding Method", "Diagnosis Code - DG1", "Diagnosis Description",
        "Diagnosis Date/Time", "Diagnosis Type", "Major Diagnostic Category", "Diagnostic Related Group",
        "DRG Approval Indicator", "DRG Grouper Review Code", "Outlier Type", "Outlier Days", "Outlier Cost",
        "Grouper Version And Type", "Diagnosis Priority", "Diagnosing Clinician", "Diagnosis Classification",
        "Confidential Indicator", "Attestation Date/Time", "Diagnosis Identifier", "Diagnosis Action Code")),
    "IN1": ("Insurance", (
        "Set ID - IN1", "Insurance Plan ID", "Insurance Company ID", "Insurance Company Name",
        "Insurance Company Address", "Insurance Co Contact Person", "Insurance Co Phone Number",
        "Group Number", "Group Name", "Insured's Group Emp ID", "Insured's Group Emp Name",
        "Plan Effective Date", "Plan Expiration Date", "Authorization Information", "Plan Type",
        "Name Of Insured", "Insured's Relationship To Patient", "Insured's Date Of Birth", "Insured's Address",
        "Assignment Of Benefits", "Coordination Of Benefits", "Coord Of Ben. Priority",
        "Notice Of Admission Flag", "Notice Of Admission Date", "Report Of Eligibility Flag",
        "Report Of Eligibility Date", "Release Information Code", "Pre-Admit Cert (PAC)",
        "Verification Date/Time", "Verification By", "Type Of Agreement Code", "Billing Status",
        "Lifetime Reserve Days", "Delay Before L.R. Day", "Company Plan Code", "Policy Number",
        "Policy Deductible", "Policy Limit - Amount", "Policy Limit - Days", "Room Rate - Semi-Private",
        "Room Rate - Private", "Insured's Employment Status", "Insured's Administrative Sex",
        "Insured's Employer's Address", "Verification Status", "Prior Insurance Plan ID", "Coverage Type",
        "Handicap", "Insured's ID Number", "Signature Code", "Signature Code Date", "Insured's Birth Place",
        "VIP Indicator")),
    "SCH": ("Scheduling Activity Information", (
        "Placer Appointment ID", "Filler Appointment ID", "Occurrence Number", "Placer Group Number",
        "Schedule ID", "Event Reason", "Appointment Reason", "Appointment Type", "Appointment Duration",
        "Appointment Duration Units", "Appointment Timing Quantity", "Placer Contact Person",
        "Placer Contact Phone Number", "Placer Contact Address", "Placer Contact Location",
        "Filler Contact Person", "Filler Contact Phone Number", "Filler Contact Address",
        "Filler Contact Location", "Entered By Person", "Entered By Phone Number", "Entered By Location",
        "Parent Placer Appointment ID", "Parent Filler Appointment ID", "Filler Status Code",
        "Placer Order Number", "Filler Order Number")),
    "AIL": ("Appointment Information - Location Resource", (
        "Set ID - AIL", "Segment Action Code", "Location Resource ID", "Location Type - AIL", "Location Group",
        *_AIX_TAIL)),
    "AIP": ("Appointment Information - Personnel Resource", (
        "Set ID - AIP", "Segment Action Code", "Personnel Resource ID", "Resource Type", "Resource Group",
        *_AIX_TAIL)),
    "RXA": ("Pharmacy/Treatment Administration", (
        "Give Sub-ID Counter", "Administration Sub-ID Counter", "Date/Time Start of Administration",
        "Date/Time End of Administration", "Administered Code", "Administered Amount", "Administered Units",
        "Administered Dosage Form", "Administration Notes", "Administering Provider",
        "Administered-at Location", "Administered Per (Time Unit)", "Administered Strength",
        "Administered Strength Units", "Substance Lot Number", "Substance Expiration Date",
        "Substance Manufacturer Name", "Substance/Treatment Refusal Reason", "Indication",
        "Completion Status", "Action Code - RXA", "System Entry Date/Time",
        "Administered Drug Strength Volume", "Administered Drug Strength Volume Units",
        "Administered Barcode Identifier", "Pharmacy Order Type")),
    "TXA": ("Transcription Document Header", (
        "Set ID - TXA", "Document Type", "Document Content Presentation", "Activity Date/Time",
        "Primary Activity Provider Code/Name", "Origination Date/Time", "Transcription Date/Time",
        "Edit Date/Time", "Originator Code/Name", "Assigned Document Authenticator",
        "Transcriptionist Code/Name", "Unique Document Number", "Parent Document Number",
        "Placer Order Number", "Filler Order Number", "Unique Document File Name",
        "Document Completion Status", "Document Confidentiality Status", "Document Availability Status",
        "Document Storage Status", "Document Change Reason", "Authentication Person, Time Stamp",
        "Distributed Copies (Code and Name of Recipients)")),
    "NTE": ("Notes and Comments", ("Set ID - NTE", "Source of Comment", "Comment", "Comment Type")),
    "SPM": ("Specimen", (
        "Set ID - SPM", "Specimen ID", "Specimen Parent IDs", "Specimen Type", "Specimen Type Modifier",
        "Specimen Additives", "Specimen Collection Method", "Specimen Source Site",
        "Specimen Source Site Modifier", "Specimen Collection Site", "Specimen Role",
        "Specimen Collection Amount", "Grouped Specimen Count", "Specimen Description",
        "Specimen Handling Code", "Specimen Risk Code", "Specimen Collection Date/Time",
        "Specimen Received Date/Time", "Specimen Expiration Date/Time", "Specimen Availability",
        "Specimen Reject Reason", "Specimen Quality", "Specimen Appropriateness", "Specimen Condition",
        "Specimen Current Quantity", "Number of Specimen Containers", "Container Type",
        "Container Condition", "Specimen Child Role")),
    "ERR": ("Error", (
        "Error Code and Location", "Error Location", "HL7 Error Code", "Severity", "Application Error Code",
        "Application Error Parameter", "Diagnostic Information", "User Message", "Inform Person Indicator",
        "Override Type", "Override Reason Code", "Help Desk Contact Point")),
    "MSA": ("Message Acknowledgment", (
        "Acknowledgment Code", "Message Control ID", "Text Message", "Expected Sequence Number",
        "Delayed Acknowledgment Type", "Error Condition")),
}


def segment_name(segment: str) -> str:
    """'Patient Identification' for 'PID'; '' for segments not in the table (Z-segments included)."""
    entry = SEGMENTS.get(segment)
    return entry[0] if entry else ""


def field_name(segment: str, field: int) -> str:
    """'Patient Name' for ('PID', 5); '' when unknown."""
    entry = SEGMENTS.get(segment)
    if entry is None or not 1 <= field <= len(entry[1]):
        return ""
    return entry[1][field - 1]
