"""SQL expressions whose spelling differs by database, compiled per dialect (SQLAlchemy's `@compiles`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class AsStored(sa.types.UserDefinedType[Any]):
    """A value exactly as the driver returns it and binds it, with no conversion by SQLAlchemy's type either way
    (`Dialect.as_stored`). A value compared with such an expression is bound in this type too (NullType would
    pick a type from the Python value: a timedelta would bind as an Interval, converted again)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        raise NotImplementedError("AsStored reads and compares values; it is no column type")


class CatalogEquality(sa.types.UserDefinedType[Any]):
    """A column type whose `=` is the catalog's operator, written out by its comparator (`Dialect.catalog_types`).
    A row-value comparison, `(a, b) IN ((..), ..)`, compares each pair with the unqualified `=` and bypasses it:
    a key holding such a column is compared column by column."""

    cache_ok = True


class _Converted(ColumnElement[Any]):
    """A value bound in the type `bound` and converted by the database, in SQL each subclass's compiler writes,
    into a value of type `result`: a conversion SQLAlchemy's `cast` would skip or spell otherwise."""

    inherit_cache = True
    _traverse_internals = [("value", InternalTraversal.dp_clauseelement)]

    def __init__(self, value: Any, bound: sa.types.TypeEngine[Any], result: sa.types.TypeEngine[Any]) -> None:
        self.value: sa.BindParameter[Any] = sa.bindparam(None, value, type_=bound)
        self.type = result


class SinglePrecision(_Converted):
    """A double rounded by the database to single precision (PostgreSQL `real`, MySQL/MariaDB `FLOAT`), the
    way it rounds a value stored in such a column; SQLAlchemy skips `CAST(... AS FLOAT)` on MySQL."""

    inherit_cache = True

    def __init__(self, value: float) -> None:
        super().__init__(value, sa.Double(), sa.Float())


@compiles(SinglePrecision)
def _single_precision(element: SinglePrecision, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.value, **kw)} AS REAL)"


@compiles(SinglePrecision, "mysql")
@compiles(SinglePrecision, "mariadb")
def _single_precision_mysql(element: SinglePrecision, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.value, **kw)} AS FLOAT)"


@compiles(SinglePrecision, "sqlite")
def _single_precision_sqlite(element: SinglePrecision, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.value, **kw))  # SQLite's REAL is a double


class InCharacterSet(ColumnElement[Any]):
    """`value` converted to a key column's character set and collation (MySQL/MariaDB: `CONVERT(.. USING cs)
    COLLATE c`), where the server's row IN does not find the column's values as `=` does (`Comparison.row_in`):
    MariaDB's row IN meets a value sent in the connection's utf8mb4 unconverted, and finds no utf16 'x' nor latin1
    'é'; converted, it finds what `=` finds (asked of a table per collation of `SHOW COLLATION`), and the look-up
    stays one sorted IN list, not a comparison per key and row."""

    inherit_cache = True
    _traverse_internals = [("value", InternalTraversal.dp_clauseelement),
                           ("character_set", InternalTraversal.dp_string),
                           ("collation", InternalTraversal.dp_string)]

    def __init__(self, value: ColumnElement[Any], character_set: str, collation: str) -> None:
        self.value = value
        self.character_set = character_set
        self.collation = collation
        self.type = value.type


@compiles(InCharacterSet)
def _in_character_set(element: InCharacterSet, compiler: Any, **kw: Any) -> str:
    return f"CONVERT({compiler.process(element.value, **kw)} USING {element.character_set}) COLLATE {element.collation}"


class StoredUuid(_Converted):
    """A MariaDB `UUID` given as its 16 stored bytes (a binary log's row), as the server's text of that UUID:
    `CAST(CAST(bytes AS UUID) AS CHAR(36))`, which the column's `=` compares as a UUID (SQLAlchemy skips a cast to
    UUID on MySQL/MariaDB, and the driver returns a cast's result as bytes)."""

    inherit_cache = True

    def __init__(self, value: bytes) -> None:
        super().__init__(value, sa.LargeBinary(), sa.String())


@compiles(StoredUuid)
def _stored_uuid(element: StoredUuid, compiler: Any, **kw: Any) -> str:
    return f"CAST(CAST({compiler.process(element.value, **kw)} AS UUID) AS CHAR(36))"


class ServerText(sa.types.UserDefinedType[str]):
    """A key value carried as the database's own text of it (`CAST(.. AS TEXT)` where it is read) and cast back to
    the column's type (`spec`, as the database names it) on the server where it is bound: for a type whose value
    the driver's Python form does not bind back as itself (`Dialect.polled_key`). A comparison with such an
    expression renders the column itself, so its index serves the lookup and its `=` decides, as in GROUP BY.
    `hashed`: the function of the type's hash operator class (`<name>(value, seed)`, 64 bits) by which a group is
    identified where equal values print apart (jsonb `1` and `1.0`), or ""."""

    cache_ok = True

    def __init__(self, spec: str, hashed: str = "") -> None:
        self.spec = spec
        self.hashed = hashed

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        return sa.cast(colexpr, sa.Text())

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return sa.cast(bindvalue, self)
