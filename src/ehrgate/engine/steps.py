"""Channel steps: plain Python functions by import path, and built-in steps registered by name.

A step takes one ``Work`` (the message on its way through the channel) and returns the list of
works that continue: ``[work]`` to pass it on, ``[]`` to filter it out, several to split it.

User functions (``filter:`` / ``transform:`` entries given as ``package.module:function``):

* a filter is ``def f(message) -> bool`` (False filters the message out);
* a transformer is ``def t(message) -> None | Message | list[Message]`` (None: changed in place;
  a list: the message is split into those messages).

A function with a second parameter also receives the ``Work`` (to set ``work.destinations`` or
``work.bundle``). Built-in steps take options from their mapping, e.g.
``{step: set_field, path: MSH-5, value: HUB}``. Register more with ``register_step(name, factory)``,
or from an installed package through the entry point group ``ehrgate.steps`` (``PLUGIN_GROUP``);
a factory takes ``(options, base_dir)`` and returns the step, raising ChannelConfigError for bad
options. ``hl7_to_fhir`` is reserved for the HL7 v2 → FHIR conversion (its own package, ``convert``):
it becomes available as soon as ``ehrgate.convert`` provides ``hl7_to_fhir(message) -> Bundle``.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ..hl7 import HL7Error, Message, parse
from ..hl7.charset import charset_for, codec_for
from .config import known_options
from .errors import ChannelConfigError, StepError

__all__ = ["STEPS", "Step", "Work", "register_step", "resolve_steps"]


@dataclass
class Work:
    """One message on its way through a channel's steps."""

    message: Message
    destinations: list[str] | None = None
    """Destinations to deliver to; None means all of the channel's destinations."""
    bundle: dict[str, Any] | None = None
    """The FHIR transaction Bundle a conversion step produced (for the FHIR destinations)."""
    notes: list[str] = field(default_factory=list)
    channel: str = ""
    message_id: int | None = None
    """The message-store id (None in ``ehrgate channel test``)."""
    received_at: int | None = None
    """When the engine stored the message (ms since the epoch; None in ``ehrgate channel test``)."""


Step = Callable[[Work], list[Work]]
StepFactory = Callable[[Mapping[str, Any], Path], Step]

STEPS: dict[str, StepFactory] = {}


def register_step(name: str, factory: StepFactory) -> None:
    """Make ``{step: name, ...}`` available in channel declarations."""
    STEPS[name] = factory


PLUGIN_GROUP = "ehrgate.steps"
"""Entry point group through which installed packages offer steps: ``name = package.module:factory``
(the factory as for ``register_step``). Built-in and explicitly registered names win."""

_plugins: dict[str, Any] | None = None


def _installed_steps() -> dict[str, Any]:
    """The entry points of ``PLUGIN_GROUP`` by name, read once (each is imported when a channel uses it)."""
    global _plugins
    if _plugins is None:
        from importlib.metadata import entry_points

        _plugins = {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}
    return _plugins


def _plugin_step(name: str) -> bool:
    """Register step ``name`` from an installed package, if one offers it; False when none does."""
    ep = _installed_steps().get(name)
    if ep is None:
        return False
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin: name it and the package, no traceback
        package = ep.dist.name if getattr(ep, "dist", None) is not None else "an installed package"
        raise ChannelConfigError(f"step {name!r} (entry point {ep.value!r} of {package}) cannot be loaded: "
                                 f"{type(exc).__name__}: {exc}. Reinstall or fix that package.") from None
    if not callable(factory):
        raise ChannelConfigError(f"step {name!r}: entry point {ep.value!r} is not a step factory (a callable "
                                 "taking (options, base_dir)).")
    register_step(name, factory)
    return True


def _opt(options: Mapping[str, Any], key: str, kind: type | tuple[type, ...], step: str) -> Any:
    value = options.get(key)
    if not isinstance(value, kind):
        raise ChannelConfigError(f"step {step!r} option {key!r} has value {value!r}. Expected "
                                 f"{getattr(kind, '__name__', kind)}.")
    return value


def _check_path(path: str, step: str) -> str:
    try:
        parse("MSH|^~\\&|\r").get(path)
    except HL7Error as exc:
        raise ChannelConfigError(f"step {step!r} path {path!r}: {exc.message}") from None
    return path


def _set(work: Work, path: str, value: str) -> None:
    try:
        work.message.set(path, value)
    except HL7Error as exc:
        raise StepError(f"Cannot set {path}: {exc.message}") from None


