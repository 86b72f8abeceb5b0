"""Destination ``file``: write each message to a directory (``filename`` template, default
``{channel}-{message_id}.hl7``). Written to a temporary name, fsynced, renamed and the directory
fsynced, so a reader never sees half a file and a file recorded SENT survives a power cut; the same message always gets the same name, so a redelivery overwrites, not doubles."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import known_options
from ..errors import ChannelConfigError
from ..queue import Delivered
from .base import Destination, Payload, check_template, render, require


class FileDestination(Destination):
    @classmethod
    def check(cls, options: Mapping[str, Any]) -> None:
        known_options(options, ("directory", "filename", "content"), "the file destination")
        require(options, "directory", str, "the directory to write into")
        check_template(options.get("filename", "{channel}-{message_id}.hl7"), "filename")
        if options.get("content", "body") not in ("body", "bundle"):
            raise ChannelConfigError(f"option 'content' has value {options.get('content')!r}. Expected body or bundle.")

    def _write(self, payload: Payload) -> Delivered:
        o = self.cfg.options
        directory = Path(str(o["directory"]))
        if not directory.is_absolute():
            directory = self.ctx.base_dir / directory
        name = render(str(o.get("filename", "{channel}-{message_id}.hl7")), payload).replace("/", "_")
        data = payload.bundle if o.get("content") == "bundle" else payload.body
        if data is None:
            return Delivered(True, response=b"No FHIR Bundle to write")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, directory / name)
            # the rename is durable once the directory is synced: without it a power cut right after
            # the delivery was recorded SENT could leave the file missing (only its .tmp written)
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return Delivered(False, error=f"Cannot write {directory / name}: {exc.strerror}")
        return Delivered(True, response=str(directory / name).encode())

    async def deliver(self, payload: Payload) -> Delivered:
        return await asyncio.to_thread(self._write, payload)
