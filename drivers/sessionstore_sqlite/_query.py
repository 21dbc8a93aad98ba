"""SessionFilter and QueryOptions as SQL over the ``sessions`` table (aliased ``s``).

Exact translations of ``sessionstore.query``'s reference rules:

* exclusive time bounds with sub-millisecond precision are rounded the way that keeps the
  reference result for millisecond-precision timestamps (``t > low`` is ``t_ms >
  floor(low)``, ``t < high`` is ``t_ms < ceil(high)``); "expired" is ``expires_ms <=
  floor(now)``;
* the order is the keyset ``(sort column, id)``; sessions without ``expires_at`` sort last
  in both directions; a cursor continues strictly after its row (``query.is_after``);
* metadata equality is canonical-JSON equality (``docs/decisions.md``). SQLite's JSON
  functions decide it in SQL where their answer provably is the same: a string (type
  ``text`` and equal text; ``json_extract`` cuts a string at a NUL, so a document with
  an escaped NUL anywhere is confirmed by the canonical bytes, and a filter string
  holding one goes there directly), ``true``/``false``/``null`` (by type), an integer in
  SQLite's 64-bit range (type ``integer`` and equal value). Floats (``-0.0`` vs ``0.0``, decimal
  rounding), objects, arrays, larger integers and keys a SQLite JSON path cannot spell
  are compared by :func:`canonical_at`, registered on every connection as
  ``ss_canonical(metadata, path)``: the canonical bytes of the value, computed by
  sessionstore's own encoder, so the rule is the reference one by construction. Every
  JSON function is guarded by ``json_valid`` in a ``CASE`` (evaluated in order), so a
  corrupt row never fails a query; it is skipped and reported when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from sessionstore import QueryOptions, SessionFilter
from sessionstore.codec import canonical_json
from sessionstore.query import OrderKey

__all__ = ["after_sql", "canonical_at", "floor_ms", "order_sql", "where_sql"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT64: Final = (-(2**63), 2**63 - 1)
_META: Final = "CAST(s.metadata AS TEXT)"
#: ``json_type`` of a decoded value whose equality the canonical bytes decide.
_JSON_TYPES: Final[dict[type, str]] = {float: "real", dict: "object", list: "array"}


def _us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def floor_ms(value: datetime) -> int:
    """Milliseconds since the epoch, rounded down."""
    return _us(value) // 1000


def _ceil_ms(value: datetime) -> int:
    return -(-_us(value) // 1000)


def canonical_at(metadata: bytes | str | None, path: str) -> bytes | None:
    """``ss_canonical(metadata, path)``: the canonical JSON of the value at ``path`` (a JSON
    list of keys) in ``metadata``, or NULL when absent (or the row is not valid JSON)."""
    if metadata is None:
        return None
    try:
        node: Any = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        return None
    for part in orjson.loads(path):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return canonical_json(node)


def _spellable(part: str) -> bool:
    """A key SQLite 3.x JSON paths match as ``."key"``: it is written raw by the encoder
    (no quote, backslash or control character is escaped in it)."""
    return all(c not in '"\\' and c >= " " for c in part)


def _metadata(parts: tuple[str, ...], expected: bytes) -> tuple[str, list[Any]]:
    args: list[Any]
    value = orjson.loads(expected)
    if all(_spellable(p) for p in parts):
        path = "$" + "".join(f'."{p}"' for p in parts)
        kind = f"json_type({_META}, ?)"
        if isinstance(value, str) and "\x00" not in value:
            # json_extract cuts a string at a NUL character: a document holding one (the
            # encoder always escapes it as \u0000) is confirmed by the canonical bytes
            test = (
                f"{kind} = 'text' AND json_extract({_META}, ?) = ? AND "
                f"(instr({_META}, '\\u0000') = 0 OR ss_canonical(s.metadata, ?) = ?)"
            )
            args = [path, path, value, orjson.dumps(list(parts)), expected]
        elif value is True or value is False or value is None:
            test, args = f"{kind} = ?", [path, orjson.dumps(value).decode()]
        elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
            test = f"{kind} = 'integer' AND json_extract({_META}, ?) = ?"
            args = [path, path, value]
        else:
            want = _JSON_TYPES.get(type(value))
            test, args = "ss_canonical(s.metadata, ?) = ?", [orjson.dumps(list(parts)), expected]
            if want is not None:
                test = f"{kind} = '{want}' AND " + test
                args = [path, *args]
        return f"(CASE WHEN json_valid({_META}) THEN {test} ELSE 0 END)", args
    return "ss_canonical(s.metadata, ?) = ?", [orjson.dumps(list(parts)), expected]


def _in(column: str, values: Iterable[str]) -> tuple[str, list[Any]]:
    items = sorted(values)
    if len(items) == 1:
        return f"{column} = ?", items
    return f"{column} IN ({', '.join('?' * len(items))})", list(items)


def where_sql(
    namespace: str, flt: SessionFilter, now: datetime, driving_tag: str | None = None
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (without the keyword) selecting ``flt`` at ``now`` (less the
    ``driving_tag``, which the caller's join on ``tags`` already requires)."""
    where = ["s.namespace = ?"]
    params: list[Any] = [namespace]
    if not flt.include_expired:
        where.append("(s.expires_ms IS NULL OR s.expires_ms > ?)")
        params.append(floor_ms(now))
    if flt.ids is not None:
        if not flt.ids:
            return "0", []
        sql, args = _in("s.id", flt.ids)
        where.append(sql)
        params.extend(args)
    if flt.processor_id is not None:
        if not flt.processor_id:
            return "0", []
        sql, args = _in("s.processor_id", flt.processor_id)
        where.append(sql)
        params.extend(args)
    if flt.status is not None:
        if not flt.status:
            return "0", []
        sql, args = _in("s.status", (st.value for st in flt.status))
        where.append(sql)
        params.extend(args)
    for tag in sorted(flt.tags_all or ()):
        if tag == driving_tag:
            continue
        where.append("s.sk IN (SELECT t.sk FROM tags t WHERE t.tag = ?)")
        params.append(tag)
    if flt.tags_any is not None:
        if not flt.tags_any:
            return "0", []
        sql, args = _in("t.tag", flt.tags_any)
        where.append(f"s.sk IN (SELECT t.sk FROM tags t WHERE {sql})")
        params.extend(args)
    for column, low, high in (
        ("s.created_ms", flt.created_after, flt.created_before),
        ("s.updated_ms", flt.updated_after, flt.updated_before),
    ):
        if low is not None:
            where.append(f"{column} > ?")
            params.append(floor_ms(low))
        if high is not None:
            where.append(f"{column} < ?")
            params.append(_ceil_ms(high))
    if flt.expires_before is not None:
        where.append("(s.expires_ms IS NOT NULL AND s.expires_ms < ?)")
        params.append(_ceil_ms(flt.expires_before))
    if flt.has_events is not None:
        where.append("s.event_count > 0" if flt.has_events else "s.event_count = 0")
    for parts, expected in flt.metadata_conditions:
        sql, args = _metadata(parts, expected)
        where.append(sql)
        params.extend(args)
    return " AND ".join(where), params