# -- built-in steps ------------------------------------------------------------------------------


def _set_field(options: Mapping[str, Any], base: Path) -> Step:
    known_options(options, ("path", "value"), "the set_field step")
    path = _check_path(_opt(options, "path", str, "set_field"), "set_field")
    value = str(options.get("value", ""))

    def step(work: Work) -> list[Work]:
        _set(work, path, value)
        return [work]
    return step


def _copy_field(options: Mapping[str, Any], base: Path) -> Step:
    known_options(options, ("from", "to"), "the copy_field step")
    src = _check_path(_opt(options, "from", str, "copy_field"), "copy_field")
    dst = _check_path(_opt(options, "to", str, "copy_field"), "copy_field")

    def step(work: Work) -> list[Work]:
        _set(work, dst, work.message.get(src))
        return [work]
    return step


def _remove_field(options: Mapping[str, Any], base: Path) -> Step:
    known_options(options, ("path",), "the remove_field step")
    path = _check_path(_opt(options, "path", str, "remove_field"), "remove_field")

    def step(work: Work) -> list[Work]:
        if work.message.segment(path.split("-")[0].split("[")[0]) is not None:
            try:
                work.message.set_er7(path, "")
            except HL7Error as exc:
                raise StepError(f"Cannot remove {path}: {exc.message}") from None
        return [work]
    return step


def _remove_segment(options: Mapping[str, Any], base: Path) -> Step:
    known_options(options, ("segment",), "the remove_segment step")
    name = _opt(options, "segment", str, "remove_segment")
    if not re.fullmatch(r"[A-Z0-9]{3}", name) or name == "MSH":
        raise ChannelConfigError(f"step 'remove_segment' segment {name!r}. Expected a segment id such as 'NTE' "
                                 "(not MSH).")

    def step(work: Work) -> list[Work]:
        msg = work.message
        for i in reversed(range(1, len(msg))):
            if msg.segments[i].name == name:
                msg.remove_segment(i)
        return [work]
    return step


