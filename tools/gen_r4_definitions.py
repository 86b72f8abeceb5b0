"""Generate ``src/ehrgate/fhir/validation/r4_definitions.json`` from published FHIR R4 (4.0.1) models.

Run once, check the output in; the validator loads the JSON and never imports these packages:

    .venv/bin/pip install fhirclient==4.4.0 fhirpathpy
    .venv/bin/python tools/gen_r4_definitions.py

Sources (both generated from the R4 4.0.1 StructureDefinitions, so they hold facts of the spec):

* ``fhirclient.models`` (4.4.0) gives the structure: every element of every resource, datatype and
  backbone element, its JSON name, whether it repeats (max ``*``), whether min >= 1, and the choice
  group (``value[x]``) it belongs to.
* fhirclient types primitives only as Python types (``str`` covers string, code, uri, id, markdown...;
  ``int`` covers integer, positiveInt, unsignedInt), so the exact FHIR primitive type of each element
  is taken from fhirpathpy's R4 model (``models/r4/path2Type.json``, keyed by FHIR path), and checked
  against fhirclient's Python type.

Output format (one line per type, so diffs stay readable)::

    {"fhirVersion": "4.0.1", "resources": [...], "types": {
      "Patient": ["DomainResource", {"gender": "code", "name": "HumanName*", ...}],
      "Patient.contact": ["BackboneElement", {...}],
      ...}}

An element spec is ``TYPE`` followed by ``*`` when it repeats, ``!`` when it is required, and
``|GROUP`` when it is one alternative of the choice element ``GROUP[x]``. Backbone elements are named
by the FHIR path where the spec defines them; ``Resource`` means any resource (dispatch on
``resourceType``). Inherited elements are not repeated: the first item names the base type.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "src" / "ehrgate" / "fhir" / "validation" / "r4_definitions.json"

BASES = ("Element", "BackboneElement", "Resource", "DomainResource")

# fhirclient's Python types for primitives, and the FHIR types each may stand for.
PY_PRIMITIVES: dict[str, tuple[str, frozenset[str]]] = {
    "str": (
        "string",
        frozenset(
            {"string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml"}
        ),
    ),
    "int": ("integer", frozenset({"integer", "positiveInt", "unsignedInt"})),
    "float": ("decimal", frozenset({"decimal"})),
    "bool": ("boolean", frozenset({"boolean"})),
    "FHIRDate": ("date", frozenset({"date"})),
    "FHIRDateTime": ("dateTime", frozenset({"dateTime"})),
    "FHIRInstant": ("instant", frozenset({"instant"})),
    "FHIRTime": ("time", frozenset({"time"})),
}

# fhirclient names a few types differently from the spec.
RENAMED = {"FHIRReference": "Reference"}


def _model_classes() -> dict[str, type]:
    import fhirclient.models as models
    from fhirclient.models.fhirabstractbase import FHIRAbstractBase

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(models.__path__):
        if info.name.endswith("_tests"):
            continue
        module = importlib.import_module(f"fhirclient.models.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, FHIRAbstractBase) and cls.__module__ == module.__name__:
                found[name] = cls
    return found


def _path2type(explicit: Path | None) -> dict[str, str]:
    if explicit is None:
        spec = importlib.util.find_spec("fhirpathpy")
        if spec is None or spec.origin is None:
            sys.exit("fhirpathpy is not installed (pip install fhirpathpy), or pass --path2type FILE")
        explicit = Path(spec.origin).parent / "models" / "r4" / "path2Type.json"
    data: dict[str, str] = json.loads(explicit.read_text())
    return data


class Generator:
    """Walks the fhirclient model graph and writes the compact element tables."""

    def __init__(self, path2type: dict[str, str]) -> None:
        from fhirclient.models.backboneelement import BackboneElement
        from fhirclient.models.domainresource import DomainResource
        from fhirclient.models.element import Element
        from fhirclient.models.resource import Resource

        self.classes = _model_classes()
        self.path2type = path2type
        self.resource_cls = Resource
        self.base_cls = {"Element": Element, "BackboneElement": BackboneElement,
                         "Resource": Resource, "DomainResource": DomainResource}
        self.resources = sorted(
            n for n, c in self.classes.items() if issubclass(c, Resource) and n not in ("Resource", "DomainResource")
        )
        # Named types: resources and datatypes each live in a module named after them.
        self.named = {
            c: RENAMED.get(n, n)
            for n, c in self.classes.items()
            if c.__module__.rsplit(".", 1)[1] == n.lower() and not n.startswith("FHIRAbstract")
        }
        self.names: dict[type, str] = {}
        self.mismatches: list[str] = []

    # -- the walk --------------------------------------------------------------------------------
    def _props(self, cls: type) -> list[tuple[Any, ...]]:
        return list(cls(strict=False).elementProperties())

    def _base_of(self, cls: type) -> str:
        for name in ("DomainResource", "Resource", "BackboneElement", "Element"):
            if issubclass(cls, self.base_cls[name]):
                return name
        raise ValueError(f"{cls.__name__} derives from none of {BASES}")

    def _assign_names(self) -> None:
        """Name every backbone class by the path where the spec defines it (its CamelCase name).

        A backbone class may also be used elsewhere (``ValueSet.compose.exclude`` reuses
        ``ValueSet.compose.include``), so collect every edge first and then pick, for each class, the
        path whose CamelCase spelling is the class name.
        """
        candidates: dict[type, list[str]] = {}
        queue: list[tuple[type, str, frozenset[type]]] = [(c, n, frozenset({c})) for c, n in self.named.items()]
        while queue:
            cls, path, ancestors = queue.pop(0)
            for _, js, typ, *_rest in self._props(cls):
                if typ in self.named or typ is self.resource_cls or typ.__name__ in PY_PRIMITIVES:
                    continue
                candidates.setdefault(typ, []).append(f"{path}.{js}")
                if typ not in ancestors:
                    queue.append((typ, f"{path}.{js}", ancestors | {typ}))

        def camel(path: str) -> str:
            return "".join(part[:1].upper() + part[1:] for part in path.split("."))

        for cls, paths in candidates.items():
            exact = [p for p in paths if camel(p) == cls.__name__]
            self.names[cls] = exact[0] if exact else min(paths, key=len)
        self.names.update(self.named)

    def _primitive(self, path: str, pytype: str) -> str:
        default, allowed = PY_PRIMITIVES[pytype]
        found = self.path2type.get(path)
        if found == "System.String":
            leaf = path.rsplit(".", 1)[1]
            owner = path.rsplit(".", 1)[0]
            if leaf == "url":  # Extension.url
                return "uri"
            # Resource.id is an id (resource.html#id); Element.id is a string.
            return "id" if owner in self.resources or owner in ("Resource", "DomainResource") else "string"
        if found is None:
            self.mismatches.append(f"{path}: not in path2Type, using {default}")
            return default
        if found not in allowed:
            self.mismatches.append(f"{path}: path2Type says {found}, fhirclient says {pytype}")
            return default
        return found

    def _type_entry(self, cls: type) -> list[Any]:
        name = self.names[cls]
        base = self._base_of(cls) if name not in BASES else ""
        inherited = {p[1] for p in self._props(self.base_cls[base])} if base else set()
        elements: dict[str, str] = {}
        for _, js, typ, is_list, of_many, required in self._props(cls):
            if js in inherited:
                continue
            path = f"{name}.{js}"
            if typ is self.resource_cls:
                code = "Resource"
            elif typ.__name__ in PY_PRIMITIVES:
                code = self._primitive(path, typ.__name__)
            else:
                code = self.names[typ]
            spec = code + ("*" if is_list else "") + ("!" if required else "")
            if of_many:
                spec += f"|{of_many}"
            elements[js] = spec
        return [base, dict(sorted(elements.items()))]

    def build(self) -> dict[str, Any]:
        self._assign_names()
        types: dict[str, list[Any]] = {}
        for cls, name in self.names.items():
            types[name] = self._type_entry(cls)
        for base in BASES:
            types[base] = self._type_entry(self.base_cls[base])
        return {"fhirVersion": "4.0.1", "resources": self.resources, "types": dict(sorted(types.items()))}


def render(data: dict[str, Any]) -> str:
    def lines() -> Iterator[str]:
        yield "{"
        yield f'"fhirVersion": {json.dumps(data["fhirVersion"])},'
        yield f'"resources": {json.dumps(data["resources"], separators=(",", ":"))},'
        yield '"types": {'
        items = list(data["types"].items())
        for i, (name, entry) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            yield f"{json.dumps(name)}:{json.dumps(entry, separators=(',', ':'))}{comma}"
        yield "}}"
    return "\n".join(lines()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path2type", type=Path, help="fhirpathpy models/r4/path2Type.json (default: installed)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is out of date")
    args = parser.parse_args(argv)

    gen = Generator(_path2type(args.path2type))
    text = render(gen.build())
    for line in gen.mismatches:
        print(f"note: {line}", file=sys.stderr)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run tools/gen_r4_definitions.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.encode()):,} bytes, {len(gen.names)} types)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
