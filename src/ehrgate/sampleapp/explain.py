"""OAuth and launch errors in a clinician's words.

RFC 6749 §4.1.2.1 and §5.2 error codes (and the client's own failures: state mismatch, unreachable
server, no SMART discovery) map to a title and a sentence saying what to do next. The code and the
server's description are kept for a collapsed "details for IT" line; they are never the headline.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..client import (
    AuthorizationError,
    DiscoveryError,
    SmartClientError,
    StateMismatch,
    TokenRequestError,
    TransportError,
)

__all__ = ["MESSAGES", "Explanation", "explain"]

AGAIN = ("Start the app again: from the patient's chart in the EHR, or, if you opened it yourself, with "
         "Sign in with EHRGate on the app's home page.")
ADMIN = "Ask your EHR administrator to check how this app is registered."


@dataclass(frozen=True)
class Explanation:
    title: str
    advice: str
    code: str = ""
    detail: str = ""


MESSAGES: dict[str, tuple[str, str]] = {
    "access_denied": ("The app was not given access",
                      "Deny was chosen on the EHR's consent page, or nothing was ticked, so the app cannot open the "
                      f"record. {AGAIN} Then choose Allow."),
    "invalid_scope": ("The app asked for information it is not allowed to see",
                      f"The EHR does not allow this app the access it asked for. {ADMIN}"),
    "invalid_request": ("The EHR did not accept the app's sign-in request",
                        f"{AGAIN} If it happens again, tell your IT team (the details below help them)."),
    "unauthorized_client": ("This app may not sign in this way", ADMIN),
    "invalid_client": ("The EHR does not recognise this app", ADMIN),
    "invalid_grant": ("The sign-in expired before it finished",
                      f"A sign-in can be used only once and only for about a minute. {AGAIN}"),
    "unsupported_response_type": ("The EHR and the app do not agree on how to sign in", ADMIN),
    "unsupported_grant_type": ("The EHR and the app do not agree on how to sign in", ADMIN),
    "server_error": ("The EHR had a problem signing you in",
                     "Try again in a minute. If it keeps happening, tell your IT team."),
    "temporarily_unavailable": ("The EHR is busy", "Wait a minute, then launch the app again."),
    "slow_down": ("The EHR is busy", "Wait a minute, then launch the app again."),
    "state_mismatch": ("This sign-in does not belong to this app window",
                       f"It may come from an old link or another window. {AGAIN}"),
    "session_ended": ("Your session with the app has ended",
                      f"The app forgets a patient when it restarts or after some hours. {AGAIN}"),
    "unreachable": ("The app cannot reach the EHR",
                    "The EHR's server did not answer. Check the network or try again shortly; if it persists, "
                    "tell your IT team."),
    "not_smart": ("This EHR address does not offer SMART apps",
                  f"The app was started with an address that is not a SMART-enabled EHR. {ADMIN}"),
    "wrong_ehr": ("The app was launched from a different EHR",
                  "This copy of the app works only with the EHR it is configured for. Launch it from that EHR's chart."),
}


def explain(exc: BaseException | str, detail: str = "") -> Explanation:
    """The clinician-facing explanation of a client error, or of an error code."""
    if isinstance(exc, str):
        code = exc
    elif isinstance(exc, StateMismatch):
        code, detail = "state_mismatch", str(exc)
    elif isinstance(exc, AuthorizationError):
        code, detail = exc.error, exc.description
        if code == "invalid_request" and "not the configured server" in detail:
            code = "wrong_ehr"
    elif isinstance(exc, TokenRequestError):
        code, detail = exc.error, exc.description
    elif isinstance(exc, TransportError):
        code, detail = "unreachable", str(exc)
    elif isinstance(exc, DiscoveryError):
        code, detail = "not_smart", str(exc)
    elif isinstance(exc, SmartClientError):
        code, detail = "server_error", str(exc)
    else:
        code, detail = "server_error", type(exc).__name__
    title, advice = MESSAGES.get(code, ("The app could not sign in", f"{AGAIN} If it happens again, tell your IT team."))
    return Explanation(title, advice, code, detail)
