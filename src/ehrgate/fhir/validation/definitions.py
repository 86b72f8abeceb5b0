"""The R4 element tables, loaded once from ``r4_definitions.json`` and compiled for the validator.

The JSON is produced by ``tools/gen_r4_definitions.py`` from the R4 4.0.1 models (see its
docstring for the format). Here each type becomes a :class:`TypeDef` whose elements are keyed by
their JSON property name (``valueQuantity``, not ``value[x]``), with the primitive check, the
required binding and the child :class:`TypeDef` resolved up front so the walk does no lookups by
name.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any

import orjson

from .bindings import REQUIRED, ValueSet
from .primitives import CHECKS, MEMO_TYPES, Check, Memo

__all__ = [
    "BOUND_CODE", "COMPLEX", "MEMOS", "OBJECT", "OBJECT_LIST", "PRIMITIVE", "RESOURCE", "RESOURCE_LIST",
    "RESOURCE_ONE", "RESOURCE_TYPES", "SCALAR", "SCALAR_LIST", "STRING", "TYPES", "ElementDef", "TypeDef",
    "clear_memos",
]

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2

# How the validator treats a property, most frequent first (see ElementDef.mode).
STRING, BOUND_CODE, SCALAR, OBJECT, OBJECT_LIST, SCALAR_LIST, RESOURCE_ONE, RESOURCE_LIST = range(8)

_BINDABLE = frozenset({"code", "Coding", "CodeableConcept"})

MEMOS: dict[str, Memo] = {name: Memo() for name in MEMO_TYPES}  # shared by all elements of a type


class ElementDef:
    """One JSON property of a type: ``Patient.name`` is ``HumanName``, repeating, optional."""

    __slots__ = (
        "binding", "check", "choice", "is_list", "kind", "memo", "name", "required", "seen", "type", "typedef",
    )

    def __init__(self, name: str, spec: str) -> None:
        type_code, _, choice = spec.partition("|")
        self.required = type_code.endswith("!")
        type_code = type_code.rstrip("!")
        self.is_list = type_code.endswith("*")
        self.type = type_code.rstrip("*")
        self.name = name
        self.choice: str | None = choice or None
        self.check: Check | None = CHECKS.get(self.type)
        self.kind = PRIMITIVE if self.check else RESOURCE if self.type == "Resource" else COMPLEX
        self.memo: Memo | None = MEMOS.get(self.type)
        self.seen: set[str] | frozenset[str] = self.memo.values if self.memo else frozenset()
        self.typedef: TypeDef | None = None
        self.binding: ValueSet | None = None

    @property
    def mode(self) -> int:
        """One small int that routes the property in the validator's hot loop.

        ``STRING``: string and markdown need nothing beyond "a non-empty JSON string of at most
        1MB", tested inline. ``BOUND_CODE``: a code in its value set is valid without the regex.
        """
        if self.kind == PRIMITIVE:
            if self.is_list:
                return SCALAR_LIST
            if self.type in ("string", "markdown"):
                return STRING
            return BOUND_CODE if self.binding is not None and self.type == "code" else SCALAR
        if self.kind == COMPLEX:
            return OBJECT_LIST if self.is_list else OBJECT
        return RESOURCE_LIST if self.is_list else RESOURCE_ONE


# Datatypes whose valid values the validator remembers (see TypeDef.valid): those that recur from
# resource to resource and cost more to check than to look up (measured with bench/prepare_speed.py:
# a Coding, Period or Quantity checks in about the time its JSON takes to serialise and hash).
_REMEMBERED = frozenset({"Address", "CodeableConcept", "Extension", "HumanName", "Identifier", "Meta", "Reference"})


def _memo() -> Memo:
    # 2,048 values of up to 512 bytes of JSON: a few MB at most for all of them together.
    return Memo(limit=2048, max_length=512)


class TypeDef:
    """A resource, datatype or backbone element with all its elements, inherited ones included."""

    __slots__ = ("choices", "elements", "hook", "is_resource", "name", "required", "routes", "valid")

    def __init__(self, name: str, elements: dict[str, ElementDef], is_resource: bool) -> None:
        self.name = name
        self.elements = elements
        self.is_resource = is_resource
        self.hook: Callable[..., None] | None = None  # set by the validator from invariants.HOOKS
        # For some datatypes: the serialised values found valid, outside and inside a transaction
        # (where a Reference may be conditional). A datatype holds no resources, so whether a value
        # is valid depends on its JSON alone; the same CodeableConcept or Reference recurs in
        # resource after resource.
        remembered = name in _REMEMBERED
        self.valid: tuple[Memo, Memo] | None = (_memo(), _memo()) if remembered else None
        # key -> (mode, choice group, element); filled in once bindings are attached.
        self.routes: dict[str, tuple[int, str | None, ElementDef]] = {}
        self.choices: dict[str, tuple[str, ...]] = {}
        for el in elements.values():
            if el.choice:
                self.choices[el.choice] = (*self.choices.get(el.choice, ()), el.name)
        required: dict[str, tuple[str, ...]] = {}
        for el in elements.values():
            if el.required:
                label = f"{el.choice}[x]" if el.choice else el.name
                names = self.choices[el.choice] if el.choice else (el.name,)
                # an extension-only primitive ("_status": {...}) is present (json.html#primitive)
                underscored = tuple(f"_{n}" for n in names if elements[n].kind == PRIMITIVE)
                required[label] = (*names, *underscored)
        self.required: tuple[tuple[str, tuple[str, ...]], ...] = tuple(required.items())


def _load() -> tuple[dict[str, TypeDef], frozenset[str]]:
    raw: dict[str, Any] = orjson.loads(files(__package__).joinpath("r4_definitions.json").read_bytes())
    table: dict[str, list[Any]] = raw["types"]
    resources = frozenset(raw["resources"])

    def specs(name: str) -> dict[str, str]:
        base, own = table[name]
        return {**(specs(base) if base else {}), **own}

    types: dict[str, TypeDef] = {}
    for name in table:
        elements = {key: ElementDef(key, spec) for key, spec in specs(name).items()}
        types[name] = TypeDef(name, elements, name in resources)
    for td in types.values():
        for el in td.elements.values():
            if el.kind == COMPLEX:
                el.typedef = types[el.type]
    for path, value_set in REQUIRED.items():
        owner, _, element = path.rpartition(".")
        el = types[owner].elements[element]
        if el.type not in _BINDABLE:
            raise ValueError(f"Binding {path!r} is on a {el.type}; expected one of {sorted(_BINDABLE)}")
        el.binding = value_set
    for td in types.values():
        td.routes = {key: (el.mode, el.choice, el) for key, el in td.elements.items()}
    return types, resources


TYPES, RESOURCE_TYPES = _load()


def clear_memos() -> None:
    """Forget every value found valid (primitive and datatype memos): for tests and benchmarks that
    measure a cold start."""
    for memo in MEMOS.values():
        memo.values.clear()
    for td in TYPES.values():
        for memo in td.valid or ():
            memo.values.clear()
