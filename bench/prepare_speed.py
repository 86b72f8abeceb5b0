"""Micro-benchmark: the CPU one resource costs on its way into the store, split by step.

    .venv/bin/python bench/prepare_speed.py                           # this tree vs the last commit
    .venv/bin/python bench/prepare_speed.py --against 8e93db1         # vs another commit
    .venv/bin/python bench/prepare_speed.py --baseline /tmp/base/src  # vs a src/ directory
    .venv/bin/python bench/prepare_speed.py --runs 9 --bundles 0      # every Synthea bundle

The steps are the store's pure half of a write, the functions ``ehrgate load`` (``loadprep.py``) and
the transaction path (``bundles.py`` -> ``WriteSession``) both call:

- validate: ``prepare.check_resource`` with the store's validator (``fhir/validation``);
- extract: ``search.extract.extract_index`` (index rows and patient compartments);
- rows: ``PreparedBatch.add`` given the extraction already made and a validator that finds nothing,
  i.e. the index rows as flat SQL tuples (clipped to their columns) and the body's JSON;
- total: ``PreparedBatch.add`` with both real steps; for Synthea, ``Preparer.transaction`` over each
  whole bundle, as ``ehrgate load`` runs it (so it also holds the ``urn:uuid:`` reference rewrite).

Inputs: the Synthea R4 transaction bundles (../shared/corpus/fhir/synthea-r4; skipped when absent),
their references rewritten to server ids as the load does; and the resources our HL7 v2 converter
makes of the project's sample messages (tests/convert/samples/*.hl7), planned as the transaction
path runs them: ``urn:uuid:`` and conditional references resolved to ids, and a conditional create
(a Practitioner, a Location) written the first time its criteria occur only; and ("hl7-e2e") those it
makes of the message stream bench/convert_e2e.py sends (ADT^A01 and ORU^R01 one for one, a fresh
patient, visit and orders each), where practitioners, locations and codes recur as in a live feed.
The messages are converted once, by this tree, so a baseline measures the very same resources.

Each pass runs one step over one input's resources, after clearing the caches those steps keep
(``lru_cache``s, the validator's memo of valid values): each pass starts cold and warms over its
input as a loader worker does; ``--warm`` keeps them (a long-running server). A run keeps the least
of its ``--passes`` passes (the one least disturbed by other work on the machine); the figure
printed is the median of ``--runs`` runs, in microseconds of CPU time (``time.process_time``) per
resource. This tree and the baseline (``src/`` of commit ``--against``, HEAD unless given, taken
with ``git archive``; or the ``--baseline`` directory) each run in a child process, measured in turn
step by step, and the ratio baseline / this tree is printed (> 1: this tree is faster), of the
medians and of the least runs: on a shared machine CPU time per pass varies by half as other work
comes and goes, and the least runs are the steadier comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
SYNTHEA = (REPO / ".." / "shared" / "corpus" / "fhir" / "synthea-r4").resolve()
SAMPLES = REPO / "tests" / "convert" / "samples"
STEPS = ("validate", "extract", "rows", "total")
_CONDITIONAL = re.compile(rb'"reference":"([A-Z][A-Za-z]+\?[^"\\]*)"')


# -- inputs ------------------------------------------------------------------------------------


def _ids(seed: str, count: int) -> list[str]:
    """Deterministic server ids, so every run and both trees see the same resources (made up front:
    the timed steps should not pay for them)."""
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{i}")) for i in range(count)]


def synthea_bundles(limit: int) -> list[dict[str, Any]]:
    if not SYNTHEA.is_dir():
        return []
    paths = sorted(SYNTHEA.glob("*.json"))
    if limit:
        # Patients in name order, plus the organisations and practitioners they refer to.
        shared = [p for p in paths if not p.name[:1].isupper() or "Information" in p.name]
        paths = [p for p in paths if p not in shared][:limit] + shared
    return [orjson.loads(p.read_bytes()) for p in paths]


def _matched_id(criteria: str) -> str:
    """The id the store finds for ``Type?criteria``: the same one every time the criteria recur."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, criteria))


