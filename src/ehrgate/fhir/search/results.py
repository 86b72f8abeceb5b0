"""Result parameters whose values EHRGate checks (http://hl7.org/fhir/R4/search.html#return).

search.html#errors: a parameter the server does not understand is an error when the client asks
for ``Prefer: handling=strict``, and otherwise is ignored and reported in an OperationOutcome entry
of the searchset (``search.mode = outcome``). A result parameter with a value the server cannot
honour (``_summary=bogus``, ``_include=Patient:nosuch``, ``_contained=true``) is handled the same
way, never as a silent no-op. A value that cannot even be read (``_include=broken``) answers 400
under either handling, like a malformed date.

Pure: no database.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidSearch, Issue

__all__ = ["SUMMARY_MODES", "TOTAL_MODES", "Include", "check_result", "parse_include"]

SUMMARY_MODES = ("true", "text", "data", "count", "false")
TOTAL_MODES = ("none", "estimate", "accurate")

Include = tuple[str, str, str | None, bool]
"""(source type, reference parameter or ``*``, target type or None, iterate)."""

Problem = tuple[str, str]
"""(issue code, why the value is not honoured): the reason completes ``'_total' has value 'x'; ...``."""


def parse_include(spec: str, name: str) -> Include:
    """``Type:param[:TargetType]``, optionally ending ``:iterate`` (search.html#include)."""
    iterate = False
    if spec.endswith(":iterate") or spec.endswith(":recurse"):
        spec = spec.rsplit(":", 1)[0]
        iterate = True
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidSearch(f"{name} value {spec!r} is not valid; expected Type:param[:TargetType].")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate


def _one_of(value: str, allowed: tuple[str, ...]) -> Problem | None:
    if value in allowed:
        return None
    return "invalid", f"expected {', '.join(allowed[:-1])} or {allowed[-1]}"


def _summary(value: str) -> Problem | None:
    return _one_of(value, SUMMARY_MODES)


def _total(value: str) -> Problem | None:
    return _one_of(value, TOTAL_MODES)


def _contained(value: str) -> Problem | None:
    if value in ("true", "both"):
        return "not-supported", "contained resources are not searched (only _contained=false is supported)"
    return _one_of(value, ("true", "false", "both"))


def _contained_type(value: str) -> Problem | None:
    if value == "contained":
        return "not-supported", "contained resources are not searched (only _containedType=container is supported)"
    return _one_of(value, ("container", "contained"))


def _include(value: str, name: str, searched: str | None = None) -> Problem | None:
    """The source must be a resource type, the parameter one of its reference parameters (or
    ``*``), and the target type one that parameter may refer to. An ``_include`` without
    ``:iterate`` follows references of the matches, so its source must be the searched type."""
    from ..validation import known_resource_types
    from .params import params_for

    source, code, target, iterate = parse_include(value, name)
    types = known_resource_types()
    if source not in types:
        return "invalid", f"{source!r} is not a FHIR R4 resource type"
    if name == "_include" and not iterate and searched and source != searched:
        return "invalid", (f"this search returns {searched}, so an _include follows {searched} references; "
                           f"use _revinclude for {source}s that refer to them, or _include:iterate after another include")
    targets: tuple[str, ...] = ()
    if code != "*":
        param = params_for(source).get(code)
        if param is None or param.type != "reference":
            return "not-supported", f"{source} has no reference search parameter {code!r}"
        targets = param.targets
    if target is not None:
        if target not in types:
            return "invalid", f"{target!r} is not a FHIR R4 resource type"
        if targets and target not in targets:
            return "invalid", f"{source}:{code} refers to {', '.join(targets)}, not {target}"
    return None


def _elsewhere(where: str) -> Callable[[str], Problem]:
    """A parameter of other interactions, which a search does not use: reported, never silently
    dropped (a client that sent it expects it to narrow the result)."""
    return lambda _value: ("not-supported", where)


_CHECKS: dict[str, Callable[[str], Problem | None]] = {
    "_summary": _summary,
    "_total": _total,
    "_contained": _contained,
    "_containedType": _contained_type,
    "_since": _elsewhere("_since belongs to history (/_history), Patient/$everything and $export; "
                         "to search by change time use _lastUpdated=gt<instant>"),
    "_type": _elsewhere("_type belongs to Patient/$everything and $export; a search returns the type in its path"),
    "_outputFormat": _elsewhere("_outputFormat belongs to $export"),
}
_INCLUDES = frozenset({"_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_include:recurse",
                       "_revinclude:recurse"})


def check_result(name: str, value: str, *, strict: bool, searched: str | None = None) -> Issue | None:
    """None when ``name=value`` is honoured; else the warning to report for ignoring it, or
    InvalidSearch under strict handling. Raises InvalidSearch for an unreadable include either way.
    ``searched``: the resource type the search returns (checks a plain ``_include``'s source)."""
    if name in _INCLUDES:
        problem = _include(value, name.split(":")[0], None if ":" in name else searched)
    else:
        check = _CHECKS.get(name)
        problem = check(value) if check is not None else None
    if problem is None:
        return None
    code, reason = problem
    if strict:
        text = f"'{name}' has value {value!r}; {reason}."
        raise InvalidSearch(text, issues=[Issue("error", code, text)])
    return Issue("warning", code, f"Ignored '{name}' with value {value!r}: {reason}.")
