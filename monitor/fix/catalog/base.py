"""What the catalog queries of every database return, and the class each database's catalog extends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects import for_backend


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key from `schema.table(columns)` to the fixed table's `referred_columns`.

    `schema` is None when the referencing table lives in the connection's default schema (or database).
    `visible` is False when the fixing role may not read and update the referencing table. `hidden_from` names
    the fixing role when row-level security may hide rows of the referencing table from it (PostgreSQL).
    `partition` names the partition of the fixed table the foreign key refers to, when it refers to one
    partition rather than the table (PostgreSQL allows it). `ancestor` names the partitioned table the foreign key
    is declared to refer to when the fixed table is one of its partitions (PostgreSQL): the referencing rows point
    at the partition's rows through it. `within`: the referencing table holds rows of the fixed table, or the fixed
    table holds its rows (a partitioned ancestor, a partition: PostgreSQL), as a self-reference does."""

    schema: str | None
    table: str
    name: str | None
    columns: tuple[str, ...]
    referred_columns: tuple[str, ...]
    ondelete: str | None
    visible: bool = True
    hidden_from: str | None = None
    partition: str | None = None
    onupdate: str | None = None
    ancestor: str | None = None
    within: bool = False
    # SQLite: per column, the referred column's collation where SQLite's foreign key compares the referencing value
    # otherwise than a plain `=` would (the columns' affinities or collations differ: SQLite applies the referred
    # column's to the referencing value, `=` the referencing column's); None (or empty): a plain `=`.
    compared_as: tuple[str | None, ...] = ()
    # SQLite: per column, the collation the foreign key compares it under (the referred column's); () elsewhere.
    compared_under: tuple[str, ...] = ()

    def refers(self, dialect: str, child: ColumnElement[Any], value: ColumnElement[Any],
               position: int) -> ColumnElement[bool]:
        """The referencing column `child` (its `position`-th) refers to the referred `value`, as the database
        matches them: `value` must carry the referred column's type (its affinity, on SQLite)."""
        collation = self.compared_as[position] if position < len(self.compared_as) else None
        if collation is None:
            return child == value
        return for_backend(dialect).referred_compares(child, value, collation)

    @property
    def update_writes(self) -> bool:
        """Whether a change of a referred value makes the database write the referring rows (ON UPDATE CASCADE,
        SET NULL, SET DEFAULT), or may (the action is not known). NO ACTION and RESTRICT write nothing: the
        database only refuses the change while a row refers to the old value."""
        return (self.onupdate or "").upper() not in ("NO ACTION", "RESTRICT")

    @property
    def label(self) -> str:
        """`schema.table(columns)`, the referring side."""
        where = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"{where}({', '.join(self.columns)})"


