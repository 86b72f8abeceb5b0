"""A small closed-loop HTTP/1.1 load generator, used by the benchmarks only when wrk is not installed.

Same contract as the wrk script in harness.py: ``--connections`` keep-alive connections cycle through
the request list in a JSON spec file for ``--duration`` seconds, then one ``WRKJSON {...}`` summary
line is printed (requests, duration, errors = non-2xx/3xx or failed, latency percentiles in µs).
It is plain asyncio streams with pre-encoded requests so that the client costs little CPU; wrk is
still preferred (``apt-get install wrk``).

    python bench/loadgen.py SPEC.json --duration 10 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def encode(spec: dict[str, Any], host: str) -> list[bytes]:
    out = []
    for r in spec["requests"]:
        body = (r["body"] or "").encode() if r["body"] is not None else b""
        head = f"{r['method']} {r['path']} HTTP/1.1\r\nHost: {host}\r\nAccept: application/fhir+json\r\n"
        if r["body"] is not None:
            head += f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n"
        out.append(head.encode() + b"\r\n" + body)
    return out


async def worker(host: str, port: int, reqs: list[bytes], start: int, stop_at: float,
                 latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    try:
        while time.perf_counter() < stop_at:
            data = reqs[i % len(reqs)]
            i += 1
            t0 = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not 200 <= status < 400:
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError):
        errors[0] += 1
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.spec).read_text())
    origin = urlsplit(spec["origin"])
    host, port = origin.hostname or "127.0.0.1", origin.port or 80
    reqs = encode(spec, f"{host}:{port}")
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    stop_at = started + args.duration
    step = max(1, len(reqs) // args.connections)
    await asyncio.gather(*[worker(host, port, reqs, c * step, stop_at, latencies, errors)
                           for c in range(args.connections)])
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6) if latencies else 0

    print("WRKJSON " + json.dumps({"requests": len(latencies), "duration_us": int(elapsed * 1e6), "errors": errors[0],
                                   "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
