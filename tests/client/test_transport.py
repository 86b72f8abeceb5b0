"""``UrllibTransport``: every failure to reach a URL is a TransportError, including URLs urllib
itself refuses (``unknown url type``) and schemes an HTTP client must not open."""

from __future__ import annotations

import pytest

from ehrgate.client import TransportError, UrllibTransport


@pytest.mark.parametrize(("url", "says"), [
    ("notaurl", "is not an http(s) URL"),
    ("file:///etc/hostname", "is not an http(s) URL"),
    ("ftp://example.org/x", "is not an http(s) URL"),
    ("http://[::1/x", "is not a valid URL"),
    ("http://127.0.0.1:abc/x", "is not a valid URL"),
    ("http://127.0.0.1:9/x", "Cannot reach http://127.0.0.1:9/x"),
])
def test_unusable_urls_are_transport_errors(url: str, says: str) -> None:
    with pytest.raises(TransportError, match=says.replace("(", r"\(").replace(")", r"\)")):
        UrllibTransport(timeout=5).request("GET", url, headers={})