def planned(bundle: dict[str, Any], new_id: Callable[[], str],
            created: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(method, resource with its id, id)`` for each POST/PUT entry the store would write, its
    references rewritten to ids as the store does (``urn:uuid:`` fullUrls and ``Type?criteria``
    conditional references alike). A conditional create (``ifNoneExist``) gets the id its criteria
    match and is written the first time only: ``created`` holds the criteria met before (in this
    bundle or an earlier one)."""
    from ehrgate.fhir.bundles import rewrite_references

    created = set() if created is None else created
    entries = [e for e in bundle.get("entry") or () if isinstance(e.get("resource"), dict)
               and e.get("request", {}).get("method", "").upper() in ("POST", "PUT")]
    mapping: dict[str, str] = {}
    plan = []
    for entry in entries:
        request = entry["request"]
        url = request["url"].split("?", 1)[0]
        res_type = entry["resource"]["resourceType"]
        write = True
        if "/" in url:
            res_id = url.split("/", 1)[1]
        elif request.get("ifNoneExist"):
            criteria = f"{res_type}?{request['ifNoneExist']}"
            res_id = _matched_id(criteria)
            write = criteria not in created
            created.add(criteria)
        else:
            res_id = new_id()
        if entry.get("fullUrl"):
            mapping[entry["fullUrl"]] = f"{res_type}/{res_id}"
        for match in _CONDITIONAL.finditer(orjson.dumps(entry["resource"], default=str)):
            criteria = match.group(1).decode()
            mapping.setdefault(criteria, f"{criteria.split('?', 1)[0]}/{_matched_id(criteria)}")
        if write:
            plan.append((entry, res_id))
    for entry, res_id in plan:
        resource = rewrite_references(entry["resource"], mapping)
        yield entry["request"]["method"].upper(), {**resource, "id": res_id}, res_id


def hl7_bundles(stream: bool = False) -> list[dict[str, Any]]:
    """The converter's Bundles for every sample message once, or (``stream``) for the message
    stream of bench/convert_e2e.py: 40 ADT^A01 / ORU^R01 messages, fresh patients and orders."""
    from ehrgate.convert import ConversionError, ConversionOptions, convert
    from ehrgate.hl7 import HL7Error, parse, split_messages

    options = ConversionOptions(channel="bench", message_ref="bench")
    if stream:
        from convert_e2e import messages  # this directory

        return [convert(parse(raw), options).bundle for raw in messages("p", 40)]
    out = []
    for path in sorted(SAMPLES.glob("*.hl7")):
        for text in split_messages(path.read_bytes()):
            try:
                out.append(convert(parse(text.encode("utf-8")), options).bundle)
            except (HL7Error, ConversionError):
                continue  # the samples of bad input
    return out


# -- measuring ---------------------------------------------------------------------------------


def clear_caches() -> None:
    """Forget every value the prepare steps cache, so a pass starts as a fresh worker does."""
    prefixes = ("ehrgate.fhir.search", "ehrgate.fhir.validation", "ehrgate.fhir.store")
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefixes):
            continue
        for obj in list(vars(module).values()):
            clear = getattr(obj, "cache_clear", None)
            if callable(clear) and not isinstance(obj, type):
                clear()
    from ehrgate.fhir.validation import definitions

    if hasattr(definitions, "clear_memos"):
        definitions.clear_memos()
    else:  # an older tree: the primitive memos only
        for memo in definitions.MEMOS.values():
            memo.values.clear()


class Workload:
    """One input, planned, with a function per step that makes one pass over all of it."""

    def __init__(self, name: str, bundles: list[dict[str, Any]]) -> None:
        from ehrgate.fhir.loadprep import Preparer
        from ehrgate.fhir.search.extract import extract_index
        from ehrgate.fhir.store.prepare import PreparedBatch, check_resource
        from ehrgate.fhir.validation import known_resource_types, validate

        ids = [_ids(f"{name}/{i}", len(b.get("entry") or ())) for i, b in enumerate(bundles)]
        created: set[str] = set()
        items = [p for b, fresh in zip(bundles, ids, strict=True) for p in planned(b, iter(fresh).__next__, created)]
        found = [extract_index(r) for _m, r, _i in items]
        self.resources = len(items)
        self.index_rows = sum(_count(rows) for rows in found) / max(1, len(items))

        def run_validate() -> None:
            for _method, resource, _rid in items:
                check_resource(resource["resourceType"], resource, validate)

        def run_extract() -> None:
            for _method, resource, _rid in items:
                extract_index(resource)

        def run_rows() -> None:
            batch = PreparedBatch()
            for (method, resource, rid), rows in zip(items, found, strict=True):
                batch.add(method, resource, rid, _no_issues, lambda _r, rows=rows: rows)

        def run_total() -> None:
            batch = PreparedBatch()
            for method, resource, rid in items:
                batch.add(method, resource, rid, validate, extract_index)

        if name == "synthea":  # the whole of what a load worker does with a transaction bundle
            preparer = Preparer(known_resource_types())

            def run_total() -> None:  # noqa: F811
                for bundle, fresh in zip(bundles, ids, strict=True):
                    preparer.new_id = iter(fresh).__next__
                    preparer.transaction(bundle)

        self.steps: dict[str, Callable[[], None]] = {
            "validate": run_validate, "extract": run_extract, "rows": run_rows, "total": run_total,
        }

    def cpu_us(self, step: str, passes: int, warm: bool) -> float:
        """The least, over ``passes``, of the CPU microseconds one resource costs in ``step`` (the
        least: the pass least disturbed by whatever else shares the machine)."""
        fn = self.steps[step]
        times = []
        for _ in range(passes):
            if not warm:
                clear_caches()
            started = time.process_time()
            fn()
            times.append(time.process_time() - started)
        return min(times) / self.resources * 1e6


def _no_issues(_resource: dict[str, Any]) -> list[Any]:
    return []


def _count(rows: Any) -> int:
    return sum(len(getattr(rows, k)) for k in ("strings", "tokens", "references", "dates", "numbers",
                                                "quantities", "uris", "composites"))


def serve(args: argparse.Namespace) -> None:
    """Child mode: build the workloads, say what they are, then answer ``input step`` lines with
    the CPU µs per resource of one measurement, until stdin closes."""
    from ehrgate.fhir.jsonio import loads

    converted = loads(args.hl7_file.read_bytes())
    inputs = {"synthea": synthea_bundles(args.bundles), "hl7": converted["samples"], "hl7-e2e": converted["stream"]}
    loads_ = {name: Workload(name, bundles) for name, bundles in inputs.items() if bundles}
    facts = {name: {"resources": w.resources, "index_rows": w.index_rows} for name, w in loads_.items()}
    print(json.dumps(facts), flush=True)
    for line in sys.stdin:
        name, step = line.split()
        w = loads_[name]
        passes = args.passes * max(1, 1000 // w.resources)  # small inputs: more passes
        print(json.dumps(w.cpu_us(step, passes, args.warm)), flush=True)


# -- reporting ---------------------------------------------------------------------------------


class Child:
    """A child interpreter importing ``ehrgate`` from ``src``, measuring on request."""

    def __init__(self, src: Path, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--child", "--passes", str(args.passes), "--bundles", str(args.bundles),
               "--hl7-file", str(args.hl7_file)]
        if args.warm:
            cmd.append("--warm")
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(src)}, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.facts: dict[str, dict[str, float]] = json.loads(self._line())
        self.times: dict[tuple[str, str], list[float]] = {}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the measuring child (pid {self.proc.pid}) ended early")
        return line

    def measure(self, name: str, step: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{name} {step}\n")
        self.proc.stdin.flush()
        self.times.setdefault((name, step), []).append(json.loads(self._line()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def result(self, stat: Callable[[list[float]], float]) -> dict[str, dict[str, float]]:
        return {name: {**facts, **{s: stat(self.times[(name, s)]) for s in STEPS}}
                for name, facts in self.facts.items()}


def table(ours: Child, base: Child | None) -> None:
    """Medians per input and step; with a baseline, its medians, the ratio of medians and the ratio
    of the least runs (on a busy machine the least is the steadier of the two)."""
    print(f"  {'input':9} {'resources':>9} {'rows/res':>8}" + "".join(f" {s + ' µs':>11}" for s in STEPS))
    got_med, got_min = ours.result(statistics.median), ours.result(min)
    was_med, was_min = (base.result(statistics.median), base.result(min)) if base else ({}, {})
    for name, got in got_med.items():
        print(f"  {name:9} {got['resources']:9.0f} {got['index_rows']:8.1f}" + "".join(f" {got[s]:11.1f}" for s in STEPS))
        if name in was_med:
            was = was_med[name]
            print(f"  {'baseline':9} {was['resources']:9.0f} {was['index_rows']:8.1f}"
                  + "".join(f" {was[s]:11.1f}" for s in STEPS))
            print(f"  {'ratio':9} {'median':>9} {'':8}" + "".join(f" {was[s] / got[s]:10.2f}x" for s in STEPS))
            print(f"  {'':9} {'least':>9} {'':8}"
                  + "".join(f" {was_min[name][s] / got_min[name][s]:10.2f}x" for s in STEPS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measurements per step, input and tree (median printed)")
    parser.add_argument("--passes", type=int, default=3, help="passes per measurement (least kept)")
    parser.add_argument("--bundles", type=int, default=8,
                        help="Synthea patient bundles (0: all 30), plus the hospital and practitioner bundles")
    parser.add_argument("--warm", action="store_true", help="keep caches between passes")
    parser.add_argument("--against", default="HEAD", help="the git revision whose src/ is the baseline (default HEAD)")
    parser.add_argument("--baseline", type=Path, help="a src/ directory to compare with instead of --against")
    parser.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hl7-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve(args)
        return 0
    if not SYNTHEA.is_dir():
        print(f"(no Synthea corpus at {SYNTHEA}: HL7 input only)")
    here = REPO / "src"
    with tempfile.TemporaryDirectory(prefix="prepare-speed-") as tmp:
        # Converted once, here: both trees measure the same resources even when their converters differ.
        from ehrgate.fhir.jsonio import dumps

        args.hl7_file = Path(tmp) / "hl7-bundles.json"
        args.hl7_file.write_bytes(dumps({"samples": hl7_bundles(), "stream": hl7_bundles(stream=True)}))
        baseline = None if args.no_baseline else args.baseline.resolve() if args.baseline else checkout(args.against, tmp)
        children = [Child(here, args)]
        if baseline is not None:
            children.append(Child(baseline, args))
        try:
            # Interleaved finely (each step of each input, tree after tree, run after run), so the
            # changing load of a shared machine falls on both trees alike.
            for run in range(args.runs):
                for name in children[0].facts:
                    for step in STEPS:
                        for c in children if run % 2 == 0 else children[::-1]:
                            c.measure(name, step)
        finally:
            for c in children:
                c.close()
    mode = "warm caches" if args.warm else "caches cleared before each pass"
    print(f"CPU µs per resource, median of {args.runs} runs ({mode}); this tree: {here}")
    table(children[0], children[1] if len(children) > 1 else None)
    if baseline is not None:
        what = args.baseline.resolve() if args.baseline else f"src/ of {args.against} ({revision(args.against)})"
        print(f"baseline: {what}; ratio = baseline / this tree (> 1: this tree is faster)")
    return 0


def revision(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def checkout(rev: str, tmp: str) -> Path:
    """``src/`` as of git revision ``rev``, unpacked under ``tmp`` (``git archive``: no worktree to clean up)."""
    dest = Path(tmp) / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


if __name__ == "__main__":
    raise SystemExit(main())
