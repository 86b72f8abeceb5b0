"""Time ``ehrgate.fhir.validation.validate`` against fhirclient's strict model parsing, same inputs.

    .venv/bin/python bench/validation_speed.py [--rounds N]

Inputs: the test samples (a typical Patient and Observations), plus, when ../shared/corpus is
present, a Synthea Patient and a whole Synthea transaction Bundle. Prints microseconds per call
(best of five runs) for each: "warm" as in a running server, where the memo of valid URIs, codes and
dates (primitives.Memo) already holds this input's values, and "cold" with the memo emptied before
every call. fhirclient is optional; its column is left empty when absent.
"""

from __future__ import annotations

import argparse
import copy
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.fhir.validation.samples

from ehrgate.fhir.validation import validate  # noqa: E402
from ehrgate.fhir.validation.definitions import MEMOS  # noqa: E402
from tests.fhir.validation import samples  # noqa: E402

SYNTHEA = REPO.parent / "shared" / "corpus" / "fhir" / "synthea-r4"


def inputs() -> dict[str, dict[str, Any]]:
    found = {
        "Patient (sample)": samples.patient(),
        "Observation BP (sample)": samples.blood_pressure(),
        "Encounter (sample)": samples.encounter(),
    }
    bundles = sorted(SYNTHEA.glob("*.json")) if SYNTHEA.is_dir() else []
    if bundles:
        bundle = orjson.loads(bundles[0].read_bytes())
        by_type: dict[str, dict[str, Any]] = {}
        for entry in bundle["entry"]:
            by_type.setdefault(entry["resource"]["resourceType"], entry["resource"])
        found["Patient (Synthea)"] = by_type["Patient"]
        found["Observation (Synthea)"] = by_type["Observation"]
        found[f"Bundle (Synthea, {len(bundle['entry'])} entries)"] = bundle
    return found


def per_call_us(fn: Callable[[], object], rounds: int) -> float:
    return min(timeit.repeat(fn, number=rounds, repeat=5)) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    try:
        from fhirclient.models.fhirelementfactory import FHIRElementFactory
    except ImportError:
        FHIRElementFactory = None  # noqa: N806

    def cold(resource: dict[str, Any]) -> None:
        for memo in MEMOS.values():
            memo.values.clear()
        validate(resource)

    print(f"{'input':38} {'bytes':>8} {'warm µs':>8} {'cold µs':>8} {'fhirclient µs':>14} {'vs warm':>8}")
    for name, resource in inputs().items():
        assert validate(resource) == [], name
        size = len(orjson.dumps(resource))
        rounds = max(1, args.rounds * 2000 // size)
        ours = per_call_us(partial(validate, resource), rounds)
        ours_cold = per_call_us(partial(cold, resource), rounds)
        theirs_text = ratio = ""
        if FHIRElementFactory is not None:
            doc = copy.deepcopy(resource)
            theirs = per_call_us(partial(FHIRElementFactory.instantiate, doc["resourceType"], doc),
                                 max(1, rounds // 10))
            theirs_text, ratio = f"{theirs:14.1f}", f"{theirs / ours:7.1f}x"
        print(f"{name:38} {size:8d} {ours:8.1f} {ours_cold:8.1f} {theirs_text:>14} {ratio:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