def order_sql(sort_by: str, desc: bool) -> str:
    """``ORDER BY`` terms of the keyset order (missing ``expires_at`` last)."""
    d = "DESC" if desc else "ASC"
    if sort_by == "id":
        return f"s.id {d}"
    if sort_by == "expires_at":
        return f"(s.expires_ms IS NULL) ASC, s.expires_ms {d}, s.id {d}"
    column = "s.created_ms" if sort_by == "created_at" else "s.updated_ms"
    return f"{column} {d}, s.id {d}"


def after_sql(sort_by: str, desc: bool, key: OrderKey) -> tuple[str, list[Any]]:
    """Rows strictly after the keyset position ``key`` (see ``query.is_after``)."""
    op = "<" if desc else ">"
    missing, value, sid = key
    if sort_by == "id":
        return f"s.id {op} ?", [sid]
    if sort_by == "expires_at":
        if missing:
            return f"(s.expires_ms IS NULL AND s.id {op} ?)", [sid]
        return f"(s.expires_ms IS NULL OR (s.expires_ms, s.id) {op} (?, ?))", [value, sid]
    column = "s.created_ms" if sort_by == "created_at" else "s.updated_ms"
    return f"({column}, s.id) {op} (?, ?)", [value, sid]


def page_sql(
    columns: str, namespace: str, flt: SessionFilter, options: QueryOptions, now: datetime,
    after: OrderKey | None,
) -> tuple[str, list[Any]]:  # fmt: skip
    """The ordered ``SELECT`` of a listing (no ``LIMIT``), continuing after ``after``.

    A listing by ``created_at`` with a ``tags_all`` filter walks the tag's rows of
    ``tags(namespace, tag, created_ms, id)`` in order (a ``CROSS JOIN`` keeps that loop
    outside) and stops once the page is full; any other listing is ordered by a
    ``sessions`` index.
    """
    desc = options.descending
    if options.sort_by == "created_at" and flt.tags_all:
        tag = min(flt.tags_all)
        where, params = where_sql(namespace, flt, now, driving_tag=tag)
        where = f"d.namespace = ? AND d.tag = ? AND s.sk = d.sk AND {where}"
        params = [namespace, tag, *params]
        if after is not None:
            where += f" AND (d.created_ms, d.id) {'<' if desc else '>'} (?, ?)"
            params.extend((after[1], after[2]))
        d = "DESC" if desc else "ASC"
        return (
            f"SELECT {columns} FROM tags d CROSS JOIN sessions s WHERE {where} "
            f"ORDER BY d.created_ms {d}, d.id {d}",
            params,
        )
    where, params = where_sql(namespace, flt, now)
    if after is not None:
        cond, more = after_sql(options.sort_by, desc, after)
        where += " AND " + cond
        params.extend(more)
    order = order_sql(options.sort_by, desc)
    return f"SELECT {columns} FROM sessions s WHERE {where} ORDER BY {order}", params
