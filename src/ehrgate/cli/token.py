"""``ehrgate token``: an access token for scripts and curl, obtained the way a backend service gets
one (SMART Backend Services: ``client_credentials`` with a ``private_key_jwt`` assertion signed by
the client's private JWK), from a running server. Prints only the token, so
``TOKEN=$(ehrgate token)`` works; nothing it handles is logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from .common import CliError, settings_from

__all__ = ["token"]

DEMO_CLIENT = "demo-backend"
DEMO_KEY_FILE = "demo-backend-key.json"


def check_http_url(value: str, option: str, example: str = "http://127.0.0.1:8080/fhir") -> str:
    """``value`` if it is an absolute http(s) URL, else a sentence naming ``option`` (urllib's own
    complaint, ``unknown url type``, came out as a traceback)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or above 65535
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CliError(f"{option} {value!r} is not a valid http(s) URL. Expected e.g. {option} {example}.")
    return value


def _private_key(path: Path) -> Any:
    from joserfc.jwk import JWKRegistry

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"No private key at {path}. Run `ehrgate demo` once (it writes the demo backend key there), "
                       "or pass --key FILE with the client's private JWK.") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"--key {str(path)!r} is not a readable JSON file ({exc}).") from None
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        data = next((k for k in data["keys"] if isinstance(k, dict) and "d" in k), None)
    if not isinstance(data, dict) or "d" not in data or data.get("kty") not in ("EC", "RSA"):
        raise CliError(f"{path} does not hold a private EC or RSA JWK (a JSON object with kty and d).")
    if not data.get("kid"):
        raise CliError(f"The JWK in {path} has no kid; the server finds the client's public key by kid.")
    try:
        return JWKRegistry.import_key(data)
    except Exception as exc:  # noqa: BLE001 - a malformed key, as one sentence
        raise CliError(f"The JWK in {path} cannot be used: {exc}.") from None


@click.command()
@click.option("--host", help="Host of the running server, for the default --fhir-base [127.0.0.1].")
@click.option("--port", type=int, help="Port of the running server, for the default --fhir-base [8080].")
@click.option("--data-dir", type=click.Path(file_okay=False), help="The demo's data dir: where the demo key is [./ehrgate-data].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="ehrgate.yaml (for base_url, host, port).")
@click.option("--client-id", default=DEMO_CLIENT, show_default=True, help="Backend-services client (confidential-asymmetric).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help=f"The client's private JWK (JSON) [<data-dir>/{DEMO_KEY_FILE} for {DEMO_CLIENT}].")
@click.option("--scope", default="system/*.rs", show_default=True, help="Scopes to ask for (system/…).")
@click.option("--fhir-base", "--base", "fhir_base",
              help="FHIR base of the running server [http://<host>:<port>/fhir from the settings]; --base, as ehrgate bulk export spells it, works too.")
@click.option("--json", "as_json", is_flag=True, help="Print the token response (token, expires_in, scope) as JSON.")
def token(client_id: str, key_file: str | None, scope: str, fhir_base: str | None, as_json: bool, **flags: Any) -> None:
    """Print an access token from a running server (SMART Backend Services, client_credentials).

    \b
      TOKEN=$(ehrgate token)
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/fhir/Patient
    """
    from ..client import SmartClient, SmartClientError, TokenRequestError, TransportError

    if fhir_base is not None:  # the settings check base_url themselves
        check_http_url(fhir_base, "--fhir-base")
    settings = settings_from(**flags)
    if key_file is None:
        if client_id != DEMO_CLIENT:
            raise CliError(f"--key FILE is needed for client {client_id!r} (only {DEMO_CLIENT} has a default key).")
        key_file = str(Path(settings.data_dir) / DEMO_KEY_FILE)
    key = _private_key(Path(key_file))
    base = (fhir_base or settings.public_base + "/fhir").rstrip("/")
    client = SmartClient(base, client_id, private_key=key)
    try:
        tokens = client.backend_token(scope)
    except TransportError:
        raise CliError(f"Cannot reach {base}: is the server running (`ehrgate demo` or `ehrgate serve`)? "
                       "Pass --fhir-base for another address.") from None
    except TokenRequestError as exc:
        raise CliError(f"The token endpoint refused ({exc.status} {exc.error}): {exc.description or 'no description'}") from None
    except SmartClientError as exc:
        raise CliError(f"No token from {base}: {exc}") from None
    if as_json:
        click.echo(json.dumps({"access_token": tokens.access_token, "token_type": tokens.token_type,
                               "expires_in": tokens.expires_in, "scope": tokens.scope}))
    else:
        click.echo(tokens.access_token)
