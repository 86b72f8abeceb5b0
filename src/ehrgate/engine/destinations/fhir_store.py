"""Destination ``fhir_store``: the message's FHIR Bundle, as one transaction through the store's
write path (``ehrgate.fhir.bundles.process_transaction``), committed together with the queue's
bookkeeping - so a message is never written twice, even around a crash.

Without a Bundle (the channel has no conversion step yet) there is nothing to write: the delivery
is recorded as SENT with a response saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ...fhir import jsonio
from ...fhir.bundles import process_transaction
from ...fhir.errors import FhirError
from ..queue import Delivered
from .base import Destination, Payload

NO_BUNDLE = b"No FHIR resources: the channel produced no Bundle (add the hl7_to_fhir step once it is available)."


class FhirStoreDestination(Destination):
    transactional = True

    def deliver_in(self, payload: Payload, finish: Callable[[Any, Delivered], Any]) -> Delivered:
        store = self.ctx.fhir_store
        if store is None:
            return Delivered(False, error="The FHIR store is not available in this process", retry=True)
        if payload.bundle is None:
            with store.writer() as w:
                result = Delivered(True, response=NO_BUNDLE)
                finish(w.conn, result)
            return result
        try:
            bundle = jsonio.loads(payload.bundle)  # keeps decimal digits ("13.20")
        except ValueError:
            return Delivered(False, error="The message's FHIR Bundle is not valid JSON", retry=False)
        try:
            with store.writer() as w:
                results = process_transaction(store, bundle, self.ctx.known_types, session=w)
                summary = [{"status": r.status, "location": r.location} for r in results]
                result = Delivered(True, response=json.dumps(summary).encode())
                finish(w.conn, result)
            return result
        except FhirError as exc:
            retry = exc.status >= 500 or exc.status in (409, 412)
            return Delivered(False, error=f"FHIR store refused the Bundle ({exc.status}): {exc.diagnostics}",
                             retry=retry)
        except sa.exc.OperationalError as exc:
            return Delivered(False, error=f"Database busy or unavailable: {str(exc.orig).splitlines()[0]}")