@dataclass(frozen=True)
class UniqueKey:
    """A unique constraint or unique index: `name`, its key parts, and where it applies.

    Each part is a column name (`columns[j]`) or, for an expression index, the expression as the database
    deparses it (`expressions[j]`, the column entry then None). `predicate`: a partial index's condition as the
    database deparses it (the index applies only to rows where it holds). `nulls_not_distinct`: NULL is a value
    of the key like any other (PostgreSQL 15 `UNIQUE NULLS NOT DISTINCT`). `opaque`: an expression part the
    database keeps only as the CREATE INDEX text (SQLite), which dupewatch does not parse: any column may be
    part of it. `referenced_by`: not a constraint of its own but the columns beside the primary key that foreign
    keys refer to together with it (`orders(tenant_id, user_id) references users(tenant_id, id)`): the referencing
    rows belong to those values, so rows differing on them are different entities (see
    `catalog.distinct_entity_keys`)."""

    name: str
    columns: tuple[str | None, ...]
    expressions: tuple[str | None, ...] = ()
    predicate: str | None = None
    primary: bool = False
    nulls_not_distinct: bool = False
    opaque: bool = False
    referenced_by: str | None = None

    @property
    def label(self) -> str:
        if self.referenced_by:
            return f"{self.referenced_by}: rows differ in {' or '.join(c or '?' for c in self.columns)}"
        expressions = [*self.expressions, *[None] * len(self.columns)]
        parts = [c if c is not None else (expressions[j] or "an expression") for j, c in enumerate(self.columns)]
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return f"{self.name} ({', '.join(parts)}){where}"

    @property
    def evidence(self) -> str:
        """What says rows differing on it are different entities, for a sentence `rows that differ on ...`."""
        if self.referenced_by:
            return f"a column a foreign key refers to beside the primary key ({self.label})"
        return f"unique constraint {self.label}"

    def parts(self, table: sa.Table) -> list[ColumnElement[Any]]:
        """The key parts as expressions over `table` (an expression is the server's own text). An `opaque` key:
        every column outside the primary key (rows equal on all of them are equal on any expression of them)."""
        if self.opaque:
            pk = {c.name for c in table.primary_key.columns}
            return [c for c in table.columns if c.name not in pk]
        return [table.c[c] if c is not None else sa.literal_column(f"({self.expressions[j]})")
                for j, c in enumerate(self.columns)]

    @property
    def nulls_are_values(self) -> bool:
        """Whether a NULL part tells rows apart: `nulls_not_distinct`, or an `opaque` expression (which may turn
        a NULL into a value: `coalesce(email, '')`)."""
        return self.nulls_not_distinct or self.opaque

    def where_applies(self, table: sa.Table, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """`value` on the rows the index constrains, else NULL: for a partial index, where its predicate holds,
        and there every part non-NULL (NULLs are distinct in a unique index, unless `nulls_are_values`). Nested
        CASEs, so that the parts are evaluated only where the predicate holds, as the index itself does
        (`(payload::int) WHERE kind = 'num'` holds text elsewhere, which the cast would refuse)."""
        inner = value if self.nulls_are_values else sa.case(
            (sa.and_(*[p.is_not(None) for p in self.parts(table)]), value))
        if not self.predicate:
            return inner
        return sa.case((sa.literal_column(f"({self.predicate})", sa.Boolean), inner))


@dataclass(frozen=True)
class DeleteHooks:
    """What else a DELETE on the table does. `blocking`: hooks that can cancel or redirect the delete (the
    fix refuses); `firing`: hooks that run after each deleted row (the preview names them); `children`: the
    table's inheritance children (PostgreSQL), whose rows a query and a DELETE of the table also reach (the fix
    refuses; the preview tells their rows from the parent's by `Dialect.row_origin`)."""

    blocking: tuple[str, ...] = ()
    firing: tuple[str, ...] = ()
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trigger:
    """A trigger as the catalog states it: `timing` 'BEFORE', 'AFTER' or 'INSTEAD OF', its `event` ('INSERT',
    'UPDATE', 'DELETE') and, for an `UPDATE OF` trigger, the columns whose update fires it (lower case)."""

    name: str
    timing: str
    event: str
    columns: frozenset[str] = frozenset()

    def fires_on(self, event: str, columns: tuple[str, ...]) -> bool:
        """Whether a write `event` setting `columns` fires it."""
        return self.event == event and (not self.columns or bool(self.columns & {c.lower() for c in columns}))


def qualified(conn: Connection, table: sa.Table) -> str:
    """The table's name as the database parses it (quoted by SQLAlchemy), e.g. for `regclass`."""
    return conn.dialect.identifier_preparer.format_table(table)


class Catalog:
    """The catalog queries of one database; subclasses override what differs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._triggers: dict[tuple[str | None, str], tuple[Trigger, ...]] = {}

    def default_schema(self) -> str | None:
        return sa.inspect(self.conn).default_schema_name

    def _schema_or_none(self, schema: str | None) -> str | None:
        return None if schema is None or schema == self.default_schema() else schema

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        raise NotImplementedError

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        """From `triggers`: an AFTER DELETE trigger runs after each deleted row; any other can cancel or redirect
        the delete."""
        deleting = [t for t in self.triggers(table.schema, table.name) if t.event == "DELETE"]
        return DeleteHooks(tuple(f"{t.timing} DELETE trigger {t.name}" for t in deleting if t.timing != "AFTER"),
                           tuple(f"{t.timing} DELETE trigger {t.name}" for t in deleting if t.timing == "AFTER"))

    def triggers(self, schema: str | None, name: str) -> tuple[Trigger, ...]:
        """Every trigger of the table, read from the catalog once per table (`_read_triggers`) for `delete_hooks`
        and `write_triggers` alike."""
        if (schema, name) not in self._triggers:
            self._triggers[schema, name] = self._read_triggers(schema, name)
        return self._triggers[schema, name]

    def _read_triggers(self, schema: str | None, name: str) -> tuple[Trigger, ...]:
        """The table's triggers, in name order; none where the database has no catalog of them."""
        return ()

    def table_identity(self, table: sa.Table) -> str:
        raise NotImplementedError

    def restrict_access(self, table: sa.Table) -> None:
        """Nothing to do where the database has no per-table privileges (SQLite)."""

    def foreign_owners(self, tables: list[sa.Table]) -> list[tuple[str, str, str]]:
        """(schema, table, owner) of each of dupewatch's own `tables` (found where the server resolves them) that
        this connection's role may not read and write as `restrict_access` left them; [] where it may use them
        all (or the database has no owners)."""
        return []

    def resolved_schema(self, table: sa.Table) -> str | None:
        """The schema the server finds the table in; None when that is the connection's default schema."""
        if table.schema is not None:
            return self._schema_or_none(table.schema)
        return for_backend(self.conn.dialect.name).resolved_schema(self.conn, table.name)

    def column_types(self, tables: Sequence[sa.Table]) -> list[dict[str, str]]:
        """Per table of `tables` (in order), each column's type as the database spells it ({} for a table that does
        not exist), all in one catalog read: PostgreSQL `format_type(atttypid, atttypmod)` and the collation,
        MySQL/MariaDB `COLUMN_TYPE` and the collation, SQLite the declared type."""
        raise NotImplementedError

    def same_type(self, one: str, other: str) -> bool:
        """Whether two `column_types` spellings store the same values alike."""
        return one == other

    def user_triggers(self, tables: Sequence[sa.Table]) -> list[tuple[str, str]]:
        """(table name, `trigger <name>` or `rule <name>`) for every trigger and rule users made on `tables` (the
        database's internal ones aside), all in one catalog read."""
        raise NotImplementedError

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        raise NotImplementedError

    def index_names(self, table: sa.Table) -> set[str]:
        """Every index of the table, expression and partial ones included (reflection skips some)."""
        raise NotImplementedError

    def auto_updated_columns(self, table: sa.Table) -> tuple[str, ...]:
        """Columns the database sets on every UPDATE of a row (MySQL/MariaDB `ON UPDATE CURRENT_TIMESTAMP`): an
        UPDATE that sets them to themselves leaves them as they were."""
        return ()

    def lost_columns(self, table: sa.Table) -> bool:
        """Whether columns were dropped from `table` since it was created, where the catalog keeps a trace of them
        (PostgreSQL's `pg_attribute.attisdropped`); False where it keeps none. dupewatch never drops a column of its
        archives: one that lost a column was changed by hand."""
        return False

    def generated_columns(self, table: sa.Table) -> set[str]:
        """Columns whose values the database computes and refuses to be given (generated columns, MariaDB's
        system-versioning period columns `row_start`/`row_end`): undo lets the database compute them again."""
        return {c.name for c in table.columns if c.computed is not None}

    def inheritance_children(self, schema: str | None, name: str) -> tuple[str, ...]:
        """The tables inheriting from a plain table (PostgreSQL `INHERITS`), whose rows a query, UPDATE or DELETE
        of it also reaches, while a foreign key declared on it covers its own rows only; () elsewhere."""
        return ()

    def partition_columns(self, schema: str | None, name: str) -> tuple[str, ...]:
        """The columns a partitioned table routes its rows by (an UPDATE of them may move a row to another
        partition); () where the database has no such table or it is not partitioned."""
        return ()

    def write_triggers(self, schema: str | None, name: str, event: str, columns: tuple[str, ...]) -> tuple[str, ...]:
        """The enabled triggers a fix's `event` ('UPDATE' of `columns`, 'DELETE', or undo's 'INSERT') on the table
        fires, each as `<timing> <event> trigger <name>`, and (PostgreSQL) its rules for the event, `rule <name> ON
        <event>`: the preview names them (what one writes, the batch's account decides)."""
        return tuple(f"{t.timing} {event} trigger {t.name}" for t in self.triggers(schema, name)
                     if t.fires_on(event, columns))

    def fired_on(self, table: sa.Table, event: str, columns: tuple[str, ...] = ()) -> list[str]:
        """`write_triggers` of `table`, each named with the table (`AFTER INSERT trigger t on tag`): what a refusal
        names as what may have acted."""
        return [f"{t} on {table.name}" for t in self.write_triggers(table.schema, table.name, event, columns)]

    def raising_triggers(self, context: str, written: Sequence[sa.Table] = ()) -> tuple[str, ...]:
        """The triggers whose function an error's `context` (`Dialect.error_context`) names, innermost first, each
        as `trigger <name> on <table>`: those that raised it (of a function shared by triggers of several tables,
        those of the `written` tables, where any); none where the database has no such diagnostics."""
        return ()

    def descendant_tables(self, schema: str | None) -> set[str]:
        """The tables of a schema whose rows a query of another table (their parent) also reads: PostgreSQL
        partitions and inheritance children; none elsewhere."""
        return set()

    def exclusion_constraints(self, schema: str | None, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """(name, columns) of a table's exclusion constraints (PostgreSQL `EXCLUDE`), each with every column it
        reads (plain elements, expressions, its WHERE); [] where the database has none."""
        return []

    def unique_column_sets(self, schema: str | None, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """(name, columns) of the primary key, unique constraints and unique indexes of a table."""
        inspector = sa.inspect(self.conn)
        found: list[tuple[str, tuple[str, ...]]] = []
        pk = tuple(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or ())
        if pk:
            found.append(("PRIMARY KEY", pk))
        for uc in inspector.get_unique_constraints(name, schema=schema):
            found.append((uc.get("name") or "unique", tuple(uc["column_names"])))
        for index in inspector.get_indexes(name, schema=schema):
            names = index.get("column_names") or []
            if index.get("unique") and names and all(names) and self._index_enforced(schema, name, dict(index)):
                found.append((index.get("name") or "unique index", tuple(n for n in names if n)))
        return found

    def _index_enforced(self, schema: str | None, table: str, index: dict[str, Any]) -> bool:
        return not index.get("dialect_options", {}).get("postgresql_where")
