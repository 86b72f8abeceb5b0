"""``ehrgate bulk export``: a Bulk Data client for EHRGate or any Bulk Data Access 2.0 server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import click

from .common import CliError
from .token import check_http_url

__all__ = ["bulk"]


@click.group()
def bulk() -> None:
    """Bulk Data (FHIR $export) client."""


def _load_key(path: str, kid: str | None) -> Any:
    """A private key from PEM (RSA or EC) or a private JWK (JSON, or a JWKS: its first private key);
    ``kid`` defaults to the JWK's own, else the RFC 7638 thumbprint (what ``auto_kid`` keys
    registered with EHRGate use)."""
    from joserfc.jwk import ECKey, RSAKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"--key {path}: cannot be read ({exc.strerror}).") from None
    key: Any = None
    if data.lstrip().startswith(b"{"):
        try:
            jwk = json.loads(data)
        except ValueError as exc:
            raise CliError(f"--key {path}: not valid JSON ({exc}).") from None
        if isinstance(jwk.get("keys"), list):
            jwk = next((k for k in jwk["keys"] if isinstance(k, dict) and "d" in k), None)
        if not isinstance(jwk, dict) or "d" not in jwk or jwk.get("kty") not in ("EC", "RSA"):
            raise CliError(f"--key {path}: does not hold a private EC or RSA JWK (a JSON object with kty and d).")
        try:
            key = (ECKey if jwk["kty"] == "EC" else RSAKey).import_key(jwk)
        except Exception as exc:  # noqa: BLE001 - joserfc's errors for a malformed key, as one sentence
            raise CliError(f"--key {path}: the {jwk['kty']} JWK cannot be used ({exc}).") from None
    else:
        for cls in (RSAKey, ECKey):
            try:
                key = cls.import_key(data)
                break
            except Exception:  # noqa: BLE001 - try the other key type
                continue
    if key is None or not key.is_private:
        raise CliError(f"--key {path}: not a private RSA or EC key in PEM or JWK form.")
    if kid:
        key = type(key).import_key(key.as_dict(private=True), {"kid": kid})
    elif not key.kid:
        key = type(key).import_key(key.as_dict(private=True), {"kid": key.thumbprint()})
    return key


def _token_provider(base: str, client_id: str, key: Any, scope: str, token_url: str | None) -> Any:
    """SMART Backend Services through ``ehrgate.client``; ``--token-url`` (or a discovery document
    the SMART client refuses, e.g. one without PKCE) signs the assertion here instead."""
    from ..bulk.client import BulkClientError, backend_token
    from ..client import DiscoveryError, SmartClient, SmartClientError, TokenRequestError

    smart = SmartClient(base, client_id, private_key=key)

    def token() -> str:
        if token_url:
            return backend_token(token_url, client_id, key, scope)
        try:
            return smart.backend_token(scope).access_token
        except TokenRequestError as exc:
            raise BulkClientError(f"The token endpoint refused client {client_id!r} (HTTP {exc.status}): "
                                  f"{exc.description or exc.error}") from None
        except SmartClientError as exc:
            if not isinstance(exc, DiscoveryError):
                raise BulkClientError(f"Cannot get an access token for {client_id!r}: {exc}") from None
            config_url = base.rstrip("/") + "/.well-known/smart-configuration"
            try:
                import urllib.request

                with urllib.request.urlopen(config_url, timeout=30) as resp:  # noqa: S310 - the user's server
                    found = json.load(resp).get("token_endpoint")
            except Exception:  # noqa: BLE001
                found = None
            if not isinstance(found, str):
                raise BulkClientError(f"Cannot get an access token for {client_id!r}: {exc}") from None
            return backend_token(found, client_id, key, scope)

    return token


class _Bars:
    """rich progress: a status line while polling, one bar per file while downloading."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.polling: Any = progress.add_task("Waiting for the export", total=None)

    def status(self, text: str) -> None:
        with self.lock:
            if self.polling is not None:
                self.progress.update(self.polling, description=text[:80])

    def file_started(self, name: str, total: int | None, done: int) -> None:
        with self.lock:
            if self.polling is not None:
                self.progress.remove_task(self.polling)
                self.polling = None
            self.seen[name] = done
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=total, completed=done)
            else:
                self.progress.update(self.tasks[name], total=total, completed=done)

    def file_progress(self, name: str, nbytes: int) -> None:
        with self.lock:
            self.seen[name] = self.seen.get(name, 0) + nbytes
        self.progress.advance(self.tasks[name], nbytes)

    def file_done(self, name: str) -> None:
        with self.lock:
            task = self.tasks.get(name)
            if task is not None:
                done = self.seen.get(name, 0)
                self.progress.update(task, total=done, completed=done)