def load_table(path: Path) -> dict[str, str]:
    """A code map from CSV (two columns: from,to; a header row 'from,to' is skipped) or YAML (a mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelConfigError(f"mapping table {str(path)!r} cannot be read: {exc.strerror}. Expected a CSV "
                                 "or YAML file (relative paths are read from the config file's directory).") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ChannelConfigError(f"mapping table {str(path)!r} must hold a mapping of code to code.")
        return {str(k): str(v) for k, v in data.items()}
    table: dict[str, str] = {}
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or (n == 1 and [c.strip().lower() for c in row[:2]] == ["from", "to"]):
            continue
        if len(row) < 2:
            raise ChannelConfigError(f"mapping table {str(path)!r} line {n} has {len(row)} column(s). Expected "
                                     "two: from,to.")
        table[row[0].strip()] = row[1].strip()
    return table


def _map_table(options: Mapping[str, Any], base: Path) -> Step:
    known_options(options, ("path", "to", "table", "default", "on_missing"), "the map_table step")
    path = _check_path(_opt(options, "path", str, "map_table"), "map_table")
    target = _check_path(str(options.get("to", path)), "map_table")
    source = _opt(options, "table", (str, dict), "map_table")
    table = ({str(k): str(v) for k, v in source.items()} if isinstance(source, dict)
             else load_table((base / source) if not Path(source).is_absolute() else Path(source)))
    default = options.get("default")  # None: keep the value; a string: use it for unmapped codes
    on_missing = options.get("on_missing", "keep")
    if on_missing not in ("keep", "error"):
        raise ChannelConfigError(f"step 'map_table' on_missing has value {on_missing!r}. Expected keep or error.")

    def step(work: Work) -> list[Work]:
        value = work.message.get(path)
        if value in table:
            _set(work, target, table[value])
        elif on_missing == "error":
            raise StepError(f"{path} value {value!r} is not in the mapping table (add it, or set on_missing: keep)")
        elif default is not None:
            _set(work, target, str(default))
        return [work]
    return step


def _match(options: Mapping[str, Any], base: Path) -> Step:
    """A filter: keep the message when the value at ``path`` equals / is in / matches."""
    known_options(options, ("path", "equals", "in", "regex", "not"), "the match step")
    path = _check_path(_opt(options, "path", str, "match"), "match")
    values = options.get("in", options.get("equals"))
    pattern = options.get("regex")
    if values is None and pattern is None:
        raise ChannelConfigError("step 'match' needs 'equals', 'in' or 'regex'.")
    allowed = None if values is None else ({str(values)} if not isinstance(values, list) else {str(v) for v in values})
    rx = re.compile(str(pattern)) if pattern is not None else None
    negate = bool(options.get("not", False))

    def step(work: Work) -> list[Work]:
        value = _type_of(work.message) if path in ("MSH-9", "type") else work.message.get(path)
        ok = (allowed is None or value in allowed) and (rx is None or rx.search(value) is not None)
        return [work] if ok != negate else []
    return step


def _type_of(msg: Message) -> str:
    return msg.message_type + ("^" + msg.trigger_event if msg.trigger_event else "")


def _route(options: Mapping[str, Any], base: Path) -> Step:
    """Choose destinations by message type (``by: type``, the default) or the value at a path."""
    known_options(options, ("by", "routes", "default"), "the route step")
    by = options.get("by", "type")
    if by != "type":
        _check_path(by, "route")
    routes = options.get("routes")
    if not isinstance(routes, Mapping) or not routes:
        raise ChannelConfigError("step 'route' option 'routes' must map values to destination lists, e.g. "
                                 "{'ADT^A01': [store], 'ORU': [lab]}.")
    table = {str(k): [v] if isinstance(v, str) else list(v) for k, v in routes.items()}
    default = options.get("default", [])
    default = [default] if isinstance(default, str) else list(default)

    def step(work: Work) -> list[Work]:
        value = _type_of(work.message) if by == "type" else work.message.get(by)
        chosen = table.get(value)
        if chosen is None and by == "type":
            chosen = table.get(work.message.message_type)
        chosen = default if chosen is None else chosen
        work.destinations = [d for d in chosen if work.destinations is None or d in work.destinations]
        return [work] if work.destinations else []
    step.destinations = {d for v in table.values() for d in v} | set(default)  # type: ignore[attr-defined]
    return step


def _split(options: Mapping[str, Any], base: Path) -> Step:
    """One message per group that starts at ``segment`` (e.g. OBR); the segments before the first
    group (MSH, PID, PV1...) are repeated in each; MSH-10 gets ``-n`` appended. An ORC right before
    a group's segment belongs to that group: HL7 order groups (ORU^R01, ORM^O01, OML^O21) begin
    with the ORC of their OBR - repeating the first one in every child gave each child the first
    order's numbers, so converting the children overwrote one report with the next. Children keep
    the parent's character set: re-parsed from text without it, a Latin-1 batch's children were
    stored and sent as UTF-8; a parent read by the fallback codec (bytes not valid in its MSH-18
    set) gives children whose MSH-18 names the set they are in."""
    known_options(options, ("segment",), "the split step")
    name = _opt(options, "segment", str, "split")
    if not re.fullmatch(r"[A-Z0-9]{3}", name) or name == "MSH":
        raise ChannelConfigError(f"step 'split' segment {name!r}. Expected a segment id such as 'OBR'.")

    def step(work: Work) -> list[Work]:
        text = work.message.to_er7().rstrip("\r").split("\r")
        codec = codecs.lookup(work.message.codec).name
        declared = codecs.lookup(codec_for(work.message.charset) or "utf-8").name
        relabel = charset_for(codec) if codec != declared else None  # read by the fallback (hl7/charset.py)
        fs = work.message.delimiters.field
        starts = [i for i, s in enumerate(text) if s[:4] == name + fs or s == name]
        if len(starts) <= 1:
            return [work]
        if name != "ORC":
            starts = [i - 1 if i > 0 and (text[i - 1][:4] == "ORC" + fs or text[i - 1] == "ORC") else i for i in starts]
        head = text[:starts[0]]
        out = []
        for n, (a, b) in enumerate(zip(starts, starts[1:] + [len(text)], strict=True), start=1):
            child = parse("\r".join(head + text[a:b]) + "\r", charset=codec)
            child.set("MSH-10", f"{work.message.control_id}-{n}")
            if relabel:
                child.set("MSH-18", relabel)
            out.append(Work(child, None if work.destinations is None else list(work.destinations),
                            channel=work.channel, message_id=work.message_id, received_at=work.received_at))
        return out
    return step


_SYSTEMS = {
    "identifier_systems": "assigning authority (CX-4.1, EI-2, HD-1) to system URI, e.g. "
                          "{GHH: 'urn:oid:2.16.840.1.113883.3.72'}",
    "code_systems": "coding system name (CWE-3) to system URI, e.g. {LN: 'http://loinc.org'}",
}


def _conversion_options(options: Mapping[str, Any], conversion_options: Callable[..., Any]) -> Any:
    """ConversionOptions from the step's options, each of the type ConversionOptions expects
    (convert/options.py). Unchecked, ``patient_updates: ADT`` became the letters A, D and T, and
    ``identifier_systems: GHH`` loaded and then failed every message."""
    known_options(options, ("timezone", "identifier_systems", "code_systems", "patient_updates"),
                  "the hl7_to_fhir step")
    kwargs: dict[str, Any] = {}
    zone = options.get("timezone")
    if zone is not None:
        if not isinstance(zone, str):
            raise ChannelConfigError(f"step 'hl7_to_fhir' option 'timezone' has value {zone!r}. Expected an IANA "
                                     "time zone such as 'Europe/London', 'UTC' or an offset such as '+05:30'.")
        kwargs["timezone"] = zone
    for key, expected in _SYSTEMS.items():
        if key not in options:
            continue
        value = options[key]
        if not isinstance(value, Mapping):
            raise ChannelConfigError(f"step 'hl7_to_fhir' option {key!r} has value {value!r}. Expected a mapping "
                                     f"of {expected}.")
        for name, uri in value.items():
            if not isinstance(name, str) or not isinstance(uri, str) or not uri:
                raise ChannelConfigError(f"step 'hl7_to_fhir' option {key!r} maps {name!r} to {uri!r}. Expected "
                                         f"text to text: {expected}.")
        kwargs[key] = dict(value)
    if "patient_updates" in options:
        codes = options["patient_updates"]
        if not isinstance(codes, list) or not all(isinstance(c, str) and re.fullmatch(r"[A-Z0-9]{3}", c)
                                                  for c in codes):
            raise ChannelConfigError(f"step 'hl7_to_fhir' option 'patient_updates' has value {codes!r}. Expected "
                                     "a list of message codes (MSH-9.1) whose PID replaces the stored Patient, "
                                     "e.g. [ADT].")
        kwargs["patient_updates"] = frozenset(codes)
    try:
        return conversion_options(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ChannelConfigError(f"step 'hl7_to_fhir' options are not valid: {exc}") from None


def _hl7_to_fhir(options: Mapping[str, Any], base: Path) -> Step:
    """HL7 v2 → FHIR R4 (``ehrgate.convert``): sets ``work.bundle``. Options: ``timezone``,
    ``identifier_systems``, ``code_systems``, ``patient_updates`` (see docs/convert.md)."""
    try:
        convert = importlib.import_module("ehrgate.convert")
        fn = convert.hl7_to_fhir
        conversion_options = convert.ConversionOptions
    except (ImportError, AttributeError):
        raise ChannelConfigError("step 'hl7_to_fhir' is not available (the HL7 v2 → FHIR conversion package "
                                 "is missing). Expected: remove the step; the FHIR store destination then stores "
                                 "the message without resources.") from None
    opts = _conversion_options(options, conversion_options)

    def step(work: Work) -> list[Work]:
        ref = str(work.message_id) if work.message_id is not None else "channel-test"
        use = opts
        if work.received_at is not None and opts.received_at is None and not work.message.get("MSH-7"):
            # MSH-7 is required but some senders leave it empty: the time the engine received the
            # message stands in for it (docs/convert.md), rather than failing the message.
            use = replace(opts, received_at=datetime.fromtimestamp(work.received_at / 1000, UTC)
                          .isoformat(timespec="milliseconds"))
        result = fn(work.message, channel=work.channel, message_ref=ref, options=use)
        work.bundle = result.bundle
        return [work]
    return step


for _name, _factory in {"set_field": _set_field, "copy_field": _copy_field, "remove_field": _remove_field,
                        "remove_segment": _remove_segment, "map_table": _map_table, "match": _match,
                        "route": _route, "split": _split, "hl7_to_fhir": _hl7_to_fhir}.items():
    register_step(_name, _factory)


def hl7_to_fhir_available() -> bool:
    try:
        _hl7_to_fhir({}, Path("."))
        return True
    except ChannelConfigError:
        return False


# -- user functions ------------------------------------------------------------------------------


def import_function(path: str) -> Callable[..., Any]:
    """'package.module:function' or 'package.module.function' → the function."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ChannelConfigError(f"{path!r} is not an import path. Expected 'package.module:function'.")
    try:
        fn = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        raise ChannelConfigError(f"{path!r} cannot be imported: module {exc.name!r} is not found. Expected a "
                                 "module on the Python path (PYTHONPATH or an installed package).") from None
    except AttributeError:
        raise ChannelConfigError(f"{path!r}: module {module!r} has no {name!r}.") from None
    except Exception as exc:  # noqa: BLE001 - an import that fails is a configuration problem
        raise ChannelConfigError(f"{path!r} failed to import: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise ChannelConfigError(f"{path!r} is not a function.")
    return fn  # type: ignore[no-any-return]


def _wants_work(fn: Callable[..., Any]) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


def _user_filter(fn: Callable[..., Any]) -> Step:
    two = _wants_work(fn)

    def step(work: Work) -> list[Work]:
        keep = fn(work.message, work) if two else fn(work.message)
        return [work] if keep else []
    return step


def _user_transformer(fn: Callable[..., Any], label: str) -> Step:
    two = _wants_work(fn)

    def step(work: Work) -> list[Work]:
        result = fn(work.message, work) if two else fn(work.message)
        if result is None:
            return [work]
        if isinstance(result, Message):
            work.message = result
            return [work]
        if isinstance(result, list) and all(isinstance(m, Message) for m in result):
            return [Work(m, None if work.destinations is None else list(work.destinations), work.bundle,
                         channel=work.channel, message_id=work.message_id, received_at=work.received_at)
                    for m in result]
        raise StepError(f"{label} returned {type(result).__name__}. Expected None, a Message or a list of Messages.")
    return step


@dataclass(frozen=True)
class ResolvedStep:
    label: str
    run: Step


def _resolve(spec: Any, kind: str, base: Path) -> ResolvedStep:
    if isinstance(spec, Mapping) and "step" in spec:
        name = spec["step"]
        if name not in STEPS and not (isinstance(name, str) and _plugin_step(name)):
            known = sorted({*STEPS, *_installed_steps()})
            raise ChannelConfigError(f"step {name!r} is not known. Expected one of: {', '.join(known)}, "
                                     "or 'function: package.module:function'.")
        options = {k: v for k, v in spec.items() if k != "step"}
        try:
            return ResolvedStep(str(name), STEPS[name](options, base))
        except ChannelConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a factory that trips over its options: say which, no traceback
            raise ChannelConfigError(f"step {name!r} cannot use its options {options!r}: {type(exc).__name__}: "
                                     f"{exc}") from None
    path = spec["function"] if isinstance(spec, Mapping) else spec
    if isinstance(spec, Mapping):
        known_options({k: v for k, v in spec.items() if k != "function"}, (), f"the function step {str(path)!r}")
    if isinstance(path, str) and path in STEPS:
        return ResolvedStep(path, STEPS[path]({}, base))
    fn = import_function(str(path))
    return ResolvedStep(str(path), _user_filter(fn) if kind == "filter" else _user_transformer(fn, str(path)))


def resolve_steps(cfg: Any, problems: list[str] | None = None) -> tuple[list[ResolvedStep], list[ResolvedStep]]:
    """(filters, transformers) of a channel. Every bad step is named by its place ('transform[1]: ...'):
    appended to ``problems`` when given (the steps that resolve are returned), else all raised together
    as one ChannelConfigError."""
    found: list[str] = []
    resolved: dict[str, list[ResolvedStep]] = {"filter": [], "transform": []}
    names = {d.name for d in cfg.destinations}
    for kind, specs in (("filter", cfg.filters), ("transform", cfg.transformers)):
        for i, spec in enumerate(specs):
            try:
                step = _resolve(spec, kind, cfg.base_dir)
            except ChannelConfigError as exc:
                found.append(f"{kind}[{i}]: {exc.message}")
                continue
            wanted: set[str] = getattr(step.run, "destinations", set())
            unknown = wanted - names
            if unknown:
                found.append(f"{kind}[{i}]: step {step.label!r} routes to {', '.join(sorted(unknown))}, which the "
                             f"channel does not declare. Expected one of: {', '.join(sorted(names))}.")
            resolved[kind].append(step)
    if problems is not None:
        problems.extend(found)
    elif found:
        raise ChannelConfigError("; ".join(found))
    return resolved["filter"], resolved["transform"]
