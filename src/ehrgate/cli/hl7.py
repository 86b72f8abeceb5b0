"""``ehrgate hl7 send`` and ``ehrgate hl7 show``: talk MLLP to any listener, read messages as a tree."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import CliError

if TYPE_CHECKING:
    import ssl

    from ..hl7 import HL7Error, MLLPClient

__all__ = ["hl7"]


@click.group()
def hl7() -> None:
    """Send HL7 v2 messages over MLLP and read them."""


def _warn(name: str, problems: list[str], found: bool) -> None:
    """The reader's problems with FILE, one line each, except that segments before any MSH (every
    line of a file that is not HL7, such as a README) make one line, and none when no message was
    found at all: the caller says that."""
    stray = [p for p in problems if "comes before any MSH" in p]
    for problem in problems:
        if problem not in stray:
            click.echo(f"warning: {name}: {problem}", err=True)
    if stray and found:
        more = f"; so do {len(stray) - 1} more segment(s)" if len(stray) > 1 else ""
        click.echo(f"warning: {name}: {stray[0]}{more}", err=True)


def _file(name: str) -> tuple[list[str], str]:
    """The messages of file ``name`` as ER7 text (batches and multi-message files are split), and the
    codec the file was read with (its first MSH-18, hl7/charset.py); its problems are printed."""
    from ..hl7 import decode, read_batch

    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"File '{name}' cannot be read: {exc.strerror}.") from None
    text, codec = decode(data)
    batch = read_batch(text)
    _warn(name, batch.problems, bool(batch.messages))
    if not batch.messages:
        click.echo(f"warning: {name}: no HL7 message found (expected segments starting with MSH)", err=True)
    return batch.messages, codec or "utf-8"


def _read(files: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(file, number in file, ER7 text) of every message: batches and multi-message files are split."""
    return [(name, n, text) for name in files for n, text in enumerate(_file(name)[0], start=1)]


def _read_bytes(files: tuple[str, ...]) -> list[tuple[str, int, bytes]]:
    """(file, number in file, bytes) of every message, split as ``_read`` splits them, each encoded
    back to the file's character set: the bytes the directory source hands the engine for the same
    file (engine/channel.py), so Latin-1 stays Latin-1 (``channel test`` once fed UTF-8 under an
    MSH-18 of 8859/1, and the channel saw 'MÃ¼ller' for 'Müller')."""
    out: list[tuple[str, int, bytes]] = []
    for name in files:
        texts, codec = _file(name)
        out.extend((name, n, text.encode(codec)) for n, text in enumerate(texts, start=1))
    return out


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CliError(f"--to {value!r} is not host:port. Expected e.g. --to 127.0.0.1:2575.")
    if not 1 <= int(port) <= 65535:
        raise CliError(f"--to {value!r}: port {port} is out of range. Expected a port from 1 to 65535.")
    return host.strip("[]"), int(port)


def _tls(tls: bool, ca: str | None, cert: str | None, key: str | None, insecure: bool) -> ssl.SSLContext | None:
    """``--ca``, ``--cert`` and ``--insecure`` mean TLS (``--insecure`` alone once sent in plain
    text); ``--key`` is only the private half of ``--cert``."""
    import ssl

    if key and not cert:
        raise CliError(f"--key {key} needs --cert (the client certificate it belongs to) for mutual TLS.")
    if not (tls or ca or cert or insecure):
        return None
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        named = "; ".join(f"--{flag} {value}" for flag, value in (("ca", ca), ("cert", cert), ("key", key)) if value)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"TLS files cannot be loaded ({named or 'the system CAs'}): {reason}. Expected readable "
                       "PEM files: --ca the listener's CA, --cert and --key ours for mutual TLS.") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connect_error(host: str, port: int, exc: OSError | HL7Error, tls: bool) -> CliError:
    """One sentence. A plain-text listener answers a TLS hello by closing the connection, which
    arrives as a ConnectionResetError with no text at all, hence the type name and the TLS hint."""
    import socket
    import ssl

    from ..hl7 import HL7Error

    if isinstance(exc, HL7Error):
        detail = exc.message
    else:
        detail = exc.strerror or str(exc) or type(exc).__name__
    unrelated = (ConnectionRefusedError, ssl.SSLCertVerificationError, socket.gaierror)
    end = "; is the listener using TLS?" if tls and not isinstance(exc, unrelated) else "."
    return CliError(f"Cannot connect to {host}:{port}: {detail}{end}")