@bulk.command("export")
@click.option("--base", "--fhir-base", "base", required=True,
              help="FHIR base URL, e.g. http://127.0.0.1:8080/fhir (--fhir-base, as ehrgate token spells it, works too).")
@click.option("--client-id", help="Backend service client id (SMART Backend Services). Omit for a server without auth.")
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False),
              help="The client's private key (PEM or JWK) that signs the token request.")
@click.option("--kid", help="Key id of --key as registered with the server [the JWK's kid, else its thumbprint].")
@click.option("--scope", default="system/*.read", show_default=True, help="Scopes to ask for.")
@click.option("--token-url", help="Token endpoint [from .well-known/smart-configuration].")
@click.option("--group", "group_id", help="Export the compartments of this Group's members.")
@click.option("--patient", "level", flag_value="patient", help="Export all patients' compartments (Patient/$export).")
@click.option("--system", "level", flag_value="system", default=True, help="Export everything (/$export) [default].")
@click.option("--type", "types", multiple=True, help="Resource types (repeat or comma-separate).")
@click.option("--since", help="Only resources changed after this FHIR instant, e.g. 2024-01-01T00:00:00Z.")
@click.option("--type-filter", "type_filters", multiple=True, help="A _typeFilter query, e.g. 'Observation?category=laboratory'.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the NDJSON files.")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(min=1), help="Files downloaded at once.")
@click.option("--fresh", is_flag=True, help="Start a new export even if --out holds one still to be fetched.")
@click.option("--max-wait", default=3600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for the export to finish.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def export(base: str, client_id: str | None, key_path: str | None, kid: str | None, scope: str, token_url: str | None,
           group_id: str | None, level: str, types: tuple[str, ...], since: str | None, type_filters: tuple[str, ...],
           out: str, parallel: int, fresh: bool, max_wait: float, quiet: bool) -> None:
    """Run a Bulk Data export and download its files.

    \b
    ehrgate bulk export --base http://127.0.0.1:8080/fhir --client-id my-backend --key key.pem \\
        --group cohort-1 --type Patient,Observation --out ./export
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )
    from rich.table import Table

    from ..bulk.client import BulkClient, BulkClientError, ExportRequest

    check_http_url(base, "--base")
    if token_url:
        check_http_url(token_url, "--token-url", "http://127.0.0.1:8080/auth/token")
    if bool(client_id) != bool(key_path):
        raise CliError("Give both --client-id and --key (SMART Backend Services), or neither for a server without auth.")
    token = None
    if client_id and key_path:
        token = _token_provider(base, client_id, _load_key(key_path, kid), scope, token_url)
    request = ExportRequest(
        level="group" if group_id else level, group_id=group_id,
        types=tuple(t.strip() for raw in types for t in raw.split(",") if t.strip()),
        since=since, type_filters=type_filters,
    )
    console = Console(stderr=True, quiet=quiet)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            client = BulkClient(base, token, _Bars(progress), max_wait=max_wait)
            manifest, files = client.run(request, Path(out), parallel=parallel, fresh=fresh)
    except BulkClientError as exc:
        raise CliError(str(exc)) from None

    table = Table(title=f"Export of {manifest.get('transactionTime', '?')}", show_lines=False)
    for column in ("file", "type", "lines", "bytes", "sha256"):
        table.add_column(column, justify="right" if column in ("lines", "bytes") else "left")
    for d in files:
        table.add_row(d.path.name, d.res_type if d.kind == "output" else f"{d.kind}: {d.res_type}", f"{d.lines:,}",
                      f"{d.size:,}", d.sha256[:16] + "…")
    Console(quiet=quiet).print(table)
    outputs = [d for d in files if d.kind == "output"]
    errors = [d for d in files if d.kind == "error"]
    click.echo(f"{sum(d.lines for d in outputs):,} resources in {len(outputs)} files in {out} "
               f"(manifest.json has the server's manifest; sha256 of every file: SHA256SUMS).")
    (Path(out) / "SHA256SUMS").write_text("".join(f"{d.sha256}  {d.path.name}\n" for d in files))
    if errors:
        click.echo(f"The server reported problems in {len(errors)} error file(s): "
                   + ", ".join(d.path.name for d in errors), err=True)
