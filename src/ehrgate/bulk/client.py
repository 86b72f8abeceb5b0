"""A Bulk Data Access 2.0 client: kick-off, polling, parallel resumable downloads, a summary.

Works against EHRGate and any Bulk Data server (export.html). Standard library HTTP (urllib) in
threads; the access token comes from a callable (SMART Backend Services, see ``ehrgate bulk``),
asked again when the server answers 401. Progress goes to an ``Observer`` (the CLI draws rich
progress bars); nothing here prints.

Resuming: the status URL is kept in ``<out>/.bulk-export.json``, so running the same command again
with the same ``--out`` goes on polling that export instead of starting another; a file whose
download was cut off is continued with ``Range`` from the bytes already on disk (``.part``).
File names on disk come from the manifest's types, never from the server's URLs.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = ["BulkClient", "BulkClientError", "Download", "ExportRequest", "Observer", "backend_token"]

STATE = ".bulk-export.json"
CHUNK = 1 << 16
TRANSIENT = frozenset({"transient", "lock-error", "no-store", "timeout", "incomplete", "throttled"})
"""OperationOutcome issue codes that mean "poll again later" (IssueType ``transient`` and its
children, export.html#response---error-status-1). ``exception`` is one of them in the value set,
but servers commonly send it for a failed export, so it is taken as final."""


class BulkClientError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""


class Observer(Protocol):
    def status(self, text: str) -> None: ...
    def file_started(self, name: str, total: int | None, done: int) -> None: ...
    def file_progress(self, name: str, nbytes: int) -> None: ...
    def file_done(self, name: str) -> None: ...


class _Quiet:
    def status(self, text: str) -> None:
        pass

    def file_started(self, name: str, total: int | None, done: int) -> None:
        pass

    def file_progress(self, name: str, nbytes: int) -> None:
        pass

    def file_done(self, name: str) -> None:
        pass


@dataclass(frozen=True)
class ExportRequest:
    level: str = "system"
    """``system``, ``patient`` or ``group``."""
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    type_filters: tuple[str, ...] = ()

    def url(self, base: str) -> str:
        path = {"system": "/$export", "patient": "/Patient/$export"}.get(self.level)
        if self.level == "group":
            if not self.group_id:
                raise BulkClientError("A Group export needs a group id.")
            path = f"/Group/{urllib.parse.quote(self.group_id, safe='')}/$export"
        if path is None:
            raise BulkClientError(f"Export level {self.level!r} is not system, patient or group.")
        params: list[tuple[str, str]] = []
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        params += [("_typeFilter", f) for f in self.type_filters]
        return base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")


@dataclass
class Download:
    kind: str
    """``output``, ``error`` or ``deleted``."""
    res_type: str
    url: str
    path: Path
    count: int | None = None
    lines: int = 0
    size: int = 0
    sha256: str = ""
    resumed_from: int = 0


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def outcome(self) -> str:
        """The diagnostics of an OperationOutcome body, or the start of the body."""
        data = self.json()
        if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
            texts = [i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code", "")
                     for i in data.get("issue") or [] if isinstance(i, dict)]
            return "; ".join(t for t in texts if t) or "(no diagnostics)"
        return self.body[:300].decode("utf-8", "replace").strip() or f"HTTP {self.status}"

    def transient(self) -> bool:
        """A 5xx that asks to be retried: a gateway's 502/503/504, or an OperationOutcome whose
        issues all carry a transient code."""
        if self.status in (502, 503, 504) and not self.body.strip():
            return True
        data = self.json()
        issues = data.get("issue") if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome" else None
        return isinstance(issues, list) and bool(issues) and all(
            isinstance(i, dict) and i.get("code") in TRANSIENT for i in issues)


def backend_token(token_url: str, client_id: str, key: Any, scope: str, *, timeout: float = 30.0) -> str:
    """SMART Backend Services (client_credentials + private_key_jwt, RFC 7523) with a joserfc key;
    for servers whose discovery document the SMART client does not accept."""
    import secrets

    from joserfc import jwt

    alg = "ES384" if getattr(key, "key_type", "") == "EC" else "RS384"
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now, "exp": now + 240,
              "jti": secrets.token_urlsafe(16)}
    header = {"alg": alg, "typ": "JWT", **({"kid": key.kid} if getattr(key, "kid", None) else {})}
    assertion = jwt.encode(header, claims, key, algorithms=[alg])
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }).encode()
    resp = _request("POST", token_url, {"Content-Type": "application/x-www-form-urlencoded",
                                         "Accept": "application/json"}, form, timeout)
    data = resp.json()
    if resp.status != 200 or not isinstance(data, dict) or "access_token" not in data:
        error = data.get("error_description") or data.get("error") if isinstance(data, dict) else None
        raise BulkClientError(f"The token endpoint {token_url} refused client {client_id!r} (HTTP {resp.status}): "
                              f"{error or resp.outcome()}")
    return str(data["access_token"])


def _request(method: str, url: str, headers: dict[str, str], body: bytes | None = None,
             timeout: float = 60.0) -> _Response:
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):  # urllib also opens file: URLs
        raise BulkClientError(f"{url!r} is not an http(s) URL; refusing to fetch it.")
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's server
            return _Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return _Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise BulkClientError(f"Cannot reach {url}: {reason or type(exc).__name__}. Is the server running and "
                              "the URL right?") from None


MIN_WAIT, MAX_WAIT = 1.0, 120.0
"""Bounds of every wait the client takes from a ``Retry-After``: ``0`` (or a date in the past) must not
make it poll in a tight loop, nor a far-off date keep it asleep past any sensible time."""


def _retry_after(headers: dict[str, str], default: float) -> float:
    value = headers.get("retry-after", "").strip()
    wait = default
    if value.isdigit():
        wait = float(value)
    elif value:
        try:
            wait = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            pass
    return min(max(wait, MIN_WAIT), MAX_WAIT)


@dataclass
class BulkClient:
    base: str
    token: Callable[[], str] | None = None
    """Returns a bearer token (called again after a 401); None: the server needs no token."""
    observer: Observer = field(default_factory=_Quiet)
    timeout: float = 60.0
    max_wait: float = 3600.0
    """Give up polling after this many seconds."""
    sleep: Callable[[float], None] = time.sleep
    _bearer: str | None = None

    # -- HTTP -----------------------------------------------------------------------------

    def _auth(self, fresh: bool = False) -> dict[str, str]:
        if self.token is None:
            return {}
        if self._bearer is None or fresh:
            self._bearer = self.token()
        return {"Authorization": f"Bearer {self._bearer}"}

    def _call(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None,
              auth: bool = True) -> _Response:
        resp = _request(method, url, {**headers, **(self._auth() if auth else {})}, body, self.timeout)
        if resp.status == 401 and auth and self.token is not None:
            resp = _request(method, url, {**headers, **self._auth(fresh=True)}, body, self.timeout)
        return resp

    # -- the export -----------------------------------------------------------------------

    def kickoff(self, request: ExportRequest) -> str:
        """Start the export; a 429 (too many exports of this client) is retried after its
        ``Retry-After`` while that fits in ``max_wait``."""
        url = request.url(self.base)
        started = time.monotonic()
        while True:
            resp = self._call("GET", url, {"Accept": "application/fhir+json", "Prefer": "respond-async"})
            if resp.status != 429:
                break
            wait = _retry_after(resp.headers, 60.0)
            if time.monotonic() - started + wait > self.max_wait:
                raise BulkClientError(f"The server has too many exports running for this client (429); try again in "
                                      f"{wait:.0f} s.")
            self.observer.status(f"The server has too many exports running for this client; retrying in {wait:.0f} s")
            self.sleep(wait)
        if resp.status != 202:
            raise BulkClientError(f"The kick-off {url} was refused (HTTP {resp.status}): {resp.outcome()}")
        location = resp.headers.get("content-location")
        if not location:
            raise BulkClientError("The kick-off was accepted but the response has no Content-Location to poll.")
        return urllib.parse.urljoin(url, location)

    def poll(self, status_url: str) -> dict[str, Any]:
        """Poll until the manifest: honour Retry-After, else back off exponentially (1 s to 60 s)."""
        started = time.monotonic()
        backoff = 1.0
        while True:
            resp = self._call("GET", status_url, {"Accept": "application/json"})
            if resp.status == 200:
                manifest = resp.json()
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise BulkClientError(f"The status URL {status_url} answered 200 without a manifest.")
                return manifest
            if resp.status in (202, 429) or (resp.status >= 500 and resp.transient()):
                progress = resp.headers.get("x-progress", "in progress") if resp.status == 202 else (
                    f"status answered HTTP {resp.status}; retrying")
                self.observer.status(f"Export {progress}")
                wait = _retry_after(resp.headers, backoff)
                backoff = min(backoff * 2, 60.0)
                if time.monotonic() - started + wait > self.max_wait:
                    raise BulkClientError(f"The export did not finish within {self.max_wait:.0f} s; run the same "
                                          "command again to keep waiting for it.")
                self.sleep(wait)
                continue
            if resp.status == 404:
                raise BulkClientError(f"The export at {status_url} no longer exists (cancelled or expired); "
                                      "start a new one with --fresh.")
            raise BulkClientError(f"The export failed (HTTP {resp.status}): {resp.outcome()}")

    def cancel(self, status_url: str) -> None:
        resp = self._call("DELETE", status_url, {"Accept": "application/fhir+json"})
        if resp.status not in (202, 404):
            raise BulkClientError(f"Cancelling {status_url} failed (HTTP {resp.status}): {resp.outcome()}")

    # -- downloads ------------------------------------------------------------------------

    def plan_downloads(self, manifest: dict[str, Any], out: Path) -> list[Download]:
        plan: list[Download] = []
        seqs: dict[str, int] = {}
        for kind in ("output", "deleted", "error"):
            for entry in manifest.get(kind) or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                    raise BulkClientError(f"The manifest's {kind} has an entry without a url: {entry!r}")
                if urllib.parse.urlsplit(entry["url"]).scheme.lower() not in ("http", "https"):
                    raise BulkClientError(f"The manifest's {kind} file URL {entry['url']!r} is not an http(s) URL; "
                                          "refusing to fetch it.")
                res_type = str(entry.get("type") or "Unknown")
                safe = "".join(ch for ch in res_type if ch.isascii() and ch.isalpha())[:64] or "Unknown"
                prefix = {"output": safe, "deleted": f"deleted-{safe}", "error": f"error-{safe}"}[kind]
                seqs[prefix] = seqs.get(prefix, 0) + 1
                plan.append(Download(kind, res_type, entry["url"], out / f"{prefix}-{seqs[prefix]}.ndjson",
                                     entry.get("count") if isinstance(entry.get("count"), int) else None))
        return plan

    def download_all(self, manifest: dict[str, Any], out: Path, parallel: int = 4) -> list[Download]:
        _writable(out)
        plan = self.plan_downloads(manifest, out)
        auth = bool(manifest.get("requiresAccessToken"))
        if auth:
            self._auth()  # one token for all threads
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(lambda d: self._download(d, auth), plan))
        return plan

    def _download(self, d: Download, auth: bool, attempts: int = 5) -> None:
        part = d.path.with_name(d.path.name + ".part")
        if d.path.exists() and not part.exists():
            self._summarise(d)  # finished by an earlier run
            self.observer.file_started(d.path.name, d.size, d.size)
            self.observer.file_done(d.path.name)
            return
        for attempt in range(attempts):
            have = part.stat().st_size if part.exists() else 0
            headers = {"Accept": "application/fhir+ndjson"}
            if have:
                headers["Range"] = f"bytes={have}-"
            if auth:
                headers.update(self._auth())
            req = urllib.request.Request(d.url, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    status = resp.status
                    length = resp.headers.get("content-length")
                    if status == 200:
                        have = 0  # the server sent the whole file
                    elif status != 206:
                        raise BulkClientError(f"Downloading {d.url} answered HTTP {status}.")
                    d.resumed_from = d.resumed_from or have
                    expected = int(length) if length and length.isdigit() else None
                    total = have + expected if expected is not None else None
                    self.observer.file_started(d.path.name, total, have)
                    got = 0
                    with open(part, "ab" if have else "wb") as fh:
                        while chunk := resp.read(CHUNK):
                            fh.write(chunk)
                            got += len(chunk)
                            self.observer.file_progress(d.path.name, len(chunk))
                    if expected is not None and got < expected:
                        # urllib ends a body cut short without an error; keep the .part to resume
                        raise ConnectionError(f"the connection closed after {got} of {expected} bytes")
                part.replace(d.path)
                self._summarise(d)
                if d.count is not None and d.lines != d.count:
                    raise BulkClientError(f"{d.path.name} has {d.lines} lines; the manifest says {d.count}.")
                self.observer.file_done(d.path.name)
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and auth and attempt + 1 < attempts:
                    self._auth(fresh=True)
                    continue
                if exc.code in (429, 503) and attempt + 1 < attempts:  # busy: wait as the server asks
                    self.sleep(_retry_after({k.lower(): v for k, v in exc.headers.items()}, min(2.0 ** attempt, 30.0)))
                    continue
                if exc.code == 416:  # already complete on disk
                    part.replace(d.path)
                    self._summarise(d)
                    self.observer.file_done(d.path.name)
                    return
                body = _Response(exc.code, {}, exc.read())
                raise BulkClientError(f"Downloading {d.url} failed (HTTP {exc.code}): {body.outcome()}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                if attempt + 1 >= attempts:
                    raise BulkClientError(f"Downloading {d.url} failed after {attempts} attempts: "
                                          f"{getattr(exc, 'reason', exc)}. Run the command again to resume.") from None
                self.sleep(min(2.0 ** attempt, 30.0))

    @staticmethod
    def _summarise(d: Download) -> None:
        sha = hashlib.sha256()
        lines = size = 0
        with open(d.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
                lines += chunk.count(b"\n")
                size += len(chunk)
        if size and not _ends_with_newline(d.path):
            lines += 1
        d.sha256, d.lines, d.size = sha.hexdigest(), lines, size

    # -- the whole run ----------------------------------------------------------------------

    def run(self, request: ExportRequest, out: Path, *, parallel: int = 4, fresh: bool = False) -> tuple[dict[str, Any], list[Download]]:
        """Kick off (or resume the export recorded in ``out``), poll, download; the manifest is
        saved as ``manifest.json`` next to the files."""
        _writable(out)
        state_path = out / STATE
        try:
            state = json.loads(state_path.read_text()) if state_path.exists() and not fresh else {}
        except (OSError, ValueError):
            state = {}  # damaged: start a new export (and overwrite it)
        if not isinstance(state, dict):
            state = {}
        url = request.url(self.base)
        if state.get("request") == url and state.get("status"):
            status_url = str(state["status"])
            self.observer.status(f"Resuming the export at {status_url}")
        else:
            status_url = self.kickoff(request)
            _write(state_path, json.dumps({"request": url, "status": status_url}))
            self.observer.status(f"Export accepted: {status_url}")
        manifest = self.poll(status_url)
        _write(out / "manifest.json", json.dumps(manifest, indent=2))
        files = self.download_all(manifest, out, parallel)
        return manifest, files


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BulkClientError(f"Cannot write to {out}: {exc.strerror or exc}. Choose another --out.") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise BulkClientError(f"Cannot write {path}: {exc.strerror or exc}. Choose another --out.") from None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"
