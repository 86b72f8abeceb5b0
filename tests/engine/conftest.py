"""Engine fixtures: a MessageStore on the same database as the ``store`` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from ehrgate.engine import MessageStore, open_messages
from ehrgate.fhir.store.service import Store

T = TypeVar("T")


def hl7(control_id: str, *, patient: str = "P1", name: str = "Everywoman^Eve", kind: str = "ADT^A01",
        sender: str = "LAB", facility: str = "FAC", extra: str = "") -> bytes:
    """A small ADT message (UTF-8) with the given control id and patient."""
    return (f"MSH|^~\\&|{sender}|{facility}|EHRGATE|HUB|20240401120000||{kind}|{control_id}|P|2.5.1||||||UNICODE UTF-8\r"
            f"EVN|A01|20240401120000\r"
            f"PID|1||{patient}^^^FAC^MR||{name}||19800101|F\r{extra}").encode()


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one async test body with a hard upper bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def messages(store: Store) -> Iterator[MessageStore]:
    ms = open_messages(store)
    try:
        yield ms
    finally:
        ms.close()


from tests.hl7.conftest import Certificates, certificates  # noqa: E402,F401 - the TLS fixture, shared
