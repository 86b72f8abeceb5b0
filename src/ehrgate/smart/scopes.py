"""SMART scopes: parse, normalise, compare, describe (SMART App Launch 2.2 §Scopes and Launch Context).

Two syntaxes name the same rights:

- v1 ``patient/Observation.read`` / ``.write`` / ``.*`` (read = r+s, write = c+u+d);
- v2 ``patient/Observation.rs`` with the letters ``c r u d s`` in that order, optionally
  query-constrained: ``patient/Observation.rs?category=laboratory``.

Both parse to one ``ResourceScope`` (context, type, set of letters, constraints), so subset checks
(refresh, consent narrowing, registration limits) and the access policy work on one model. The
original spelling is kept (``raw``) because the token response must echo what was granted.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = [
    "CONTEXT_SCOPES",
    "CATEGORY_CHOICES",
    "ResourceScope",
    "Scope",
    "ScopeError",
    "ScopeSet",
    "category_alternatives",
    "describe",
    "parse_scope",
    "parse_scopes",
]

PERMISSION_ORDER = "cruds"
V1_PERMISSIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
CONTEXTS = ("patient", "user", "system")

CONTEXT_SCOPES: dict[str, str] = {
    "openid": "Confirm who you are (your identity) to the app.",
    "fhirUser": "Tell the app which person record you are (your FHIR user record).",
    "profile": "Tell the app your profile (legacy OpenID scope).",
    "launch": "Let the app receive the patient and encounter open in the chart.",
    "launch/patient": "Tell the app which patient you are working with.",
    "launch/encounter": "Let the app ask which encounter to work with.",
    "offline_access": "Keep access after you sign out, until you revoke it (offline access).",
    "online_access": "Keep access while you stay signed in.",
}

_TYPE = r"(?:\*|[A-Z][A-Za-z]{1,63})"
_RESOURCE = re.compile(rf"^(patient|user|system)/({_TYPE})\.([a-z*]+)(?:\?(.*))?$")

LETTER_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
CONTEXT_WORDS = {
    "patient": "for the selected patient",
    "user": "that you can see",
    "system": "for any patient (system access)",
}

# Categories the consent page offers instead of a whole resource type (SMART v2 granular scopes,
# as US Core and Inferno's granular-scope tests use them).
CATEGORY_CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "Condition": (
        ("http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis", "encounter diagnoses"),
        ("http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item", "problem list items"),
        ("http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern", "health concerns"),
    ),
    "Observation": (
        ("http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "laboratory results"),
        ("http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", "vital signs"),
        ("http://terminology.hl7.org/CodeSystem/observation-category|social-history", "social history"),
        ("http://terminology.hl7.org/CodeSystem/observation-category|survey", "surveys"),
        ("http://terminology.hl7.org/CodeSystem/observation-category|exam", "exam findings"),
        ("http://terminology.hl7.org/CodeSystem/observation-category|imaging", "imaging results"),
    ),
}


class ScopeError(ValueError):
    """A scope string that is not SMART syntax; the message names the scope."""


@dataclass(frozen=True)
class ResourceScope:
    """``context/Type.perms[?query]`` — the rights one scope grants."""

    context: str
    res_type: str
    perms: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    v1: bool = False

    @property
    def letters(self) -> str:
        return "".join(c for c in PERMISSION_ORDER if c in self.perms)

    def covers(self, other: ResourceScope) -> bool:
        """True if every right of ``other`` is also granted by ``self`` (``other`` ⊆ ``self``)."""
        if self.context != other.context:
            return False
        if self.res_type != "*" and self.res_type != other.res_type:
            return False
        if not other.perms <= self.perms:
            return False
        return set(self.query) <= set(other.query)

    def allows(self, kind: str, res_type: str) -> bool:
        return kind in self.perms and self.res_type in ("*", res_type)

    def v2(self) -> str:
        text = f"{self.context}/{self.res_type}.{self.letters}"
        if self.query:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text


@dataclass(frozen=True)
class Scope:
    """One scope as requested or granted: the spelling and, for resource scopes, their meaning."""

    raw: str
    resource: ResourceScope | None = None

    def covers(self, other: Scope) -> bool:
        if self.resource is None or other.resource is None:
            return self.raw == other.raw
        return self.resource.covers(other.resource)

    def __str__(self) -> str:
        return self.raw


def parse_scope(text: str) -> Scope:
    """Parse one scope. Unknown non-resource scopes are kept verbatim (servers must ignore them)."""
    if not text or any(c.isspace() for c in text) or '"' in text or "\\" in text:
        raise ScopeError(f"Scope {text!r} is not valid: scopes are single tokens without spaces or quotes.")
    if "/" not in text or text.startswith("launch/"):
        return Scope(text)
    m = _RESOURCE.match(text)
    if not m:
        if text.split("/", 1)[0] in CONTEXTS:
            raise ScopeError(
                f"Scope {text!r} is not valid: expected context/Type.permissions such as "
                "patient/Observation.rs or patient/Observation.read."
            )
        return Scope(text)
    context, res_type, perm_text, query_text = m.groups()
    v1 = perm_text in V1_PERMISSIONS
    if v1:
        perms = V1_PERMISSIONS[perm_text]
    else:
        if not perm_text or any(c not in PERMISSION_ORDER for c in perm_text):
            raise ScopeError(f"Scope {text!r} is not valid: permissions {perm_text!r} must be letters of 'cruds'.")
        order = [PERMISSION_ORDER.index(c) for c in perm_text]
        if order != sorted(set(order)):
            raise ScopeError(
                f"Scope {text!r} is not valid: permissions {perm_text!r} must appear once each, "
                "in the order c, r, u, d, s."
            )
        perms = frozenset(perm_text)
    query: tuple[tuple[str, str], ...] = ()
    if query_text is not None:
        if v1:
            raise ScopeError(f"Scope {text!r} is not valid: only v2 scopes (e.g. .rs) may carry a query.")
        pairs = parse_qsl(query_text, keep_blank_values=True)
        if not pairs or any(not k or not v for k, v in pairs):
            raise ScopeError(f"Scope {text!r} is not valid: the query must be name=value pairs.")
        query = tuple(sorted(pairs))
    return Scope(text, ResourceScope(context, res_type, perms, query, v1))


def parse_scopes(text: str | Iterable[str] | None) -> ScopeSet:
    items = text.split() if isinstance(text, str) else list(text or ())
    seen: dict[str, Scope] = {}
    for item in items:
        if item not in seen:
            seen[item] = parse_scope(item)
    return ScopeSet(tuple(seen.values()))


@dataclass(frozen=True)
class ScopeSet:
    """An ordered set of scopes (duplicates dropped, original spelling kept)."""

    scopes: tuple[Scope, ...] = ()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.scopes)

    def __len__(self) -> int:
        return len(self.scopes)

    def __contains__(self, raw: object) -> bool:
        return any(s.raw == raw for s in self.scopes)

    def __str__(self) -> str:
        return " ".join(s.raw for s in self.scopes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.raw for s in self.scopes)

    @property
    def resource_scopes(self) -> tuple[ResourceScope, ...]:
        return tuple(s.resource for s in self.scopes if s.resource is not None)

    def covers(self, scope: Scope) -> bool:
        return any(mine.covers(scope) for mine in self.scopes)

    def is_subset_of(self, other: ScopeSet) -> bool:
        """Every scope here is granted by some scope of ``other`` (refresh and consent rule)."""
        return all(other.covers(s) for s in self.scopes)

    def uncovered_by(self, other: ScopeSet) -> tuple[Scope, ...]:
        return tuple(s for s in self.scopes if not other.covers(s))

    def restrict_to(self, allowed: ScopeSet) -> ScopeSet:
        return ScopeSet(tuple(s for s in self.scopes if allowed.covers(s)))

    def with_(self, *extra: Scope) -> ScopeSet:
        return parse_scopes([*self.names, *(s.raw for s in extra)])

    def has(self, raw: str) -> bool:
        return raw in self

    def contexts(self) -> set[str]:
        return {r.context for r in self.resource_scopes}


def describe(scope: Scope) -> str:
    """The consent page's plain-language sentence for one scope."""
    if scope.resource is None:
        return CONTEXT_SCOPES.get(scope.raw, f"The app asks for {scope.raw!r}, which this server does not use.")
    r = scope.resource
    words = [LETTER_WORDS[c] for c in PERMISSION_ORDER if c in r.perms]
    verbs = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    what = "all kinds of records" if r.res_type == "*" else f"{_plural(r.res_type)} ({r.res_type})"
    text = f"{verbs.capitalize()} {what} {CONTEXT_WORDS[r.context]}"
    if r.query:
        parts = []
        for key, value in r.query:
            code = value.split("|")[-1]
            parts.append(f"{key} {code}")
        text += ", only where " + " and ".join(parts)
    return text + "."


def _plural(res_type: str) -> str:
    words = re.sub(r"(?<!^)([A-Z])", r" \1", res_type).lower()
    if words.endswith("s"):
        return words
    if words.endswith("y") and not words.endswith("ey"):
        return words[:-1] + "ies"
    return words + "s"


def category_alternatives(scope: Scope) -> tuple[tuple[Scope, str], ...]:
    """Narrower category scopes the user may grant instead of a v2 resource-level read/search scope."""
    r = scope.resource
    if r is None or r.v1 or r.query or r.res_type not in CATEGORY_CHOICES or not (r.perms & {"r", "s"}):
        return ()
    letters = "".join(c for c in "rs" if c in r.perms)
    out = []
    for token, label in CATEGORY_CHOICES[r.res_type]:
        alt = parse_scope(f"{r.context}/{r.res_type}.{letters}?category={token}")
        out.append((alt, label))
    return tuple(out)
