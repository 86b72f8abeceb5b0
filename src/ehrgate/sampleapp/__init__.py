"""The bundled SMART sample app served at ``/sample-app``: a patient summary (demographics,
conditions, recent labs) that runs both the EHR launch and the standalone launch through
``ehrgate.client`` exactly as a third-party app would (over HTTP, as a public client with PKCE).

It depends only on ``ehrgate.client``: the server mounts its routes (``sample_app_routes``) but the
app knows nothing of the authorization server's internals.
"""

from __future__ import annotations

from .explain import Explanation, explain
from .grants import Access, section_access
from .routes import SampleApp, sample_app_routes

__all__ = ["Access", "Explanation", "SampleApp", "explain", "sample_app_routes", "section_access"]
