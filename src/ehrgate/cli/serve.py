"""``ehrgate serve`` and ``ehrgate demo``."""

from __future__ import annotations

import errno
import gc
import inspect
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..gctuning import raise_gen0_threshold
from .common import CliError, flush_logging, server_options, settings_from

if TYPE_CHECKING:
    import socket

    from ..settings import Settings

__all__ = ["demo", "serve"]

log = logging.getLogger("ehrgate")


def _listen(settings: Settings) -> tuple[Settings, socket.socket | None]:
    """Bind the HTTP port now, before the database is opened or seeded: a port in use stops the
    command at once with a sentence (uvicorn found out after the start-up work and exited 3). With
    ``--port 0`` the port the system picked goes into the settings: the base URL (SMART issuer and
    ``aud``, CapabilityStatement, links, the demo app's redirect URI) must carry the real port."""
    sock = _bind(settings.host, settings.port)
    return (settings.replace(port=sock.getsockname()[1]) if settings.port == 0 else settings), sock


def _run(
    settings: Settings, store: Any, after_ready: Any = None, channels: dict[str, Any] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve HTTP and run the engine's channels on the same asyncio loop (uvicorn runs one loop:
    the engine starts before the HTTP server and stops after it). ``channels`` adds built-in ones;
    ``sock``: the listening socket from ``_listen``, if it bound one; ``after_ready(base, ports)``
    runs once the server listens (``ports``: channel name → its bound MLLP port)."""
    import asyncio

    import uvicorn

    from ..app import create_app
    from ..engine import ChannelConfigError, open_engine
    from ..engine.tracing import TracingError
    from ..smart.apps import AppError

    try:
        engine = open_engine(settings, store, extra=channels)
    except (ChannelConfigError, TracingError) as exc:
        raise CliError(exc.message) from None
    try:
        app = create_app(settings, store, engine)
    except AppError as exc:  # an app of the config file cannot be registered: say which and why
        raise CliError(f"{exc} Fix it in the config file ({settings.path or 'ehrgate.yaml'}).") from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level=str(settings.log_level).lower(),
        lifespan="off",
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    server = _server_class()(config)
    done: set[str] = set()

    async def stop_engine() -> None:
        if "engine" not in done:
            done.add("engine")
            await engine.stop()  # MLLP listeners close; what was received is committed already

    def stop_bulk() -> None:
        if "bulk" not in done:
            done.add("bulk")
            app.state.bulk.stop()  # running exports give their lease back and resume on the next start

    # After the last HTTP connection closed, in this order; also on SIGTERM/SIGINT (see _server_class).
    server.on_shutdown += [stop_engine, stop_bulk, app.state.fhir.audit.flush]

    async def main() -> None:
        try:
            await engine.start()
        except ChannelConfigError as exc:
            await stop_engine()
            raise CliError(exc.message) from None
        ports = {}
        for rt in engine.runtimes.values():
            if rt.port is not None:
                ports[rt.name] = rt.port
                click.echo(f"MLLP channel '{rt.name}' listening on {rt.cfg.source.options.get('host', '127.0.0.1')}:{rt.port}")
        try:
            await _serve(server, settings, (lambda base: after_ready(base, ports)) if after_ready else None, sock)
        finally:
            await stop_engine()

    app.state.bulk.start()  # Bulk Data $export worker threads (docs/bulk.md)
    try:
        asyncio.run(main())
    except OSError as exc:
        raise CliError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.") from None
    finally:
        stop_bulk()


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, so code after
        ``serve()`` may never run: what must happen at a clean stop runs in ``on_shutdown``, after
        the last connection closed."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.on_shutdown: list[Any] = []

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            for fn in self.on_shutdown:
                try:
                    result = fn()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # noqa: BLE001 - the next hook still runs; logged, no traceback
                    log.error("shutdown step %s failed: %s", getattr(fn, "__qualname__", fn), type(exc).__name__)
            flush_logging()  # the process may end by a re-raised SIGTERM next: no atexit

    return Server


def _bind(host: str, port: int = 0, *, flag: str = "--port", env: str = "EHRGATE_PORT", what: str = "") -> socket.socket:
    """A socket bound to ``host``:``port`` (0: a port the system picks), as uvicorn binds its own.
    A port in use names the flag to change and, for ``make demo`` (which takes no flags), the
    environment variable: the hint said "--port" to people who had typed no command line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = (f" Pick another {flag} (0: any free one; with make demo: {env}={port + 1 if 0 < port < 65535 else 0} make demo), "
                "or stop what uses it." if exc.errno == errno.EADDRINUSE else "")
        raise CliError(f"Cannot listen{what} on {host}:{port}: {exc.strerror}.{hint}") from None
    sock.set_inheritable(True)
    return sock


