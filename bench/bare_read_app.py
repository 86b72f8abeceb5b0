"""The baseline for bench/fhir_read.py: a bare Starlette endpoint that reads the same JSON from the
same database EHRGate serves, under the same uvicorn settings as ``ehrgate serve``.

``GET /fhir/{type}/{id}`` runs one statement on one connection opened at start-up, synchronously in
the event loop (sqlite3, or psycopg in autocommit with a prepared statement), and returns the stored
bytes as ``application/fhir+json``; 404 with an empty body when there is no such row. The statement
is the store's own keyed read (schema.py: ``resource`` by its unique (res_type, res_id), then
``resource_version`` by its unique (res_pk, version)) — the cheapest way to the current JSON of an
id, since ``resource_version`` has no index on the id alone. No headers beyond Content-Type, no
request id, no access log, no content negotiation: what is left is the framework and the database.

    python bench/bare_read_app.py --sqlite PATH [--port 0]
    python bench/bare_read_app.py --postgres URL [--port 0]

Prints ``bare read app is ready: http://127.0.0.1:PORT`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SQL = (
    "SELECT v.raw FROM resource r JOIN resource_version v ON v.res_pk = r.pk AND v.version = r.version "
    "WHERE r.res_type = ? AND r.res_id = ? AND NOT r.deleted"
)


def sqlite_reader(path: str) -> Any:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA cache_size=-65536")  # as the store's connections (engine.py)

    def read(res_type: str, res_id: str) -> bytes | None:
        row = conn.execute(SQL, (res_type, res_id)).fetchone()
        return row[0] if row else None

    return read


def postgres_reader(url: str) -> Any:
    import psycopg

    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    sql = SQL.replace("?", "%s")

    def read(res_type: str, res_id: str) -> bytes | None:
        row = conn.execute(sql, (res_type, res_id), prepare=True).fetchone()
        return bytes(row[0]) if row else None

    return read


def create_app(read: Any) -> Starlette:
    async def endpoint(request: Request) -> Response:
        raw = read(request.path_params["type"], request.path_params["id"])
        if raw is None:
            return Response(b"", 404)
        return Response(raw, 200, media_type="application/fhir+json")

    return Starlette(routes=[Route("/fhir/{type}/{id}", endpoint, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--sqlite")
    group.add_argument("--postgres")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = create_app(sqlite_reader(args.sqlite) if args.sqlite else postgres_reader(args.postgres))
    # The settings of ehrgate.cli.serve._run, so only the application differs.
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, access_log=False, log_level="info",
                            lifespan="off", server_header=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"bare read app is ready: http://127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
