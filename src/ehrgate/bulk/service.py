"""Wiring: the ``$export`` operations, the status and file routes, the worker, the capability.

``create_app`` builds one ``BulkExports`` per application; ``ehrgate serve`` starts its worker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.store.service import Store
from .jobs import Jobs
from .kickoff import kickoff
from .plan import INSTANTIATES, OPERATION_DEFINITIONS
from .status import delete_job, download, status
from .worker import Worker, WorkerConfig

__all__ = ["BulkExports", "bulk_routes"]


class BulkExports:
    """Bulk Data export for one application: registers ``$export`` in ``ctx.operations``."""

    OPERATION_DEFINITIONS = OPERATION_DEFINITIONS

    def __init__(self, settings: Any, store: Store, ctx: Any) -> None:
        self.store = store
        self.ctx = ctx
        self.public_base = ctx.base.removesuffix("/fhir")
        self.root = Path(settings.bulk_dir or Path(settings.data_dir) / "bulk").absolute()
        self.max_jobs = int(settings.bulk_max_jobs)
        self.retry_after = max(1, int(settings.bulk_retry_after))
        self.jobs = Jobs(store)
        self.worker = Worker(store, self.jobs, WorkerConfig(
            root=self.root,
            threads=int(settings.bulk_workers),
            file_lines=max(1, int(settings.bulk_file_lines)),
            lease_ms=max(5, int(settings.bulk_lease_seconds)) * 1000,
            ttl_ms=max(60, int(settings.bulk_file_ttl)) * 1000,
        ))
        for key, level in (("$export", "system"), ("Patient$export", "patient"), ("Group$export", "group")):
            ctx.operations[key] = partial(kickoff, bulk=self, level=level)

    def start(self) -> None:
        """Start the worker threads (``ehrgate serve`` does; tests call ``worker.run_once``)."""
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def capability(self, build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        """Wrap the CapabilityStatement builder: add ``instantiates`` bulk-data (the operations
        themselves are listed from the registry, OPERATION_DEFINITIONS)."""

        def with_bulk() -> dict[str, Any]:
            cap = build()
            if INSTANTIATES not in cap.get("instantiates", []):
                cap["instantiates"] = [*cap.get("instantiates", []), INSTANTIATES]
            return cap

        return with_bulk


def bulk_routes(bulk: BulkExports) -> list[Route]:
    """Status and file routes (outside ``/fhir``: they are not FHIR resources)."""

    async def get_status(request: Request) -> Response:
        return await status(request, bulk)

    async def cancel(request: Request) -> Response:
        return await delete_job(request, bulk)

    async def get_file(request: Request) -> Response:
        return await download(request, bulk)

    return [
        Route("/bulk/status/{job}", get_status, methods=["GET"]),
        Route("/bulk/status/{job}", cancel, methods=["DELETE"]),
        Route("/bulk/files/{job}/{name}", get_file, methods=["GET"]),
    ]