def _check_mllp_port(host: str, port: int) -> None:
    """Fail now, before the database is opened or the demo seeded, when the built-in channel's MLLP
    port is taken. Found later, by the engine, the start had already re-registered the sample app
    at this server's address (a second demo on the same data dir broke the first one's EHR launch)
    and the error told people to change a ``source.port`` that the built-in channel does not have."""
    if port:
        _bind(host, port, flag="--mllp-port", env="EHRGATE_MLLP_PORT", what=" for MLLP (channel 'mllp-in')").close()


async def _serve(server: Any, settings: Settings, after_ready: Any, sock: socket.socket | None = None) -> None:
    import asyncio

    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        # Everything alive now (modules, the app, caches) lives as long as the process: out of the
        # cyclic collector's way, so a full collection walks only what requests left behind
        # (measured under bearer reads: a full collection took ~60 ms with ~140k objects to walk).
        gc.freeze()
        raise_gen0_threshold()  # and fewer collections of what messages and requests leave (gctuning.py)
        base = settings.public_base  # the port is the bound one (see _run)
        click.echo(f"EHRGate is ready: FHIR base {base}/fhir", err=False)
        if settings.base_url:  # the public address hides where this process listens (a proxy in front)
            click.echo(f"Listening on {settings.host}:{settings.port}")
        if after_ready:
            after_ready(base)
    await task


def _open(settings: Settings, *, must_exist: bool = False) -> Any:
    """The store of ``settings``; ``must_exist`` (commands that only read or change what is there):
    a SQLite file that is not there is an error, not a new empty database - a mistyped --data-dir
    looked like an empty system, and left a database behind."""
    from ..database import open_store

    if must_exist and not settings.database_url and not settings.sqlite_path.exists():
        raise CliError(f"No database at {settings.sqlite_path}. Check --data-dir (or --database-url), or start "
                       "`ehrgate serve` or `ehrgate demo` there first.")
    url = settings.effective_database_url
    if not url.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+psycopg:")):
        raise CliError(f"The database URL {_safe_url(settings)} is not one EHRGate uses. Expected "
                       "postgresql://user@host/db, or no --database-url for SQLite in --data-dir.")
    try:
        return open_store(settings)
    except Exception as exc:  # noqa: BLE001 - shown as one sentence, never a traceback
        reason = re.sub(r"^\([\w.]+\) ", "", str(exc).splitlines()[0])  # no "(psycopg.OperationalError)"
        hint = (" Check that the PostgreSQL server runs and that --database-url (user, host, port, database) is right."
                if url.startswith("postgres") else " Check that --data-dir is a directory you can write to.")
        raise CliError(f"Cannot open the database {_safe_url(settings)}: {reason}.{hint}") from None


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.effective_database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparseable URL)"


_MLLP_PORT_HELP = "MLLP port of the built-in channel 'mllp-in' (MLLP → FHIR store) on --host; 0 picks a free port."


@click.command()
@server_options
@click.option("--mllp-port", type=int, help=_MLLP_PORT_HELP + " Without it, only the channels of --config run.")
def serve(**flags: Any) -> None:
    """Run the server on an existing (or new, empty) database."""
    from ..engine import DEMO_CHANNEL, demo_channel

    settings, sock = _listen(settings_from(**flags))
    if flags.get("mllp_port") is not None:
        _check_mllp_port(settings.host, settings.mllp_port)
    store = _open(settings)
    extra = {DEMO_CHANNEL: demo_channel(settings.host, settings.mllp_port)} if flags.get("mllp_port") is not None else None
    _run(settings, store, channels=extra, sock=sock)


