"""I/O behind one interface (as httpx does): the client speaks to a ``Transport``; the default one
uses the standard library, tests can pass one that calls an ASGI app in-process."""

from __future__ import annotations

import json
import urllib.error
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
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the caller's URL
                return HttpResponse(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()})
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"Cannot reach {url}: {exc}.") from None
