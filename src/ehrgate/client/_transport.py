"""I/O behind one interface (as httpx does): the client speaks to a ``Transport``; the default one
uses the standard library, tests can pass one that calls an ASGI app in-process."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errors import TransportError

__all__ = ["HttpResponse", "Transport", "UrllibTransport"]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise TransportError(f"Expected JSON, got {self.body[:80]!r} (HTTP {self.status}).") from None


class Transport(Protocol):
    def request(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None = None) -> HttpResponse: ...


class UrllibTransport:
    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def request(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None = None) -> HttpResponse:
        # urllib also opens file: and ftp: URLs; a client of HTTP APIs must not (a discovery
        # document naming file:///… would have it read a local file)
        try:
            scheme = urllib.parse.urlsplit(url).scheme.lower()
        except ValueError as exc:  # "Invalid IPv6 URL"
            raise TransportError(f"{url!r} is not a valid URL ({exc}).") from None
        if scheme not in ("http", "https"):
            raise TransportError(f"{url!r} is not an http(s) URL (expected e.g. http://127.0.0.1:8080/fhir).")
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only, checked above
                return HttpResponse(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()})
        except (http.client.InvalidURL, ValueError) as exc:  # a port that is not a number, a space in the path
            raise TransportError(f"{url!r} is not a valid URL ({exc}).") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise TransportError(f"Cannot reach {url}: {reason or type(reason).__name__}.") from None
