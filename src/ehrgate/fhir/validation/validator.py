"""Structural validation of an R4 resource in its JSON form (http://hl7.org/fhir/R4/json.html).

One walk over the parsed JSON checks, for every object against its type in ``r4_definitions.json``:

* every property is an element of the type (json.html#unknown-elements), or ``_name`` for a
  primitive ``name`` (json.html#primitive), or ``resourceType`` on a resource;
* the JSON shape: an array exactly where max is ``*``, an object for complex types, no ``null``
  except inside a primitive array aligned with its ``_name`` array, no empty arrays, objects or
  strings (json.html#json: "empty values are not allowed");
* cardinality: elements with min >= 1 are present; at most one alternative of each ``name[x]``;
* primitive formats (primitives.py), required bindings (bindings.py), a few invariants
  (invariants.py), and contained and Bundle entry resources, recursively.

Valid values of the primitive types and of a few recurring datatypes (a CodeableConcept, a
Reference: definitions.TypeDef.valid) are remembered, and skipped when met again.

It never raises on bad input: every problem becomes an :class:`~ehrgate.fhir.errors.Issue` whose
``expression`` is the FHIRPath of the offending element (``Bundle.entry[3].resource.birthDate``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from ..errors import Issue
from ..jsonio import ExactNumber
from .definitions import (
    BOUND_CODE,
    OBJECT,
    OBJECT_LIST,
    PRIMITIVE,
    RESOURCE_ONE,
    RESOURCE_TYPES,
    SCALAR,
    SCALAR_LIST,
    STRING,
    TYPES,
    ElementDef,
    TypeDef,
)
from .invariants import HOOKS, check_contained
from .primitives import MAX_STRING, WRONG_JSON_TYPE

__all__ = ["validate"]

for _name, _hook in HOOKS.items():
    TYPES[_name].hook = _hook
_ELEMENT = TYPES["Element"]
_dumps = orjson.dumps
# A datatype memo key is the value's JSON, what the store writes. Subclasses, dates and dataclasses
# raise (and are checked every time); a tuple or UUID, which orjson writes as an array or a string,
# shares the key of what it is written as (input here is parsed JSON, which has neither).
_KEY_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_JSON_NAMES = {dict: "a JSON object", list: "a JSON array", str: "a JSON string", bool: "a JSON boolean",
               int: "a JSON number", float: "a JSON number", Decimal: "a JSON number", ExactNumber: "a JSON number",
               type(None): "null"}


def validate(resource: Any) -> list[Issue]:
    """Return every structural problem of ``resource`` (parsed JSON); an empty list means valid."""
    walker = _Walker()
    try:
        walker.resource(resource, None, False)
    except RecursionError:  # hundreds of levels of nesting: no real resource looks like that
        where = resource.get("resourceType") if type(resource) is dict else None
        walker.report("too-costly", where if type(where) is str else "Resource",
                      "the JSON is nested too deeply to validate; no R4 resource needs that depth")
    return walker.issues


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = _json_name(value) if type(value) is dict or type(value) is list else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Walker:
    __slots__ = ("conditional", "issues")

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.conditional = False  # inside a transaction Bundle: conditional references allowed

    def report(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("error", code, f"{path}: {message}", path))

    # -- resources -------------------------------------------------------------------------------
    def resource(self, obj: Any, path: str | None, contained: bool) -> None:
        where = f"{path}.resourceType" if path else "resourceType"
        if type(obj) is not dict:
            self.report("structure", path or "Resource", f"expected a resource as a JSON object, got {_show(obj)}")
            return
        rt = obj.get("resourceType")
        if rt is None:
            self.report("required", where, "missing 'resourceType'; expected the name of an R4 resource type")
            return
        if type(rt) is not str or rt not in RESOURCE_TYPES:
            self.report("structure", where, f"unknown resourceType {_show(rt)}; expected an R4 resource type such as 'Patient'")
            return
        here = path or rt
        if contained:
            check_contained(obj, here, self.report)
        if rt == "Bundle":
            outer = self.conditional
            self.conditional = obj.get("type") == "transaction"
            self.object(obj, TYPES[rt], here)
            self.conditional = outer
        else:
            self.object(obj, TYPES[rt], here)

    # -- objects ---------------------------------------------------------------------------------
    def object(self, obj: dict[str, Any], td: TypeDef, path: str) -> None:
        # The hot loop: for valid input each property passes the first test of its branch.
        routes = td.routes
        choices: dict[str, str] | None = None
        for key, value in obj.items():
            route = routes.get(key)
            if route is None:
                self.other_key(obj, td, key, value, path)
                continue
            mode, choice, el = route
            if choice is not None:
                if choices is None:
                    choices = {choice: key}
                elif choice in choices:
                    self.report("structure", f"{path}.{key}",
                                f"'{key}' and '{choices[choice]}' both given; {choice}[x] takes only one")
                else:
                    choices[choice] = key
            if mode == STRING:
                if type(value) is not str or not 0 < len(value) <= MAX_STRING or "\x00" in value:
                    self.scalar(el, value, f"{path}.{key}")
            elif mode == OBJECT:
                if type(value) is dict and value:
                    if el.typedef.valid is None:  # type: ignore[union-attr]
                        self.object(value, el.typedef, f"{path}.{key}")  # type: ignore[arg-type]
                    else:
                        self.datatype(value, el.typedef, path, key)  # type: ignore[arg-type]
                    if el.binding is not None:
                        self.coded(value, el, f"{path}.{key}")
                else:
                    self.bad_shape(el, value, f"{path}.{key}")
            elif mode == BOUND_CODE:
                if type(value) is not str or value not in el.binding.codes:  # type: ignore[union-attr]
                    self.scalar(el, value, f"{path}.{key}")  # (a code of the value set needs no regex)
            elif mode == SCALAR:
                if type(value) is str and value in el.seen:
                    continue  # found valid before (primitives.Memo)
                if el.check(value) is not None:  # type: ignore[misc]
                    self.scalar(el, value, f"{path}.{key}")
                elif el.memo is not None:
                    el.memo.add(value)
            elif mode == RESOURCE_ONE:
                if type(value) is dict:
                    self.resource(value, f"{path}.{key}", False)
                else:
                    self.bad_shape(el, value, f"{path}.{key}")
            elif type(value) is not list or not value:
                self.bad_shape(el, value, f"{path}.{key}")
            elif mode == OBJECT_LIST:
                sub = f"{path}.{key}"
                typedef = el.typedef
                remembered = typedef.valid is not None  # type: ignore[union-attr]
                for i, item in enumerate(value):
                    if type(item) is dict and item:
                        if remembered:
                            self.datatype(item, typedef, sub, i)  # type: ignore[arg-type]
                        else:
                            self.object(item, typedef, f"{sub}[{i}]")  # type: ignore[arg-type]
                        if el.binding is not None:
                            self.coded(item, el, f"{sub}[{i}]")
                    else:
                        self.bad_shape(el, item, f"{sub}[{i}]")
            elif mode == SCALAR_LIST:
                self.scalar_list(obj, el, value, f"{path}.{key}")
            else:  # RESOURCE_LIST
                sub = f"{path}.{key}"
                for i, item in enumerate(value):
                    self.resource(item, f"{sub}[{i}]", key == "contained")
        if td.required:
            self.required(obj, td, path)
        if td.hook is not None:
            td.hook(obj, path, self.report, self.conditional)

    def datatype(self, obj: dict[str, Any], td: TypeDef, parent: str, step: str | int) -> None:
        """``object`` for a datatype value (at ``parent.step``, or ``parent[step]`` in a list), skipped
        when the same JSON was found valid before (``TypeDef.valid``)."""
        memo = td.valid[self.conditional]  # type: ignore[index]
        try:
            seen: bytes | None = _dumps(obj, option=_KEY_OPTIONS)
        except TypeError:  # a Decimal, or a type JSON has not: checked every time
            seen = None
        else:
            if seen in memo.values:
                return
        before = len(self.issues)
        self.object(obj, td, f"{parent}[{step}]" if type(step) is int else f"{parent}.{step}")
        # NaN and infinity serialise as null: such a value must not stand for a real null.
        if seen is not None and len(self.issues) == before and b"null" not in seen:
            memo.add(seen)

    def required(self, obj: dict[str, Any], td: TypeDef, path: str) -> None:
        for label, alternatives in td.required:
            for name in alternatives:
                if name in obj:
                    break
            else:
                self.report("required", f"{path}.{label}",
                            f"missing required element '{label}' ({td.name}.{label} has min 1)")

    def bad_shape(self, el: ElementDef, value: Any, path: str) -> None:
        """``value`` has the wrong JSON shape for ``el``: null, array vs single, empty, not an object."""
        item = path.endswith("]")  # an item of a repeating element
        if value is None:
            self.report("structure", path, "null is not allowed; omit the element instead")
        elif type(value) is list:
            if el.is_list and not item:
                self.report("structure", path, "empty array is not allowed; omit the element instead")
            else:
                self.report("structure", path, f"expected a single {el.type} (max is 1), got a JSON array")
        elif el.is_list and not item:
            self.report("structure", path, f"expected a JSON array of {el.type} (max is *), got {_json_name(value)}")
        elif type(value) is dict and el.kind == PRIMITIVE:
            self.report("structure", path, f"expected {el.type} as a JSON primitive, got a JSON object")
        elif type(value) is dict:
            self.report("structure", path, "empty object is not allowed; omit the element instead")
        else:
            self.report("structure", path, f"expected a JSON object ({el.type}), got {_show(value)}")

    def other_key(self, obj: dict[str, Any], td: TypeDef, key: str, value: Any, path: str) -> None:
        if key == "resourceType" and td.is_resource:
            return
        if key[:1] == "_":
            el = td.elements.get(key[1:])
            if el is not None and el.kind == PRIMITIVE:
                self.primitive_extension(el, obj.get(el.name), value, f"{path}.{el.name}")
                return
        self.report("structure", f"{path}.{key}", f"unknown element '{key}' in {td.name}{self.hint(td, key)}")

    @staticmethod
    def hint(td: TypeDef, key: str) -> str:
        bare = key.lstrip("_")
        for group, names in td.choices.items():
            if bare == group or (bare.startswith(group) and bare[len(group):][:1].isupper()):
                listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                return f"; {group}[x] allows {listed}"
        if key[:1] == "_" and bare in td.elements:
            return f"; '_{bare}' is only allowed when '{bare}' is a primitive"
        return ""

    # -- primitives ------------------------------------------------------------------------------
    def scalar(self, el: ElementDef, value: Any, path: str) -> None:
        """The slow path for one primitive value that failed the fast test in ``object``."""
        if value is None or type(value) is list or type(value) is dict:
            self.bad_shape(el, value, path)
            return
        message = el.check(value)  # type: ignore[misc]
        if message is None:
            if el.binding is not None and value not in el.binding.codes:
                self.report("code-invalid", path,
                            f"{_show(value)} is not in the required value set {el.binding.expected()}")
        elif message[:1] == WRONG_JSON_TYPE:
            self.report("structure", path, f"{_show(value)} is {_json_name(value)}; expected {message[1:]}")
        else:
            self.report("value", path, f"{_show(value)} is invalid; expected {message}")

    def scalar_list(self, obj: dict[str, Any], el: ElementDef, values: list[Any], path: str) -> None:
        check, memo, seen = el.check, el.memo, el.seen
        codes = el.binding.codes if el.binding is not None else None
        plain = el.type in ("string", "markdown")
        for i, item in enumerate(values):
            if type(item) is str and (item in seen or (plain and 0 < len(item) <= MAX_STRING and "\x00" not in item)):
                if codes is None or item in codes:
                    continue
            if item is None:
                ext = obj.get("_" + el.name)
                if type(ext) is not list or i >= len(ext) or ext[i] is None:
                    self.report("structure", f"{path}[{i}]",
                                f"null is only allowed where '_{el.name}[{i}]' carries an id or extensions")
            elif check(item) is not None or (codes is not None and item not in codes):  # type: ignore[misc]
                self.scalar(el, item, f"{path}[{i}]")
            elif memo is not None:
                memo.add(item)

    def primitive_extension(self, el: ElementDef, plain: Any, ext: Any, path: str) -> None:
        """``_name``: the id and extensions of a primitive (json.html#primitive)."""
        if not el.is_list:
            self.element(ext, path)
            return
        if type(ext) is not list or not ext:
            self.report("structure", path, f"'_{el.name}' must be a non-empty JSON array aligned with '{el.name}'")
            return
        if type(plain) is list and len(plain) != len(ext):
            self.report("structure", path,
                        f"'{el.name}' has {len(plain)} items but '_{el.name}' has {len(ext)}; they must align")
        for i, item in enumerate(ext):
            if item is not None:
                self.element(item, f"{path}[{i}]")
            elif type(plain) is not list or i >= len(plain) or plain[i] is None:
                self.report("structure", f"{path}[{i}]", f"'_{el.name}[{i}]' and '{el.name}[{i}]' are both null")

    def element(self, value: Any, path: str) -> None:
        if type(value) is not dict:
            self.report("structure", path, f"expected a JSON object with 'id' and/or 'extension', got {_show(value)}")
        elif not value:
            self.report("structure", path, "empty object is not allowed; omit the element instead")
        else:
            self.object(value, _ELEMENT, path)

    # -- bindings --------------------------------------------------------------------------------
    def coded(self, value: dict[str, Any], el: ElementDef, path: str) -> None:
        """A required binding on a Coding/CodeableConcept judges codings of the bound system only."""
        vs = el.binding
        if vs is None or vs.system is None:
            return
        codings = [value] if el.type == "Coding" else value.get("coding")
        if type(codings) is not list:
            return
        for i, coding in enumerate(codings):
            if type(coding) is dict and coding.get("system") == vs.system:
                code = coding.get("code")
                if type(code) is str and code not in vs.codes:
                    where = f"{path}.code" if el.type == "Coding" else f"{path}.coding[{i}].code"
                    self.report("code-invalid", where,
                                f"{code!r} is not in the required value set {vs.expected()} ({vs.system})")
