"""Destinations ``http`` (a templated request) and ``fhir_http`` (a FHIR server's base URL).

Outcome by response: 2xx sent; 408, 429 and 5xx, timeouts and connection failures retried;
other 4xx errors at once (retrying cannot help). The response status and the first 64 KiB of
the body are kept as the delivery's response.

``fhir_http`` POSTs the message's transaction Bundle to the base URL with
``Content-Type: application/fhir+json``. A bearer token may be given (``token``, or ``token_file``
to keep it out of ehrgate.yaml), or obtained with SMART Backend Services (``auth``, see
``smart.py``): kept until it expires, renewed once when the server answers 401.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ..config import DestinationConfig, check_tls, known_options
from ..errors import ChannelConfigError
from ..queue import Delivered
from .base import Context, Destination, Payload, check_template, render, require, tls_context
from .smart import BackendToken, TokenError, check_auth

_RETRY_STATUS = {408, 425, 429}
TLS_KEYS = ("ca", "cert", "key", "verify")
"""``tls:`` of both: ``ca`` (verify the server with it), ``cert`` and ``key`` (our client certificate,
for servers that demand mutual TLS), ``verify: false`` (tests only)."""


def _outcome(resp: httpx.Response, request: bytes, started: float) -> Delivered:
    took = int((time.perf_counter() - started) * 1000)
    body = f"HTTP {resp.status_code}\n".encode() + resp.content[:65536]
    if 200 <= resp.status_code < 300:
        return Delivered(True, request=request, response=body, duration_ms=took)
    retry = resp.status_code >= 500 or resp.status_code in _RETRY_STATUS
    return Delivered(False, request=request, response=body, duration_ms=took, retry=retry,
                     error=f"HTTP {resp.status_code} from the destination")


class _HttpBase(Destination):
    def __init__(self, cfg: DestinationConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        # tls: {ca, cert, key, verify}: the same client context as the mllp destination's - ``ca``
        # verifies the server (system CAs when absent), ``cert``/``key`` present ours (mutual TLS).
        tls = cfg.options.get("tls")
        verify: Any = (tls_context(tls, server=False, base=ctx.base_dir, where=f"destinations.{cfg.name}.tls")
                       if isinstance(tls, Mapping) and tls else True)
        self.client = httpx.AsyncClient(timeout=cfg.timeout, verify=verify, follow_redirects=False)

    async def _send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Delivered:
        started = time.perf_counter()
        try:
            resp = await self.client.request(method, url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Delivered(False, request=body, error=f"No response from {url} within {self.cfg.timeout}s")
        except httpx.HTTPError as exc:
            return Delivered(False, request=body, error=f"Cannot reach {url}: {type(exc).__name__}")
        return _outcome(resp, body, started)

    async def close(self) -> None:
        await self.client.aclose()


class HttpDestination(_HttpBase):
    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        known_options(options, ("url", "method", "headers", "body", "content_type", "tls"), "the http destination")
        url = require(options, "url", str, "an http:// or https:// URL template")
        if not url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"option 'url' has value {url!r}. Expected an http:// or https:// URL.")
        method = options.get("method", "POST")
        if method not in ("POST", "PUT", "PATCH"):
            raise ChannelConfigError(f"option 'method' has value {method!r}. Expected POST, PUT or PATCH.")
        check_template(options.get("body", "{body}"), "body")
        headers = options.get("headers", {})
        if not isinstance(headers, Mapping):
            raise ChannelConfigError(f"option 'headers' has value {headers!r}. Expected a mapping of name to value.")
        check_tls(options.get("tls"), TLS_KEYS, "the http destination")

    async def deliver(self, payload: Payload) -> Delivered:
        o = self.cfg.options
        url = render(o["url"], payload, url=True)
        body = render(o.get("body", "{body}"), payload).encode("utf-8")
        headers = {"content-type": str(o.get("content_type", "application/hl7-v2; charset=utf-8"))}
        headers.update({str(k): render(str(v), payload) for k, v in (o.get("headers") or {}).items()})
        return await self._send(str(o.get("method", "POST")), url, body, headers)


class FhirHttpDestination(_HttpBase):
    def __init__(self, cfg: DestinationConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        auth = cfg.options.get("auth")
        self.backend = (BackendToken(auth, str(cfg.options["url"]), ctx.base_dir, self.client)
                        if isinstance(auth, Mapping) else None)

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        known_options(options, ("url", "token", "token_file", "auth", "tls"), "the fhir_http destination")
        url = require(options, "url", str, "the FHIR server's base URL (http:// or https://)")
        if not url.startswith(("http://", "https://")):
            raise ChannelConfigError(f"option 'url' has value {url!r}. Expected an http:// or https:// URL.")
        for key in ("token", "token_file"):
            if key in options and not isinstance(options[key], str):
                raise ChannelConfigError(f"option {key!r} must be text.")
        if "auth" in options:
            if "token" in options or "token_file" in options:
                raise ChannelConfigError("options 'auth' and 'token'/'token_file' are both set. Expected one way to "
                                         "authenticate: a fixed token, or SMART Backend Services (auth).")
            check_auth(options["auth"])
        check_tls(options.get("tls"), TLS_KEYS, "the fhir_http destination")

    @classmethod
    def files(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        auth = options.get("auth")
        key = {"auth.key": auth["key"]} if isinstance(auth, Mapping) and auth.get("key") is not None else {}
        token = {"token_file": options["token_file"]} if isinstance(options.get("token_file"), str) else {}
        return {**super().files(options), **key, **token}

    def _token(self) -> str | None:
        o = self.cfg.options
        if o.get("token"):
            return str(o["token"])
        if o.get("token_file"):
            p = Path(str(o["token_file"]))
            return (p if p.is_absolute() else self.ctx.base_dir / p).read_text().strip()
        return None

    async def deliver(self, payload: Payload) -> Delivered:
        if payload.bundle is None:
            return Delivered(True, response=b"No FHIR resources: the channel produced no Bundle.")
        url = str(self.cfg.options["url"]).rstrip("/")
        headers = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
        if self.backend is None:
            try:
                token = self._token()
            except OSError as exc:
                return Delivered(False, error=f"Token file cannot be read: {exc.strerror}")
            if token:
                headers["authorization"] = "Bearer " + token
            return await self._send("POST", url, payload.bundle, headers)
        for attempt in (1, 2):
            try:
                token = await self.backend.get()
            except TokenError as exc:
                return Delivered(False, request=payload.bundle, error=str(exc))
            headers["authorization"] = "Bearer " + token
            result = await self._send("POST", url, payload.bundle, headers)
            if attempt == 1 and result.response is not None and result.response.startswith(b"HTTP 401\n"):
                self.backend.forget(token)  # revoked or expired early: one more try with a new token
                continue
            return result
        return result
