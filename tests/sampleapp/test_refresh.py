"""Access tokens that expire: the sample app refreshes them by itself (short token lifetime)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.client.conftest import Browser

from .test_flows import _finish, _start_standalone, _text


@pytest.fixture
def settings(tmp_path: Any) -> Any:
    from ehrgate.settings import load_settings

    # tokens count as expired 30 s before their end: 20 s tokens are refreshed on every page view
    return load_settings(None, overrides={"data_dir": str(tmp_path / "data"), "auth_required": True,
                                          "access_token_lifetime": 20}, environ={})


def test_expired_access_is_renewed_automatically(registered: dict[str, Any], browser: Browser) -> None:
    summary = _finish(browser, browser.authorize(_start_standalone(browser), user="ada"))
    text = _text(summary.text)
    assert "The app's access had expired and was renewed automatically." in text and "Ada Nunez" in text