@click.command()
@server_options
@click.option("--mllp-port", type=int, help=_MLLP_PORT_HELP + " [2575]")
def demo(**flags: Any) -> None:
    """Seed synthetic demo data into an empty database, then serve it (and an MLLP demo channel)."""
    from ..demo.sample_message import SAMPLE_MRN, write_sample
    from ..demo.seed import seed_demo
    from ..engine import DEMO_CHANNEL, demo_channel

    settings, sock = _listen(settings_from(**flags))
    _check_mllp_port(settings.host, settings.mllp_port)
    store = _open(settings)
    from ..demo.seed import is_empty
    from ..smart.demo import seed_smart_demo
    from ..smart.users import list_users

    with store.reader() as conn:
        has_users = bool(list_users(conn))
    if not has_users and not is_empty(store):
        # Not a demo database: its data came from elsewhere (ehrgate load, a feed, a client). The demo
        # would add users with a published password to it, and its patients are not the demo's.
        store.engine.dispose()
        raise CliError(f"The database {_safe_url(settings)} already holds data that ehrgate demo did not create, and "
                       "the demo would add users with the published password ehrgate-demo to it. Serve it with "
                       "`ehrgate serve` (add users with `ehrgate users add`), or run the demo on an empty "
                       "--data-dir.")
    summary = seed_demo(store, settings)
    if summary:
        click.echo(summary)
    click.echo(seed_smart_demo(store, settings, _command_name()))
    sample = write_sample(settings.data_dir)
    with store.reader() as conn:  # the demo patient user's record: a $everything line that pastes as it is
        patient = next((u.fhir_user for u in list_users(conn)
                        if u.role == "patient" and u.fhir_user.startswith("Patient/")), None)

    def tips(base: str, ports: dict[str, int]) -> None:
        import shlex

        exe = _command_name()
        # the CLI commands need this demo's data dir (and `ehrgate token` its address)
        data_flags = "" if settings.data_dir == "./ehrgate-data" else f" --data-dir {shlex.quote(str(settings.data_dir))}"
        token_flags = data_flags + ("" if base == "http://127.0.0.1:8080" else f" --fhir-base {base}/fhir")
        auth = '-H "Authorization: Bearer $TOKEN" '
        mllp = ports.get(DEMO_CHANNEL)
        everything = (f"  curl {auth}'{base}/fhir/{patient}/$everything'   # the record the user 'patient' signs in to"
                      if patient else f"  curl {auth}'{base}/fhir/Patient/<id>/$everything'")
        lines = [
            f"\nTry (the FHIR API needs an access token; `{exe} token` gets one as the demo backend service):",
            f"  curl {base}/fhir/metadata",
            f"  TOKEN=$({exe} token{token_flags})",
            f"  curl {auth}'{base}/fhir/Patient?name=nunez'",
            f"  curl {auth}'{base}/fhir/Observation?category=laboratory&_sort=-date&_count=5'",
            everything,
            f"  open {base}/ehr (sign in as doctor), pick a patient, launch the sample app; or start it at {base}/sample-app",
        ]
        if mllp is not None:
            lines += [
                f"HL7 v2 in (an ADT^A04 registering patient {SAMPLE_MRN}; the channel converts it into the FHIR store):",
                f"  {exe} hl7 send {shlex.quote(_shown_path(sample))} --to {settings.host}:{mllp} -v",
                f"  curl {auth}'{base}/fhir/Patient?identifier={SAMPLE_MRN}'",
                f"  {exe} messages search --channel {DEMO_CHANNEL}{data_flags}",
                f"  {exe} messages show ID{data_flags}   # ID: the first column of the search; every stage and delivery",
                f"  open {base}/console (sign in as admin): the channel, the message, every stage",
            ]
        lines.append("Stop with Ctrl+C; the data stays in the data directory.")
        click.echo("\n".join(lines))

    _run(settings, store, tips, channels={DEMO_CHANNEL: demo_channel(settings.host, settings.mllp_port)}, sock=sock)


def _command_name() -> str:
    """How the user's shell runs this ``ehrgate``: ``ehrgate`` when that is on PATH and is this
    program, else the path it was started by (``.venv/bin/ehrgate`` after ``make demo``, whose
    virtualenv is not activated), so the printed lines work when pasted."""
    started = Path(sys.argv[0])
    if started.name != "ehrgate" or not started.exists():
        return "ehrgate"
    found = shutil.which("ehrgate")
    if found and Path(found).resolve() == started.resolve():
        return "ehrgate"
    return _shown_path(started)


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    full = path.resolve()
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)
