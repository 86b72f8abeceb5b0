"""Benchmark: HL7 v2 → FHIR conversion alone (``ehrgate.convert``), messages per second on one core.

Each message is parsed from bytes (as MLLP delivers it) and converted into its transaction Bundle;
the "+ JSON" column also serialises the Bundle with ``ehrgate.fhir.jsonio.dumps`` (what the engine
hands to the FHIR store destination). Workloads: the project's own ADT and ORU samples
(tests/convert/samples) and, when ../shared/corpus/hl7v2 exists, every ADT and ORU message of the
corpus that converts; the mix alternates ADT and ORU messages one for one. The process is pinned to
one CPU; figures are the median of interleaved runs after a warm-up. A section is appended to
bench/RESULTS.md.

    .venv/bin/python bench/convert_speed.py [--runs 5] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import chain, zip_longest
from pathlib import Path

from ehrgate.convert import ConversionError, ConversionOptions, convert
from ehrgate.fhir.jsonio import dumps
from ehrgate.hl7 import HL7Error, parse, split_messages

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "convert" / "samples"
CORPUS = (REPO / ".." / "shared" / "corpus" / "hl7v2").resolve()
SKIP_SUFFIXES = {".md", ".json", ".fhir", ".csv", ".tsv"}
OPTIONS = ConversionOptions(channel="bench", message_ref="bench")


def load(kind: str) -> list[bytes]:
    """Every message of ``kind`` (ADT or ORU) in the samples and the corpus that converts."""
    files = sorted(SAMPLES.glob("*.hl7"))
    if CORPUS.is_dir():
        files += sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in SKIP_SUFFIXES)
    out = []
    for path in files:
        for text in split_messages(path.read_bytes()):
            data = text.encode("utf-8")
            try:
                message = parse(data)
                if message.message_type != kind:
                    continue
                convert(message, OPTIONS)
            except (HL7Error, ConversionError):
                continue
            out.append(data)
    return out


def run_convert(messages: list[bytes]) -> None:
    for data in messages:
        convert(parse(data), OPTIONS)


def run_convert_json(messages: list[bytes]) -> None:
    for data in messages:
        dumps(convert(parse(data), OPTIONS).bundle)


def rate(fn: Callable[[list[bytes]], None], messages: list[bytes], min_seconds: float) -> tuple[float, float]:
    """(messages per wall-clock second, messages per CPU-second of this process) for one run.

    On a shared machine the wall-clock figure depends on what else runs; the CPU-second figure is
    what one core delivers, which is the figure the issue asks for."""
    loops, elapsed = 0, 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    while elapsed < min_seconds:
        fn(messages)
        loops += 1
        elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return loops * len(messages) / elapsed, loops * len(messages) / max(cpu, 1e-9)


def machine() -> str:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() or str(os.cpu_count())
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return f"nproc={nproc}, {cpu or platform.processor()}, Python {platform.python_version()} ({sys.implementation.name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    facts = machine()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    load_before = os.getloadavg()[0]
    adt, oru = load("ADT"), load("ORU")
    mix = [m for m in chain.from_iterable(zip_longest(adt, oru)) if m is not None]
    workloads = {"ADT": adt, "ORU": oru, "ADT/ORU mix": mix}
    for messages in workloads.values():  # warm-up: caches, allocator, CPU clock
        rate(run_convert, messages, 1.0)
    rows = []
    for name, messages in workloads.items():
        plain, with_json = [], []
        for _ in range(args.runs):
            plain.append(rate(run_convert, messages, 1.0))
            with_json.append(rate(run_convert_json, messages, 1.0))
        size = sum(map(len, messages)) / len(messages)
        per_cpu = [c for _w, c in plain]
        rows.append(f"| {name} | {len(messages)} | {size:,.0f} | {statistics.median(per_cpu):,.0f} | "
                    f"{min(per_cpu):,.0f}–{max(per_cpu):,.0f} | {statistics.median(c for _w, c in with_json):,.0f} | "
                    f"{statistics.median(w for w, _c in plain):,.0f} |")
    source = "tests/convert/samples" + (" + ../shared/corpus/hl7v2" if CORPUS.is_dir() else "")
    section = "\n".join([
        f"## convert_speed: HL7 v2 → FHIR conversion alone, one core ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- Command: `.venv/bin/python bench/convert_speed.py --runs {args.runs}`",
        f"- Machine: {facts}; process pinned to one CPU; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (the machine is shared)",
        f"- Workload: every ADT and ORU message of {source} that converts; each parsed from bytes and "
        "converted to its transaction Bundle (\"+ JSON\": and serialised); median of "
        f"{args.runs} interleaved runs of at least 1 s after a warm-up",
        "",
        "| messages | count | mean bytes | msgs per CPU-s (median) | min–max | + JSON, per CPU-s | msgs/s wall |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    print(section)
    if not args.no_write:
        results = REPO / "bench" / "RESULTS.md"
        with results.open("a", encoding="utf-8") as out:  # append: other sections belong to others
            out.write(("\n" if results.exists() and results.stat().st_size else "") + section)


if __name__ == "__main__":
    main()
