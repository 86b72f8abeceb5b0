"""Demo users and apps for ``ehrgate demo`` (idempotent): a clinician, a patient and an admin linked
to records of the synthetic data, the sample app, and one backend-services client whose private key
is written to the data dir. Returns the text to print."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from ..fhir.store.service import Store
from ..settings import Settings
from .apps import App, add_app, get_app, update_app
from .users import add_user, list_users

__all__ = ["DEMO_PASSWORD", "seed_smart_demo"]

DEMO_PASSWORD = "ehrgate-demo"
SAMPLE_APP = "ehrgate-sample"
BACKEND_APP = "demo-backend"


def _first(conn: sa.Connection, res_type: str) -> str | None:
    row = conn.execute(sa.text("SELECT res_id FROM resource WHERE res_type = :t AND NOT deleted ORDER BY pk LIMIT 1"),
                       {"t": res_type}).first()
    return str(row[0]) if row else None


SAMPLE_APP_ADDRESSES = 5
"""Return addresses of the sample app kept registered, this server's first (see ``seed_smart_demo``)."""


def seed_smart_demo(store: Store, settings: Settings, command: str = "ehrgate") -> str:
    """Demo users, the sample app and the backend client, unless there; returns what to tell the user
    (``command``: how their shell runs ``ehrgate``)."""
    from joserfc.jwk import ECKey

    base = settings.public_base
    now = int(time.time())
    key_file = Path(settings.data_dir) / "demo-backend-key.json"
    with store.writer() as w:
        if not list_users(w.conn):
            practitioner = _first(w.conn, "Practitioner")
            patient = _first(w.conn, "Patient")
            add_user(w.conn, username="doctor", password=DEMO_PASSWORD, role="clinician",
                     fhir_user=f"Practitioner/{practitioner}" if practitioner else "", display_name="Demo Clinician", now=now)
            add_user(w.conn, username="patient", password=DEMO_PASSWORD, role="patient",
                     fhir_user=f"Patient/{patient}" if patient else "", display_name="Demo Patient", now=now)
            add_user(w.conn, username="admin", password=DEMO_PASSWORD, role="admin", display_name="Demo Admin", now=now)
        sample = get_app(w.conn, SAMPLE_APP)
        redirect, launch = f"{base}/sample-app/callback", f"{base}/sample-app/launch"
        if sample is None:
            add_app(w.conn, App(SAMPLE_APP, "EHRGate sample app", "public", (redirect,), launch_url=launch,
                                description="Patient summary: demographics, conditions, recent labs."), now=now)
        elif sample.redirect_uris[:1] != (redirect,) or sample.launch_url != launch:
            # The demo started on another address than last time (--port 0, --host, base_url): the
            # bundled app lives at this server, so its addresses follow it - or every launch would
            # end at "the app's return address does not match". The earlier return addresses stay
            # registered (the last few): a demo still running at one of them on the same data dir
            # keeps launching the app - its chart opens this server's copy, which authorizes at
            # the launching server (``iss``) and returns to this address.
            uris = (redirect, *(u for u in sample.redirect_uris if u != redirect))[:SAMPLE_APP_ADDRESSES]
            update_app(w.conn, replace(sample, redirect_uris=uris, launch_url=launch))
        if get_app(w.conn, BACKEND_APP) is None:
            key = ECKey.generate_key("P-384", auto_kid=True)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(key.as_dict(private=True), fh)
            add_app(w.conn, App(BACKEND_APP, "Demo backend service", "confidential-asymmetric",
                                jwks={"keys": [key.as_dict(private=False)]}, scopes="system/*.rs"), now=now)
    return (
        f"Sign in at {base}/ehr as doctor, patient or admin (password {DEMO_PASSWORD}).\n"
        f"SMART discovery: {base}/fhir/.well-known/smart-configuration\n"
        f"Sample app (public client {SAMPLE_APP}): launch it from a chart at {base}/ehr, or start it at {base}/sample-app\n"
        f"Backend services: client_id {BACKEND_APP}, ES384 private key in {key_file}; "
        f"`{command} token` prints an access token with it"
    )
