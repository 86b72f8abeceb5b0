"""Shared fixtures: a real store on SQLite and on PostgreSQL (one contract suite, two engines).

PostgreSQL tests use ``EHRGATE_TEST_POSTGRES_URL`` (``.ci/run`` sets it when the server is up) or
``postgresql://postgres@127.0.0.1:5432/test``; each test gets its own schema, dropped afterwards.
When no PostgreSQL answers, those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ehrgate.app import MIGRATION_DIRS
from ehrgate.fhir.store.engine import create_engine, migrate, normalize_url
from ehrgate.fhir.store.service import Store
from ehrgate.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
PG_URL = os.environ.get("EHRGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

_pg_state: dict[str, Any] = {}


def postgres_available() -> str | None:
    """None if PostgreSQL is usable, else the reason it is not."""
    if "reason" not in _pg_state:
        try:
            eng = sa.create_engine(normalize_url(PG_URL), connect_args={"connect_timeout": 3})
            with eng.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            eng.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # noqa: BLE001
            _pg_state["reason"] = f"PostgreSQL at {PG_URL} is not reachable: {str(exc).splitlines()[0]}"
    return _pg_state["reason"]


def corpus_dir(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (a fresh clone has no ../shared corpus)")
    return path


def _pg_schema_url() -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    base = sa.make_url(normalize_url(PG_URL))
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    engine_name = getattr(request, "param", "sqlite")
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'ehrgate.sqlite3'}"
        return
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    url, schema = _pg_schema_url()
    admin = sa.create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


ENGINES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path / 'ehrgate.sqlite3'}"
        eng = create_engine(url)
        migrate(eng, MIGRATION_DIRS)
        yield Store(eng)
        eng.dispose()
        return
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    url, schema = _pg_schema_url()
    admin = sa.create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    eng = create_engine(url)
    try:
        migrate(eng, MIGRATION_DIRS)
        yield Store(eng)
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    return load_settings(
        None,
        # The FHIR suites run with the API open; tests/smart switch auth_required back on.
        overrides={"data_dir": str(tmp_path / "data"), "base_url": "http://testserver", "auth_required": False},
        environ={},
    )


@pytest.fixture
def client(store: Store, settings: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from ehrgate.app import create_app

    app = create_app(settings, store)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


BASE = "http://testserver/fhir"


@pytest.fixture
def live_server(store: Store, settings: Any) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread; yields the FHIR base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from ehrgate.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings.replace(base_url=base, port=port), store)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield base + "/fhir"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.state.fhir.audit.flush()  # lifespan is off here: what the app's shutdown would do
