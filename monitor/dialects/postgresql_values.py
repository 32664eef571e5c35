"""PostgreSQL values Python's types cannot hold, read as the server's text and bound back as that text.

PostgreSQL's `date`, `timestamp` and `timestamptz` hold `infinity` and `-infinity`, and years before 1 (`BC`) and
after 9999 (up to 294276 AD); `interval` holds `infinity` from PostgreSQL 17 on; `time` and `timetz` hold
`24:00:00`, the end of a day, which `=` finds apart from `00:00:00`. Python's `date`, `datetime`, `timedelta`
and `time` hold none of them, and psycopg refuses to load such a value (`timestamp too large (after year 10K):
'infinity'`, `hour must be in 0..23`): any statement that reads one into Python (the fix's preview of a group's
rows, a group's key, a watermark) failed, though the value is valid and the fix, which moves rows inside the
database, handled it.

`register(adapters)` (on every connection dupewatch makes to PostgreSQL: `PostgreSQL.prepare_session`) wraps
psycopg's text loaders of those types: a value they load stays a `date`, `datetime`, `timedelta` or `time` as
before; a value they refuse becomes a `ServerValue`, holding the server's own text of it and its type. It prints as that
text (`infinity`, `0044-03-15 BC`) and binds back as that text in that type, so a key or a row read and written
again is the value the server holds: never clamped to `datetime.max` or otherwise altered.
"""

from __future__ import annotations

from typing import Any

from psycopg import DataError, postgres
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

from monitor.dialects.server_value import ServerValue

__all__ = ["ServerValue", "register"]

# The types whose values may lie beyond Python's, by name as psycopg's type registry knows them.
_TYPES = ("date", "timestamp", "timestamptz", "interval", "time", "timetz")


class _Dumper(Dumper):
    """A `ServerValue` bound as its text, with its own type's OID (`upgrade` picks the dumper of its type)."""

    format = Format.TEXT

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self._context = context

    def get_key(self, obj: Any, format: Any) -> Any:
        return (ServerValue, obj.type_name)

    def upgrade(self, obj: Any, format: Any) -> Dumper:
        dumper = _Dumper(ServerValue, self._context)
        info = (self._context.adapters if self._context is not None else postgres.adapters).types.get(obj.type_name)
        dumper.oid = info.oid if info is not None else 0
        return dumper

    def dump(self, obj: Any) -> Buffer:
        return str(obj.text).encode()


class _Unbounded(Loader):
    """psycopg's own text loader of `type_name` (`inner`), with a `ServerValue` for what it refuses."""

    format = Format.TEXT
    type_name = ""
    inner: Any = None  # the loader class psycopg had for the type

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._inner = self.inner(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._inner.load(data)
        except DataError:  # beyond Python's range: the server's text, which binds back as the same value
            return ServerValue(bytes(data).decode(), self.type_name)


JSON_NULL = ServerValue("null", "jsonb")  # jsonb's `null`, which is not SQL's NULL


class _JsonbNull(Loader):
    """psycopg's text loader of jsonb (`inner`), with `JSON_NULL` for a document that is JSON's `null`: loaded as
    Python's None, it bound back as SQL's NULL, and a group of `null` documents listed the rows of the group of
    NULLs (`IS NULL`), both shown as NULL."""

    format = Format.TEXT
    inner: Any = None

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._inner = self.inner(oid, context)

    def load(self, data: Buffer) -> Any:
        loaded = self._inner.load(data)
        return JSON_NULL if loaded is None else loaded


def register(adapters: Any) -> None:
    """On a psycopg connection's (or any context's) `adapters`: load values of `_TYPES` beyond Python's range as
    `ServerValue`s, and bind those back as the same values."""
    for type_name in _TYPES:
        info = adapters.types.get(type_name)
        inner = None if info is None else adapters.get_loader(info.oid, Format.TEXT)
        if inner is None or issubclass(inner, _Unbounded):
            continue
        loader = type(f"Unbounded{type_name.capitalize()}Loader", (_Unbounded,),
                      {"type_name": type_name, "inner": inner})
        adapters.register_loader(info.oid, loader)
    info = adapters.types.get("jsonb")
    inner = None if info is None else adapters.get_loader(info.oid, Format.TEXT)
    if inner is not None and not issubclass(inner, _JsonbNull):
        adapters.register_loader(info.oid, type("JsonbNullLoader", (_JsonbNull,), {"inner": inner}))
    adapters.register_dumper(ServerValue, _Dumper)
