"""Channel functions used by the engine tests (what a user would write in their own package)."""

from __future__ import annotations

from ehrgate.hl7 import Message


def only_adt(message: Message) -> bool:
    return message.message_type == "ADT"


def shout_name(message: Message) -> None:
    message.set("PID-5.1", message.get("PID-5.1").upper())


def boom(message: Message) -> None:
    raise RuntimeError("transformer bug")


def to_bundle(message: Message, work) -> None:  # noqa: ANN001 - the Work
    """A stand-in for the HL7→FHIR conversion: one Patient with the PID-3 identifier (conditional)."""
    mrn = message.get("PID-3.1")
    work.bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:6d1e3a6e-0000-4000-8000-000000000001",
                   "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}],
                                "name": [{"family": message.get("PID-5.1"), "given": [message.get("PID-5.2")]}]},
                   "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:mrn|{mrn}"}}],
    }


def one_resource(message: Message, work) -> None:  # noqa: ANN001 - the Work
    """One unconditional create per message, tagged with its control id: a second delivery of the same
    message would show as a second resource (the reliability tests count them)."""
    work.bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": {"resourceType": "Basic", "identifier": [{"system": "urn:msh10",
                                                                          "value": message.control_id}],
                                "code": {"text": "hl7 message"}},
                   "request": {"method": "POST", "url": "Basic"}}],
    }