@hl7.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--to", "to", required=True, help="Listener as host:port, e.g. 127.0.0.1:2575.")
@click.option("--tls", is_flag=True, help="Use TLS (implied by --ca, --cert and --insecure).")
@click.option("--ca", type=click.Path(dir_okay=False), help="CA file to verify the listener (TLS).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Client certificate for mutual TLS.")
@click.option("--key", type=click.Path(dir_okay=False), help="Client key for mutual TLS (with --cert).")
@click.option("--insecure", is_flag=True, help="TLS without verifying the listener (tests only).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for each ACK.")
@click.option("-v", "--verbose", is_flag=True, help="Print the ACK code and control ID of every message (default: problems only).")
def send(files: tuple[str, ...], to: str, tls: bool, ca: str | None, cert: str | None, key: str | None,
         insecure: bool, timeout: float, verbose: bool) -> None:
    """Send every message of FILES (split batches and multi-message files) on one connection; print ACK codes.

    Exit status 0 when every message got AA or CA, 1 otherwise.
    """
    import asyncio

    from ..hl7 import HL7Error, MLLPClient, parse

    host, port = _address(to)
    context = _tls(tls, ca, cert, key, insecure)
    items = _read(files)
    if not items:
        raise CliError("No message to send.")
    codes: Counter[str] = Counter()
    lines: list[str] = []

    async def connect() -> MLLPClient:
        try:
            return await MLLPClient.connect(host, port, ssl=context, timeout=timeout,
                                            server_hostname=host if context else None)
        except (OSError, HL7Error) as exc:
            raise _connect_error(host, port, exc, context is not None) from None

    async def go(bar: Any) -> None:
        client: MLLPClient | None = await connect()
        try:
            for name, n, text in items:
                try:
                    if client is None:
                        client = await connect()
                    answer = parse(await client.send(text))
                    code = answer.get("MSA-1") or "?"
                    acked = answer.get("MSA-2")  # the control ID to find it by: messages search --control-id
                    why = answer.get("ERR-8") or answer.get("MSA-3") or answer.get("ERR-1.4.2")
                except HL7Error as exc:  # timeout or closed connection: reconnect for the next one
                    code, why, acked = "NO-ACK", exc.message, None
                    if client is not None:
                        await client.close()
                    client = None
                codes[code] += 1
                if verbose or code not in ("AA", "CA"):
                    lines.append(f"{name}#{n} {code}" + (f" {why}" if why else "")
                                 + (f" (control ID {acked})" if acked else ""))
                bar.update(1)
        finally:
            if client is not None:
                await client.close()

    with click.progressbar(length=len(items), label=f"Sending to {host}:{port}", file=sys.stderr) as bar:
        asyncio.run(go(bar))
    for line in lines:
        click.echo(line)
    click.echo(f"{len(items)} message(s) sent to {host}:{port}, ACK codes: "
               + ", ".join(f"{code} {count}" for code, count in sorted(codes.items())))
    if set(codes) - {"AA", "CA"}:
        sys.exit(1)


@hl7.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def show(files: tuple[str, ...]) -> None:
    """Print each message of FILES as a tree: segment, field names, values (labels are terse paths).

    Exit status 1 when a message cannot be parsed or a file holds no HL7 message (as convert).
    """
    from ..hl7 import HL7Error, format_tree, parse

    bad = 0
    items = _read(files)
    bad += len(set(files) - {name for name, _, _ in items})  # _read warned about each
    for name, n, text in items:
        click.echo(f"== {name} message {n}")
        try:
            click.echo(format_tree(parse(text)), nl=False)
        except HL7Error as exc:
            bad += 1
            click.echo(f"cannot be parsed: {exc.message}")
    if bad:
        sys.exit(1)
