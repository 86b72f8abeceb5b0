"""Compile parsed searches to SQL text with bound parameters.

Search used SQLAlchemy expressions at first; building and cache-keying them cost ~5 ms of a 6 ms
search while the SQL itself ran in ~0.3 ms (bench/RESULTS.md). This compiler writes the same SQL
as text, every value a named bind parameter (``:p0`` — turned into ``%(p0)s`` for psycopg), so
nothing from a request is ever spliced into the statement.

Each clause becomes ``r.pk IN (SELECT res_pk FROM idx_<type> WHERE ...)``; see
``engine._drives`` for why the resource-type equality is sometimes left out.
"""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Any

from ..errors import InvalidSearch
from .query import MIN_MS, Clause, ParsedQuery, Value

__all__ = ["Sql", "conditions", "sort_keys"]

_TABLE_FOR = {
    "string": "idx_string",
    "token": "idx_token",
    "reference": "idx_reference",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "composite": "idx_composite",
}
_SORT_COLUMN = {"string": "norm", "token": "code", "reference": "target_id", "date": "low", "number": "value",
                "quantity": "value", "uri": "uri"}
_NAMED = re.compile(r":(\w*p\d+)\b")


class Sql:
    """Collects bind parameters while SQL text is written."""

    def __init__(self, prefix: str = "") -> None:
        self.params: dict[str, Any] = {}
        self.prefix = prefix
        """Distinguishes names when several compiled fragments share one statement."""
        self._alias = 0

    def p(self, value: Any) -> str:
        name = f"{self.prefix}p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def alias(self) -> str:
        self._alias += 1
        return f"{self.prefix}x{self._alias}"

    @staticmethod
    def render(text: str, pg: bool) -> str:
        if not pg:
            return text
        return _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))


def _starts_with(q: Sql, column: str, value: str) -> str:
    """Prefix match an index can serve: a range on the column (``'smi' <= x < 'smj'``) narrows
    through the b-tree, LIKE keeps the answer exact. SQLite cannot use an index for a plain
    ``LIKE … ESCAPE`` on a column without NOCASE collation."""
    like = f"{column} LIKE {q.p(_like_prefix(value))} ESCAPE '\\'"
    if not value or ord(value[-1]) >= 0x10FFFF:
        return like
    upper = value[:-1] + chr(ord(value[-1]) + 1)
    return f"({column} >= {q.p(value)} AND {column} < {q.p(upper)} AND {like})"


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_contains(value: str) -> str:
    return "%" + _like_prefix(value)


