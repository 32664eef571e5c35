"""Generic relations: a row's parent named by a pair of columns, a reference to a table of types and an id
(Django's `content_type_id, object_id`), which no foreign key can declare. Found by evidence, never by names:

- the catalog: a one-column foreign key to a *type table* (one whose text columns, under a unique key, name
  things) next to an integer column with no foreign key;
- the data: every type row the table uses names, joined with `_` (`cms` + `pagecontent`), or with its dots as
  underscores (`party.party`), a table of the catalog with a one-column integer primary key, and every id stored
  with that type is an id of that table (an anti-join that finds none).

Such a pair is the row's parent. With the table's other references and descriptive columns it names one row
(a placeholder per object and slot); the candidate is measured like any natural key and reported only when its
duplicates look like a mistake (`findings.py`). Each query here is read-only under the statement timeout: a type
table is read once (at most MAX_TYPE_ROWS rows), the other tables only by queries that stop at their first row.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.audit import dialect_catalog
from monitor.audit.candidates import Candidate, descriptive_columns, ordered, reference_columns
from monitor.audit.catalog import ForeignKeyInfo, TableInfo

MAX_TYPE_ROWS = 1_000  # a type table is small (Django's content types): a bigger one is not read as one


@dataclass(frozen=True)
class GenericPair:
    table: TableInfo
    type_column: str
    id_column: str
    parents: dict[str, str]  # type row's name columns joined -> the table its ids were all found in


def generic_candidates(conn: Connection, tables: list[TableInfo], timeout: float) -> list[Candidate]:
    """A non_unique_natural_key candidate for each table whose generic pair the data confirms; each query is
    bounded by `timeout` seconds (one that times out confirms nothing)."""
    found = []
    for pair in generic_pairs(conn, tables, timeout):
        table = pair.table
        identifying = {pair.type_column, pair.id_column} | reference_columns(table) | set(descriptive_columns(table))
        columns = ordered(table, identifying)
        if table.is_protected(columns) or len(columns) < 3:
            continue
        named = ", ".join(f"{name} ({table_name})" for name, table_name in sorted(pair.parents.items()))
        rest = ", ".join(c for c in columns if c not in (pair.type_column, pair.id_column))
        found.append(Candidate(
            "non_unique_natural_key", table, columns,
            f"({pair.type_column}, {pair.id_column}) is a generic reference: every {pair.id_column} is an id of the "
            f"table its {pair.type_column} names ({named}); with {rest} it names one row, and no unique key "
            "covers them", needs_duplicates=True))
    return found


def generic_pairs(conn: Connection, tables: list[TableInfo], timeout: float) -> list[GenericPair]:
    by_name = {t.name.lower(): t for t in tables}
    by_key = {(t.schema, t.name): t for t in tables}
    named_by: dict[tuple[str, str], dict[object, tuple[str, TableInfo]]] = {}
    found = []
    for table in tables:
        ids = [c.name for c in table.columns.values() if c.type_class == "integer" and c.name not in table.fk_columns
               and c.name not in table.primary_key and c.name not in table.bookkeeping]
        for fk in table.foreign_keys:
            types = by_key.get((fk.referred_schema, fk.referred_table))
            names = _name_columns(types, fk) if types is not None else None
            if not ids or types is None or names is None or fk.columns[0] in table.bookkeeping:
                continue
            key = (types.schema, types.name)
            if key not in named_by:  # read once per type table: its rows that name a table of the catalog
                named_by[key] = _named_tables(conn, types, names, by_name, timeout)
            if not named_by[key]:
                continue
            for id_column in ids:
                parents = _confirmed(conn, table, fk.columns[0], id_column, named_by[key], timeout)
                if parents:
                    found.append(GenericPair(table, fk.columns[0], id_column, parents))
                    break
    return found


def _name_columns(types: TableInfo, fk: ForeignKeyInfo) -> tuple[str, ...] | None:
    """The text columns of a unique key of the type table, when `fk` is a one-column reference to its one-column
    integer primary key; else None."""
    if len(fk.columns) != 1 or not types.has_surrogate_key or fk.referred_columns != types.primary_key:
        return None
    for unique in types.uniques:
        if unique.origin != "primary_key" and unique.protects \
                and all(types.columns[c].type_class == "text" and not types.columns[c].nullable
                        for c in unique.columns):
            return unique.columns
    return None


def _named_tables(conn: Connection, types: TableInfo, names: tuple[str, ...], by_name: dict[str, TableInfo],
                  timeout: float) -> dict[object, tuple[str, TableInfo]]:
    """{type id: (its name, the table it names)} for a small type table (at most MAX_TYPE_ROWS rows); {} else."""
    table = types.sa_table()
    stmt = sa.select(table.c[types.primary_key[0]], *(table.c[c] for c in names)).limit(MAX_TYPE_ROWS + 1)
    try:
        dialect_catalog.set_query_timeout(conn, timeout)
        rows = conn.execute(stmt).all()
    except sa.exc.DBAPIError:
        return {}
    finally:
        conn.rollback()
    if len(rows) > MAX_TYPE_ROWS:
        return {}
    found = {}
    for type_id, *parts in rows:
        text = [str(p) for p in parts]
        named = by_name.get("_".join(text).lower()) or by_name.get("_".join(text).replace(".", "_").lower())
        if named is not None and len(named.primary_key) == 1 and named.has_surrogate_key:
            found[type_id] = (".".join(text), named)
    return found


def _confirmed(conn: Connection, table: TableInfo, type_column: str, id_column: str,
               named: dict[object, tuple[str, TableInfo]], timeout: float) -> dict[str, str]:
    """{type name: table} when the table stores ids with some type, every type it uses names a table, and every
    id stored with a type is an id of the table it names; else {}. Each query stops at its first row."""
    child = table.sa_table()
    try:
        dialect_catalog.set_query_timeout(conn, timeout)
        unnamed = sa.and_(child.c[type_column].is_not(None), child.c[type_column].not_in(list(named)))
        if _first(conn, child, unnamed):
            return {}
        confirmed = {}
        for type_id, (name, parent_table) in named.items():
            stored = sa.and_(child.c[type_column] == type_id, child.c[id_column].is_not(None))
            if not _first(conn, child, stored):
                continue
            parent = parent_table.sa_table()
            orphan = ~sa.exists().where(parent.c[parent_table.primary_key[0]] == child.c[id_column])
            if _first(conn, child, sa.and_(stored, orphan)):
                return {}
            confirmed[name] = parent_table.name
        return confirmed
    except sa.exc.DBAPIError:
        return {}
    finally:
        conn.rollback()


def _first(conn: Connection, table: sa.TableClause, where: sa.ColumnElement[bool]) -> bool:
    return conn.execute(sa.select(sa.literal(1)).select_from(table).where(where).limit(1)).first() is not None
