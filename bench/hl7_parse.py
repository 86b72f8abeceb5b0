"""Benchmark: ehrgate.hl7 parse + field access vs python-hl7, same messages, same run.

Each message is parsed from bytes (CR terminators, as MLLP delivers them) and MSH-9, MSH-10, PID-3
and PID-5 are read. For python-hl7 the fields are fetched by indexing its already-split segments
(its cheapest access), so the ratio is conservative. Messages: tests/hl7/samples plus, when
../shared/corpus/hl7v2 exists, every corpus message with a PID that both libraries parse.
Figures are the median of several runs; a section is appended to bench/RESULTS.md.

    .venv/bin/python bench/hl7_parse.py [--runs 7] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import hl7 as python_hl7

from ehrgate.hl7 import ParseError, parse, split_messages

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "hl7" / "samples"
CORPUS = (REPO / ".." / "shared" / "corpus" / "hl7v2").resolve()
SKIP_SUFFIXES = {".md", ".json", ".fhir", ".csv"}


def load_messages() -> tuple[list[bytes], str]:
    files = sorted(SAMPLES.glob("*.hl7"))
    source = "tests/hl7/samples"
    if CORPUS.is_dir():
        files += sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in SKIP_SUFFIXES)
        source += " + ../shared/corpus/hl7v2"
    out = []
    for path in files:
        for text in split_messages(path.read_bytes()):
            data = text.encode("utf-8")
            try:
                ours = parse(data)
                theirs = python_hl7.parse(data)
                theirs.segment("PID")[5], theirs.segment("MSH")[10]
            except (ParseError, KeyError, IndexError, Exception):  # noqa: B014 - python-hl7 raises assorted types
                continue
            if ours.segment("PID") is not None:
                out.append(data)
    return out, source


def ours(messages: list[bytes]) -> None:
    for data in messages:
        m = parse(data)
        m.get("MSH-9")
        m.get("MSH-10")
        m.get("PID-3")
        m.get("PID-5")


def theirs(messages: list[bytes]) -> None:
    for data in messages:
        m = python_hl7.parse(data)
        msh = m.segment("MSH")
        msh[9]
        msh[10]
        pid = m.segment("PID")
        pid[3]
        pid[5]


def rate(fn: object, messages: list[bytes], min_seconds: float) -> float:
    """Messages per second for one run of at least ``min_seconds``."""
    loops, elapsed = 0, 0.0
    started = time.perf_counter()
    while elapsed < min_seconds:
        fn(messages)  # type: ignore[operator]
        loops += 1
        elapsed = time.perf_counter() - started
    return loops * len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    messages, source = load_messages()
    mean_size = sum(map(len, messages)) / len(messages)
    # Warm up both (caches, allocator, CPU clock), then interleave the runs so that load from other
    # processes on a shared machine affects both parsers alike.
    rate(ours, messages, 2.0)
    rate(theirs, messages, 1.0)
    our_rates, their_rates = [], []
    for _ in range(args.runs):
        our_rates.append(rate(ours, messages, 1.0))
        their_rates.append(rate(theirs, messages, 1.0))
    ours_med, theirs_med = statistics.median(our_rates), statistics.median(their_rates)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip() or str(os.cpu_count())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    section = "\n".join([
        f"## hl7 parser: ehrgate.hl7 vs python-hl7 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- Command: `.venv/bin/python bench/hl7_parse.py --runs {args.runs}`",
        f"- Machine: nproc={nproc}, {cpu}, Python {platform.python_version()} ({sys.implementation.name}), "
        f"python-hl7 {getattr(python_hl7, '__version__', '?')}; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (the machine is shared)",
        f"- Workload: {len(messages)} messages from {source} (mean {mean_size:.0f} bytes), each parsed from bytes "
        "and MSH-9, MSH-10, PID-3, PID-5 read; single core; after a warm-up, median of "
        f"{args.runs} interleaved runs of at least 1 s each",
        "",
        "| parser | msgs/s (median) | min | max |",
        "|---|---:|---:|---:|",
        f"| ehrgate.hl7 (lazy) | {ours_med:,.0f} | {min(our_rates):,.0f} | {max(our_rates):,.0f} |",
        f"| python-hl7 | {theirs_med:,.0f} | {min(their_rates):,.0f} | {max(their_rates):,.0f} |",
        "",
        f"Ratio: ehrgate.hl7 is {ours_med / theirs_med:.0f}x python-hl7 on this workload.",
        "",
    ])
    print(section)
    if not args.no_write:
        results = Path(__file__).resolve().parent / "RESULTS.md"
        with results.open("a", encoding="utf-8") as out:  # append: other sections belong to others
            out.write(("\n" if results.stat().st_size else "") + section if results.exists() else section)


if __name__ == "__main__":
    main()
