"""``ehrgate serve`` and ``ehrgate demo``."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..settings import Settings
from .common import CliError, server_options, settings_from

__all__ = ["demo", "serve"]


def _run(settings: Settings, store: Any, after_ready: Any = None, channels: dict[str, Any] | None = None) -> None:
    """Serve HTTP and run the engine's channels on the same asyncio loop (uvicorn runs one loop:
    the engine starts before the HTTP server and stops after it). ``channels`` adds built-in ones."""
    import uvicorn

    from ..app import create_app
    from ..engine import ChannelConfigError, open_engine

    try:
        engine = open_engine(settings, store, extra=channels)
    except ChannelConfigError as exc:
        raise CliError(exc.message) from None
    app = create_app(settings, store, engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level=str(settings.log_level).lower(),
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        try:
            await engine.start()
        except ChannelConfigError as exc:
            await engine.stop()
            raise CliError(exc.message) from None
        for rt in engine.runtimes.values():
            if rt.port is not None:
                click.echo(f"MLLP channel '{rt.name}' listening on {rt.cfg.source.options.get('host', '127.0.0.1')}:{rt.port}")
        try:
            await _serve(server, settings, after_ready)
        finally:
            await engine.stop()

    app.state.bulk.start()  # Bulk Data $export worker threads (docs/bulk.md)
    try:
        asyncio.run(main())
    except OSError as exc:
        raise CliError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.") from None
    finally:
        app.state.bulk.stop()  # running exports give their lease back and resume on the next start


async def _serve(server: Any, settings: Settings, after_ready: Any) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = settings.port
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                break
        url = f"http://{settings.host}:{port}"
        base = settings.public_base if settings.base_url else url
        click.echo(f"EHRGate is ready: FHIR base {base}/fhir", err=False)
        if after_ready:
            after_ready(base)
    await task


def _open(settings: Settings) -> Any:
    from ..app import open_store

    try:
        return open_store(settings)
    except Exception as exc:  # noqa: BLE001 - shown as one sentence, never a traceback
        raise CliError(f"Cannot open the database {_safe_url(settings)}: {str(exc).splitlines()[0]}") from None


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

    settings = settings_from(**flags)
    store = _open(settings)
    extra = {DEMO_CHANNEL: demo_channel(settings.host, settings.mllp_port)} if flags.get("mllp_port") is not None else None
    _run(settings, store, channels=extra)


@click.command()
@server_options
@click.option("--mllp-port", type=int, help=_MLLP_PORT_HELP + " [2575]")
def demo(**flags: Any) -> None:
    """Seed synthetic demo data into an empty database, then serve it (and an MLLP demo channel)."""
    from ..demo.seed import seed_demo
    from ..engine import DEMO_CHANNEL, demo_channel

    settings = settings_from(**flags)
    store = _open(settings)
    from ..smart.demo import seed_smart_demo

    summary = seed_demo(store, settings)
    if summary:
        click.echo(summary)
    click.echo(seed_smart_demo(store, settings))

    def tips(base: str) -> None:
        import shlex

        # `ehrgate token` (backend services, the demo key) needs this demo's data dir and address
        token_flags = "" if settings.data_dir == "./ehrgate-data" else f" --data-dir {shlex.quote(str(settings.data_dir))}"
        token_flags += "" if base == "http://127.0.0.1:8080" else f" --fhir-base {base}/fhir"
        auth = '-H "Authorization: Bearer $TOKEN" '
        click.echo(
            "\nTry (the FHIR API needs an access token; `ehrgate token` gets one as the demo backend service):\n"
            f"  curl {base}/fhir/metadata\n"
            f"  TOKEN=$(ehrgate token{token_flags})\n"
            f"  curl {auth}'{base}/fhir/Patient?name=nunez'\n"
            f"  curl {auth}'{base}/fhir/Observation?category=laboratory&_sort=-date&_count=5'\n"
            f"  curl {auth}'{base}/fhir/Patient/<id>/$everything'\n"
            f"  open {base}/ehr (sign in as doctor), pick a patient, launch the sample app; or start it at {base}/sample-app\n"
            f"  ehrgate hl7 send sample.hl7 --to {settings.host}:<the MLLP port above>\n"
            "  ehrgate messages search --channel mllp-in\n"
            "Stop with Ctrl+C; the data stays in the data directory."
        )

    _run(settings, store, tips, channels={DEMO_CHANNEL: demo_channel(settings.host, settings.mllp_port)})