def _date(q: Sql, low: str, high: str, v: Value) -> str:
    sl, sh = q.p(int(v.low)), q.p(int(v.high))
    p = v.prefix
    if p == "eq":
        return f"({low} >= {sl} AND {high} <= {sh})"
    if p == "ne":
        return f"({low} < {sl} OR {high} > {sh})"
    if p == "gt":
        return f"{high} > {sh}"
    if p == "lt":
        return f"{low} < {sl}"
    if p == "ge":
        return f"{high} >= {sl}"
    if p == "le":
        return f"{low} <= {sh}"
    if p == "sa":
        return f"{low} > {sh}"
    if p == "eb":
        return f"{high} < {sl}"
    if p == "ap":
        now = time.time_ns() // 1_000_000
        gap = max(abs(now - int(v.low)) // 10, 86_400_000)
        return f"({low} <= {q.p(int(v.high) + gap)} AND {high} >= {q.p(int(v.low) - gap)})"
    raise InvalidSearch(f"Prefix {p!r} is not supported.")


def _number(q: Sql, col: str, v: Value) -> str:
    p = v.prefix
    if p == "eq":
        return f"({col} >= {q.p(v.low)} AND {col} < {q.p(v.high)})"
    if p == "ne":
        return f"({col} < {q.p(v.low)} OR {col} >= {q.p(v.high)})"
    if p in ("gt", "sa"):
        return f"{col} > {q.p(v.number)}"
    if p in ("lt", "eb"):
        return f"{col} < {q.p(v.number)}"
    if p == "ge":
        return f"{col} >= {q.p(v.number)}"
    if p == "le":
        return f"{col} <= {q.p(v.number)}"
    if p == "ap":
        delta = abs(v.number) * 0.1
        return f"({col} >= {q.p(v.number - delta)} AND {col} <= {q.p(v.number + delta)})"
    raise InvalidSearch(f"Prefix {p!r} is not supported.")


def _token(q: Sql, a: str, v: Value, code: str = "code", system: str = "system") -> str:
    if v.any_system:
        return f"{a}.{code} = {q.p(v.code)}"
    if v.system is None and v.code is not None:  # |code: explicitly no system
        return f"({a}.{code} = {q.p(v.code)} AND {a}.{system} IS NULL)"
    if v.code is None:  # system|
        return f"{a}.{system} = {q.p(v.system)}"
    # A plain ``code`` element (Patient.gender) is indexed without a system; its system is implied
    # by the element's required binding, so system|code matches it too.
    return f"({a}.{code} = {q.p(v.code)} AND ({a}.{system} = {q.p(v.system)} OR {a}.{system} IS NULL))"


def _value(q: Sql, clause: Clause, a: str, v: Value) -> str:
    kind = clause.param.type
    mod = clause.modifier
    if kind == "string":
        if mod == "exact":
            decomposed = v.text if v.text.isascii() else unicodedata.normalize("NFD", v.text)
            if decomposed != v.text:  # rows indexed before ``exact`` was kept in NFC hold the client's form
                return f"{a}.exact IN ({q.p(v.text)}, {q.p(decomposed)})"
            return f"{a}.exact = {q.p(v.text)}"
        if mod == "contains":
            return f"{a}.norm LIKE {q.p(_like_contains(v.text))} ESCAPE '\\'"
        return _starts_with(q, f"{a}.norm", v.text)
    if kind == "token":
        if mod == "text":
            return _starts_with(q, f"{a}.text", v.text)
        if mod == "of-type":
            pieces = (v.text or "").split("|")
            if len(pieces) != 3:
                raise InvalidSearch(f"':of-type' takes system|code|value, not {v.text!r}.")
            return (f"({a}.type_system = {q.p(pieces[0])} AND {a}.type_code = {q.p(pieces[1])} "
                    f"AND {a}.code = {q.p(pieces[2])})")
        return _token(q, a, v)
    if kind == "reference":
        if v.url is not None:
            return f"{a}.url = {q.p(v.url)}"
        if v.target_type:
            return f"({a}.target_id = {q.p(v.target_id)} AND {a}.target_type = {q.p(v.target_type)})"
        return f"{a}.target_id = {q.p(v.target_id)}"
    if kind == "date":
        return _date(q, f"{a}.low", f"{a}.high", v)
    if kind == "number":
        return _number(q, f"{a}.value", v)
    if kind == "quantity":
        cond = _number(q, f"{a}.value", v)
        if v.system and v.code:
            return f"({cond} AND {a}.system = {q.p(v.system)} AND {a}.code = {q.p(v.code)})"
        if v.code:
            unit = q.p(v.code)
            return f"({cond} AND ({a}.code = {unit} OR {a}.unit = {unit}))"
        return cond
    if kind == "uri":
        if mod == "below":
            return _starts_with(q, f"{a}.uri", v.text)
        if mod == "above":
            return f"{q.p(v.text)} LIKE ({a}.uri || '%')"
        return f"{a}.uri = {q.p(v.text)}"
    if kind == "composite":
        token, other = v.parts
        first = _token(q, a, token)
        if other.number or other.prefix != "eq" or other.low or other.high:
            second = _number(q, f"{a}.value", other)
            if other.code:
                unit = q.p(other.code)
                second = f"({second} AND ({a}.value_code = {unit} OR {a}.value_unit = {unit}))"
        else:
            second = _token(q, a, other, "value_code", "value_system")
        return f"({first} AND {second})"
    raise InvalidSearch(f"Search parameter type {kind!r} is not supported.")


def drives(clause: Clause) -> bool:
    """True when the clause is ``pk IN (index rows of this type)`` (so it pins the type)."""
    if clause.has is not None or clause.param.code in ("_id", "_lastUpdated"):
        return False
    if clause.missing is True or (clause.param.type == "token" and clause.modifier == "not"):
        return False
    return True


def _selectivity(clause: Clause) -> int:
    """Lower = likely fewer matches. References (subject, patient) and identifiers pick out a
    handful of rows; codes, categories and statuses can match a large share of a big store."""
    kind = clause.param.type
    if kind == "reference" and clause.chain is None:
        return 0
    if kind == "token" and clause.param.code == "identifier":
        return 0
    if kind == "string":
        return 1
    if kind in ("date", "number", "quantity", "uri", "composite"):
        return 2
    return 3


def _clause(q: Sql, res_type: str, clause: Clause, r: str, exists: bool = False) -> str:
    param = clause.param
    code = param.code
    if clause.has is not None:
        assert clause.chain is not None
        source, ref_code = clause.has
        a = q.alias()
        inner = pk_select(q, clause.chain)
        return (f"{r}.res_id IN (SELECT {a}.target_id FROM idx_reference {a} WHERE {a}.res_type = {q.p(source)} "
                f"AND {a}.param = {q.p(ref_code)} AND {a}.target_type = {q.p(res_type)} AND {a}.res_pk IN ({inner}))")
    if clause.chain is not None:
        a, b = q.alias(), q.alias()
        inner = pk_select(q, clause.chain)
        types = ", ".join(q.p(t) for t in clause.chain_types)
        return (f"{r}.pk IN (SELECT {a}.res_pk FROM idx_reference {a} WHERE {a}.res_type = {q.p(res_type)} "
                f"AND {a}.param = {q.p(code)} AND {a}.target_type IN ({types}) AND {a}.target_id IN "
                f"(SELECT {b}.res_id FROM resource {b} WHERE {b}.res_type = {q.p(clause.chain.res_type)} "
                f"AND {b}.deleted = {q.p(False)} AND {b}.pk IN ({inner})))")
    if code == "_id":
        if clause.missing is not None:
            return "1=1" if not clause.missing else "1=0"
        ids = ", ".join(q.p(v.code or v.text) for v in clause.values)
        return f"{r}.res_id {'NOT ' if clause.modifier == 'not' else ''}IN ({ids})"
    if code == "_lastUpdated":
        if clause.missing is not None:
            return "1=1" if not clause.missing else "1=0"
        col = f"{r}.last_updated"
        return "(" + " OR ".join(_date(q, col, col, v) for v in clause.values) + ")"
    table = _TABLE_FOR.get(param.type)
    if table is None:
        raise InvalidSearch(f"Search parameter '{code}' ({param.type}) is not supported.")
    a = q.alias()
    if exists:
        # Checked per candidate row through the (res_pk) index instead of listing every match.
        values = " OR ".join(_value(q, clause, a, v) for v in clause.values)
        return (f"EXISTS (SELECT 1 FROM {table} {a} WHERE {a}.res_pk = {r}.pk AND {a}.res_type = {q.p(res_type)} "
                f"AND {a}.param = {q.p(code)} AND ({values}))")
    base = f"SELECT {a}.res_pk FROM {table} {a} WHERE {a}.res_type = {q.p(res_type)} AND {a}.param = {q.p(code)}"
    if clause.missing is not None:
        return f"{r}.pk {'NOT ' if clause.missing else ''}IN ({base})"
    values = " OR ".join(_value(q, clause, a, v) for v in clause.values)
    negate = param.type == "token" and clause.modifier == "not"
    return f"{r}.pk {'NOT ' if negate else ''}IN ({base} AND ({values}))"


def conditions(
    q: Sql,
    query: ParsedQuery,
    r: str = "r",
    compartment: str | None = None,
    alternatives: tuple[ParsedQuery, ...] = (),
    candidates: list[int] | None = None,
    skip: Clause | None = None,
) -> list[str]:
    """WHERE conditions on ``resource`` aliased ``r``; ``alternatives`` must match at least one.

    ``candidates`` (resource pks already known to satisfy ``skip``) lead instead of any clause: the
    other clauses are then checked per candidate row."""
    conds = [f"{r}.deleted = {q.p(False)}"]
    clauses = [c for c in query.clauses if c is not skip]
    driving = [c for c in clauses if drives(c)]
    if not driving and compartment is None and candidates is None:
        # (Candidates come from this type's index rows; naming the type again would tempt SQLite
        # to walk the type's index instead of looking the candidates up by pk.)
        conds.append(f"{r}.res_type = {q.p(query.res_type)}")
    # The most selective positive clause lists its matches; the other plain ones are checked per
    # row with EXISTS, so a broad clause (a common code) never has to be listed in full.
    lead = min(driving, key=_selectivity) if driving else None
    if compartment is not None or candidates is not None:
        lead = None  # the compartment list (or the candidates) leads
    if candidates is not None:
        conds.append(f"{r}.pk IN ({', '.join(str(int(pk)) for pk in candidates) or 'NULL'})")
    pinned = lead is not None or compartment is not None or candidates is not None
    for c in clauses:
        plain = drives(c) and c.chain is None and c.missing is None
        use_exists = (c is not lead and plain) if pinned else False
        conds.append(_clause(q, query.res_type, c, r, exists=use_exists))
    if alternatives:
        options = []
        for alt in alternatives:
            parts = [_clause(q, alt.res_type, c, r) for c in alt.clauses]
            options.append("(" + (" AND ".join(parts) or "1=1") + ")")
        conds.append("(" + " OR ".join(options) + ")")
    if compartment is not None:
        a = q.alias()
        conds.append(f"{r}.pk IN (SELECT {a}.res_pk FROM compartment {a} WHERE {a}.patient_id = {q.p(compartment)} "
                     f"AND {a}.res_type = {q.p(query.res_type)})")
    return conds


def ordered_lead(query: ParsedQuery, compartment: str | None, alternatives: tuple[ParsedQuery, ...]) -> Clause | None:
    """The clause a default-ordered search can walk in storage order, page by page, instead of
    listing all its matches first: one exact token value (``code=system|value``), when it is the
    clause that leads. A common code then costs the same on a store of 10 thousand or 10 million
    resources (the token index is ordered by (type, param, code, res_pk))."""
    if compartment is not None or alternatives or query.result.get("_sort"):
        return None
    driving = [c for c in query.clauses if drives(c)]
    if not driving:
        return None
    lead = min(driving, key=_selectivity)
    if (lead.param.type != "token" or lead.chain is not None or lead.has is not None or lead.missing is not None
            or lead.modifier or len(lead.values) != 1):
        return None
    value = lead.values[0]
    return lead if value.code is not None else None


def lead_pks(q: Sql, res_type: str, lead: Clause, bound: int | None, forward: bool, limit: int) -> str:
    """Up to ``limit`` distinct resource pks matching ``lead``, in pk order from ``bound``."""
    a = q.alias()
    text = (f"SELECT DISTINCT {a}.res_pk FROM idx_token {a} WHERE {a}.res_type = {q.p(res_type)} "
            f"AND {a}.param = {q.p(lead.param.code)} AND {_value(q, lead, a, lead.values[0])}")
    if bound is not None:
        text += f" AND {a}.res_pk {'>' if forward else '<'} {q.p(int(bound))}"
    return text + f" ORDER BY {a}.res_pk {'ASC' if forward else 'DESC'} LIMIT {int(limit)}"


def pk_select(q: Sql, query: ParsedQuery) -> str:
    r = q.alias()
    return f"SELECT {r}.pk FROM resource {r} WHERE " + " AND ".join(conditions(q, query, r))


def sort_keys(q: Sql, query: ParsedQuery, known: dict[str, Any], r: str = "r") -> list[tuple[str, bool]]:
    """(SQL expression, descending) for each ``_sort`` key; ties are broken by the caller."""
    from .query import split_values

    keys: list[tuple[str, bool]] = []
    for raw in query.result.get("_sort", []):
        for item in split_values(raw):
            item = item.strip()
            if not item:
                continue
            desc = item.startswith("-")
            code = item.lstrip("-")
            if code == "_id":
                keys.append((f"{r}.res_id", desc))
                continue
            if code == "_lastUpdated":
                keys.append((f"{r}.last_updated", desc))
                continue
            param = known.get(code)
            if param is None:
                raise InvalidSearch(f"_sort names '{code}', which is not a search parameter of {query.res_type}.")
            table = _TABLE_FOR.get(param.type)
            column = _SORT_COLUMN.get(param.type)
            if table is None or column is None:
                raise InvalidSearch(f"_sort on '{code}' ({param.type}) is not supported.")
            if param.type == "date" and desc:
                column = "high"
            a = q.alias()
            agg = "MAX" if desc else "MIN"
            sentinel = q.p("" if param.type in ("string", "token", "reference", "uri") else
                           (MIN_MS if param.type == "date" else -1e308))
            keys.append((f"COALESCE((SELECT {agg}({a}.{column}) FROM {table} {a} WHERE {a}.res_pk = {r}.pk "
                         f"AND {a}.res_type = {q.p(query.res_type)} AND {a}.param = {q.p(code)}), {sentinel})", desc))
    return keys


def after(q: Sql, keys: list[tuple[str, bool]], values: list[Any], forward: bool) -> str:
    """Keyset condition: rows strictly after ``values`` in the (possibly reversed) sort order."""
    ors = []
    for i, (expr, desc) in enumerate(keys):
        ascending = (not desc) if forward else desc
        parts = [f"{keys[j][0]} = {q.p(values[j])}" for j in range(i)]
        parts.append(f"{expr} {'>' if ascending else '<'} {q.p(values[i])}")
        ors.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(ors) + ")"
