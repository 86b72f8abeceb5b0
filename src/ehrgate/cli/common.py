"""Options every command shares (the same settings the server reads) and CLI errors.

Every ``ehrgate`` command module is imported for ``ehrgate --help``, so what a command needs beyond
click is imported inside the command when it runs (tests/cli/test_startup.py holds it to that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["CliError", "database_options", "server_options", "settings_from"]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure the user can fix; printed as one sentence, exit code 2."""

    exit_code = 2


def database_options(fn: F) -> F:
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="ehrgate.yaml with settings, apps and channels.")(fn)
    fn = click.option("--database-url", help="Database URL, e.g. postgresql://user@127.0.0.1/ehrgate (default: SQLite in --data-dir).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False), help="Directory for the SQLite database, keys and exports [./ehrgate-data].")(fn)
    return fn


def server_options(fn: F) -> F:
    fn = database_options(fn)
    fn = click.option("--port", type=int, help="HTTP port [8080]; 0 picks a free port.")(fn)
    fn = click.option("--host", help="Address to listen on [127.0.0.1].")(fn)
    return fn


def settings_from(**flags: Any) -> Settings:
    from ..settings import load_settings

    config_file = flags.pop("config_file", None)
    settings = load_settings(config_file, overrides=flags)
    configure_logging(str(settings.log_level))
    return settings


_LISTENER: list[Any] = []


def flush_logging() -> None:
    """Write every queued log line now. ``atexit`` does not run when a process ends by a re-raised
    SIGTERM (what uvicorn does after a graceful shutdown), so the lines of the shutdown itself were
    lost whenever the writer thread had not reached them yet."""
    for listener in _LISTENER:
        listener.stop()  # drains the queue and joins the writer thread
        listener.start()


def configure_logging(level: str) -> None:
    """Log lines go through a queue to a writer thread, so the event loop never waits on stderr
    (an access line per request cost ~40 µs when written inline)."""
    import atexit
    import queue
    from logging.handlers import QueueHandler, QueueListener

    root = logging.getLogger()
    if any(isinstance(h, QueueHandler) for h in root.handlers):
        return
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(q, stream, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    _LISTENER[:] = [listener]
    root.handlers[:] = [QueueHandler(q)]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
