"""What the fix must learn from a database's own catalog, where SQLAlchemy's reflection falls short.

Reflection inspects one schema at a time and cannot say who may see what, so the fix asks the catalog:

- `foreign_keys_to(conn, table)`: every foreign key referring to the table, from *any* schema (PostgreSQL
  `pg_constraint.confrelid`) or database (MySQL/MariaDB `information_schema.KEY_COLUMN_USAGE`), with its
  ON DELETE action, whether the fixing role may read and write the referencing table and (PostgreSQL) whether
  row-level security may hide its rows from the role.
- `delete_hooks(conn, table)`: what makes a DELETE do something else than delete the rows it names: triggers
  (PostgreSQL `pg_trigger`, MySQL `information_schema.TRIGGERS`, SQLite `sqlite_master`), PostgreSQL rules
  (`pg_rewrite`) and inheritance children (`pg_inherits`).
- `table_identity(conn, table)`: the resolved table, so that `parent` and `public.parent` are one table
  (PostgreSQL: its oid; MySQL/MariaDB: schema and name as stored; SQLite: the name, case-folded as SQLite does).
- `restrict_access(conn, table)`: nothing but the owner may read a bookkeeping table (PostgreSQL: revoke what
  default privileges granted and enable row-level security with no policy; the owner is exempt unless forced),
  and a publication may replicate its deletes (PostgreSQL: REPLICA IDENTITY FULL).
  default privileges granted and enable row-level security with no policy; the owner is exempt unless forced).
- `unique_keys(table)`: every valid unique constraint and unique index, as the catalog states it (PostgreSQL
  `pg_index`, expressions and predicates deparsed by the server; MySQL/MariaDB `information_schema.STATISTICS`;
  SQLite `PRAGMA index_list`/`index_xinfo`); `distinct_entity_keys(conn, table, key)` keeps those that can tell
  the rows of a duplicate group apart (see its docstring).
- `resolved_schema(table)`: the schema the server resolves the table in (PostgreSQL `to_regclass`, which follows
  `search_path`, so `"$user", public` finds `public.t` even when a schema named after the role exists).

One class per database; `catalog_for(conn)` picks it. Identifiers reach the catalog as bound values or as
`regclass` text quoted by SQLAlchemy's preparer, never pasted into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects import for_backend

# PostgreSQL `pg_constraint.confdeltype` (see the pg_constraint catalog documentation).
_PG_ON_DELETE = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key from `schema.table(columns)` to the fixed table's `referred_columns`.

    `schema` is None when the referencing table lives in the connection's default schema (or database).
    `visible` is False when the fixing role may not read and update the referencing table. `hidden_from` names
    the fixing role when row-level security may hide rows of the referencing table from it (PostgreSQL)."""

    schema: str | None
    table: str
    name: str | None
    columns: tuple[str, ...]
    referred_columns: tuple[str, ...]
    ondelete: str | None
    visible: bool = True
    hidden_from: str | None = None


@dataclass(frozen=True)
class UniqueKey:
    """A unique constraint or unique index: `name`, its key parts, and where it applies.

    Each part is a column name (`columns[j]`) or, for an expression index, the expression as the database
    deparses it (`expressions[j]`, the column entry then None). `predicate`: a partial index's condition as the
    database deparses it (the index applies only to rows where it holds)."""

    name: str
    columns: tuple[str | None, ...]
    expressions: tuple[str | None, ...] = ()
    predicate: str | None = None
    primary: bool = False

    @property
    def label(self) -> str:
        parts = [c if c is not None else (self.expressions[j] or "?") for j, c in enumerate(self.columns)]
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return f"{self.name} ({', '.join(parts)}){where}"

    def parts(self, table: sa.Table) -> list[ColumnElement[Any]]:
        """The key parts as expressions over `table` (an expression is the server's own text)."""
        return [table.c[c] if c is not None else sa.literal_column(f"({self.expressions[j]})")
                for j, c in enumerate(self.columns)]

    def applies(self, table: sa.Table) -> ColumnElement[bool]:
        """The rows the index constrains: every part non-NULL (NULLs are distinct in a unique index) and,
        for a partial index, its predicate."""
        where: list[ColumnElement[bool]] = [p.is_not(None) for p in self.parts(table)]
        if self.predicate:
            where.append(sa.literal_column(f"({self.predicate})", sa.Boolean))
        return sa.and_(*where)


def distinct_entity_keys(conn: Connection, table: sa.Table, key: Sequence[str]) -> list[UniqueKey]:
    """The unique constraints and indexes of `table` that say two rows sharing the values of `key` are different
    entities when they hold different non-NULL values on them: every valid one except the primary key (which
    always differs) and those whose columns all lie within `key` (the rows of a group share them).

    Expression indexes are kept (their parts are the server's deparsed expressions); partial indexes apply under
    their predicate. SQLite keeps expressions and predicates only as the CREATE INDEX text, which dupewatch does
    not parse: an expression index is left out there, and a partial one applies to every row (a false refusal,
    never a merge)."""
    within = set(key)
    return [u for u in catalog_for(conn).unique_keys(table)
            if not u.primary and not (all(c is not None for c in u.columns) and set(u.columns) <= within)]


@dataclass(frozen=True)
class DeleteHooks:
    """What else a DELETE on the table does. `blocking`: hooks that can cancel or redirect the delete (the
    fix refuses); `firing`: hooks that run after each deleted row (the preview names them)."""

    blocking: tuple[str, ...] = ()
    firing: tuple[str, ...] = ()


def qualified(conn: Connection, table: sa.Table) -> str:
    """The table's name as the database parses it (quoted by SQLAlchemy), e.g. for `regclass`."""
    return conn.dialect.identifier_preparer.format_table(table)


class Catalog:
    """The catalog queries of one database; subclasses override what differs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def default_schema(self) -> str | None:
        return sa.inspect(self.conn).default_schema_name

    def _schema_or_none(self, schema: str | None) -> str | None:
        return None if schema is None or schema == self.default_schema() else schema

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        raise NotImplementedError

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        return DeleteHooks()

    def table_identity(self, table: sa.Table) -> str:
        raise NotImplementedError

    def restrict_access(self, table: sa.Table) -> None:
        """Nothing to do where the database has no per-table privileges (SQLite)."""

    def resolved_schema(self, table: sa.Table) -> str | None:
        """The schema the server finds the table in; None when that is the connection's default schema."""
        if table.schema is not None:
            return self._schema_or_none(table.schema)
        return for_backend(self.conn.dialect.name).resolved_schema(self.conn, table.name)

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        raise NotImplementedError

    def index_names(self, table: sa.Table) -> set[str]:
        """Every index of the table, expression and partial ones included (reflection skips some)."""
        raise NotImplementedError

    def auto_updated_columns(self, table: sa.Table) -> tuple[str, ...]:
        """Columns the database sets on every UPDATE of a row (MySQL/MariaDB `ON UPDATE CURRENT_TIMESTAMP`): an
        UPDATE that sets them to themselves leaves them as they were."""
        return ()

    def generated_columns(self, table: sa.Table) -> set[str]:
        """Columns whose values the database computes and refuses to be given (generated columns, MariaDB's
        system-versioning period columns `row_start`/`row_end`): undo lets the database compute them again."""
        return {c.name for c in table.columns if c.computed is not None}

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


class PostgresCatalog(Catalog):
    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        # conparentid = 0: a foreign key of a partitioned table is also cloned onto each partition.
        rows = self.conn.execute(sa.text("""
            SELECT con.conname, n.nspname, c.relname, con.confdeltype,
                   ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS columns,
                   ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS referred,
                   has_table_privilege(con.conrelid, 'SELECT') AND has_table_privilege(con.conrelid, 'UPDATE')
                       AS visible,
                   -- row-level security applies to the role: not a superuser or BYPASSRLS, and not the
                   -- table's owner, or the owner under FORCE ROW LEVEL SECURITY (docs, "Row Security Policies")
                   CASE WHEN c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
                         AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                                  WHERE r.rolname = current_user)
                        THEN current_user END AS hidden_from
            FROM pg_catalog.pg_constraint con
            JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE con.contype = 'f' AND con.confrelid = to_regclass(:t) AND con.conparentid = 0
            ORDER BY n.nspname, c.relname, con.conname"""), {"t": qualified(self.conn, table)}).all()
        return [ForeignKey(self._schema_or_none(r.nspname), r.relname, r.conname, tuple(r.columns),
                           tuple(r.referred), _PG_ON_DELETE.get(r.confdeltype), bool(r.visible), r.hidden_from)
                for r in rows]

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        params = {"t": qualified(self.conn, table)}
        # pg_trigger.tgtype bits: 1 ROW, 2 BEFORE, 8 DELETE, 64 INSTEAD (see the pg_trigger documentation).
        triggers = self.conn.execute(sa.text("""
            SELECT tgname, (tgtype & 2) <> 0 OR (tgtype & 64) <> 0 AS blocks FROM pg_catalog.pg_trigger
            WHERE tgrelid = to_regclass(:t) AND NOT tgisinternal AND (tgtype & 8) <> 0 AND tgenabled <> 'D'
            ORDER BY tgname"""), params).all()
        rules = self.conn.execute(sa.text(
            "SELECT rulename FROM pg_catalog.pg_rewrite WHERE ev_class = to_regclass(:t) AND ev_type = '4' "
            "ORDER BY rulename"), params).scalars().all()
        children = self.conn.execute(sa.text("""
            SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
            WHERE i.inhparent = to_regclass(:t) AND p.relkind = 'r' ORDER BY c.relname"""), params).scalars().all()
        blocking = [f"BEFORE DELETE trigger {r.tgname}" for r in triggers if r.blocks]
        blocking += [f"rule {name} ON DELETE" for name in rules]
        if children:
            blocking.append(f"inheritance children ({', '.join(children[:3])}{', ...' if len(children) > 3 else ''})"
                            ", whose rows a DELETE on the parent also reaches")
        firing = [f"AFTER DELETE trigger {r.tgname}" for r in triggers if not r.blocks]
        return DeleteHooks(tuple(blocking), tuple(firing))

    def table_identity(self, table: sa.Table) -> str:
        oid = self.conn.execute(sa.text("SELECT CAST(to_regclass(:t) AS oid)"),
                                {"t": qualified(self.conn, table)}).scalar()
        return f"postgresql oid {oid}"

    def restrict_access(self, table: sa.Table) -> None:
        name = qualified(self.conn, table)
        grantees = self.conn.execute(sa.text("""
            SELECT DISTINCT COALESCE(r.rolname, 'PUBLIC') AS role, a.grantee = 0 AS public
            FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
            LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
            WHERE c.oid = to_regclass(:t) AND a.grantee <> c.relowner"""), {"t": name}).all()
        quote = self.conn.dialect.identifier_preparer.quote
        self.conn.exec_driver_sql(f"REVOKE ALL ON TABLE {name} FROM PUBLIC")
        for grantee in grantees:
            if not grantee.public:
                self.conn.exec_driver_sql(f"REVOKE ALL ON TABLE {name} FROM {quote(grantee.role)}")
        self.conn.exec_driver_sql(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        # A publication FOR ALL TABLES (or of the schema) that publishes deletes refuses them on a table without a
        # replica identity, and dupewatch's own tables have no primary key: skipped groups leave the plan table.
        self.conn.exec_driver_sql(f"ALTER TABLE {name} REPLICA IDENTITY FULL")

    def _index_enforced(self, schema: str | None, table: str, index: dict[str, Any]) -> bool:
        if not super()._index_enforced(schema, table, index):
            return False
        relation = qualified(self.conn, sa.Table(table, sa.MetaData(), schema=schema))
        valid = self.conn.execute(sa.text(
            "SELECT i.indisvalid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :i AND i.indrelid = to_regclass(:t)"),
            {"i": index.get("name"), "t": relation}).scalar()
        return bool(valid)

    def index_names(self, table: sa.Table) -> set[str]:
        return set(self.conn.execute(sa.text(
            "SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(:t)"), {"t": qualified(self.conn, table)}).scalars())

    def generated_columns(self, table: sa.Table) -> set[str]:
        return set(self.conn.execute(sa.text(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 "
            "AND NOT attisdropped AND attgenerated <> ''"), {"t": qualified(self.conn, table)}).scalars())

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        # pg_index.indkey[k] = 0 marks an expression; pg_get_indexdef(oid, k, true) deparses it.
        rows = self.conn.execute(sa.text("""
            SELECT ic.relname AS name, i.indisprimary AS primary,
                   ARRAY(SELECT a.attname FROM generate_series(1, i.indnkeyatts) k
                         LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]
                         ORDER BY k) AS columns,
                   ARRAY(SELECT CASE WHEN i.indkey[k - 1] = 0 THEN pg_get_indexdef(i.indexrelid, k, true) END
                         FROM generate_series(1, i.indnkeyatts) k ORDER BY k) AS expressions,
                   pg_get_expr(i.indpred, i.indrelid, true) AS predicate
            FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = to_regclass(:t) AND i.indisunique AND i.indisvalid AND i.indisready
            ORDER BY ic.relname"""), {"t": qualified(self.conn, table)}).all()
        return [UniqueKey(r.name, tuple(r.columns), tuple(r.expressions), r.predicate, bool(r.primary))
                for r in rows]


class MySqlCatalog(Catalog):
    def _schema(self, table: sa.Table) -> str:
        return table.schema or str(self.conn.execute(sa.text("SELECT DATABASE()")).scalar_one())

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        # KEY_COLUMN_USAGE lists a foreign key to whoever has a privilege on its table; MariaDB shows its row of
        # REFERENTIAL_CONSTRAINTS (the ON DELETE rule) only with privileges on the whole database, so the rule is
        # joined where visible (None otherwise) and never decides whether the reference exists.
        rows = self.conn.execute(sa.text("""
            SELECT k.TABLE_SCHEMA AS child_schema, k.TABLE_NAME AS child_table, k.CONSTRAINT_NAME AS fk_name,
                   rc.DELETE_RULE AS on_delete, k.COLUMN_NAME AS fk_column, k.REFERENCED_COLUMN_NAME AS referred_column
            FROM information_schema.KEY_COLUMN_USAGE k
            LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
              ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME
             AND rc.TABLE_NAME = k.TABLE_NAME
            WHERE k.REFERENCED_TABLE_SCHEMA = :s AND k.REFERENCED_TABLE_NAME = :t
            ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"""),
            {"s": self._schema(table), "t": table.name}).all()
        grouped: dict[tuple[str, str, str], tuple[str, list[str], list[str]]] = {}
        for r in rows:
            _rule, cols, refs = grouped.setdefault((r.child_schema, r.child_table, r.fk_name), (r.on_delete, [], []))
            cols.append(r.fk_column)
            refs.append(r.referred_column)
        return [ForeignKey(self._schema_or_none(s), t, name, tuple(cols), tuple(refs),
                           None if rule in (None, "NO ACTION") else rule)
                for (s, t, name), (rule, cols, refs) in grouped.items()]

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        rows = self.conn.execute(sa.text(
            "SELECT TRIGGER_NAME AS name, ACTION_TIMING AS timing FROM information_schema.TRIGGERS "
            "WHERE EVENT_OBJECT_SCHEMA = :s AND EVENT_OBJECT_TABLE = :t AND EVENT_MANIPULATION = 'DELETE' "
            "ORDER BY TRIGGER_NAME"), {"s": self._schema(table), "t": table.name}).all()
        return DeleteHooks(tuple(f"BEFORE DELETE trigger {r.name}" for r in rows if r.timing == "BEFORE"),
                           tuple(f"AFTER DELETE trigger {r.name}" for r in rows if r.timing != "BEFORE"))

    def table_identity(self, table: sa.Table) -> str:
        row = self.conn.execute(sa.text(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s "
            "AND TABLE_NAME = :t"), {"s": self._schema(table), "t": table.name}).first()
        schema, name = (row[0], row[1]) if row else (self._schema(table), table.name)
        return f"mysql {schema}.{name}"

    def index_names(self, table: sa.Table) -> set[str]:
        return set(self.conn.execute(sa.text(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :s "
            "AND TABLE_NAME = :t"), {"s": self._schema(table), "t": table.name}).scalars())

    def generated_columns(self, table: sa.Table) -> set[str]:
        # EXTRA: `VIRTUAL GENERATED`, `STORED GENERATED` (MariaDB's row_start/row_end too: `ROW START`/`ROW END`
        # in GENERATION_EXPRESSION); MariaDB also says IS_GENERATED = 'ALWAYS'.
        rows = self.conn.execute(sa.text(
            "SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t"),
            {"s": self._schema(table), "t": table.name}).mappings().all()
        return {r["COLUMN_NAME"] for r in rows
                if "GENERATED" in str(r["EXTRA"] or "").upper() or r.get("IS_GENERATED") == "ALWAYS"}

    def auto_updated_columns(self, table: sa.Table) -> tuple[str, ...]:
        return tuple(self.conn.execute(sa.text(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
            "AND LOWER(EXTRA) LIKE '%on update%' ORDER BY ORDINAL_POSITION"),
            {"s": self._schema(table), "t": table.name}).scalars())

    def _period_columns(self, table: sa.Table) -> set[str]:
        """MariaDB system versioning: `row_start`/`row_end`, when the table names them."""
        return set(self.conn.execute(sa.text(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
            "AND GENERATION_EXPRESSION IN ('ROW START', 'ROW END')"),
            {"s": self._schema(table), "t": table.name}).scalars())

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        # MySQL 8 lists a functional key part with COLUMN_NAME NULL and its EXPRESSION; MariaDB has neither.
        rows = self.conn.execute(sa.text(
            "SELECT * FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
            "AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX"),
            {"s": self._schema(table), "t": table.name}).mappings().all()
        # MariaDB appends the system-versioning end column (hidden, or named) to every unique key of a versioned
        # table so that it holds among current rows, the only ones a fix sees: that part is left out.
        listed = set(self.conn.execute(sa.text(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t"),
            {"s": self._schema(table), "t": table.name}).scalars()) - self._period_columns(table)
        parts: dict[str, list[tuple[str | None, str | None]]] = {}
        for r in rows:
            if r["COLUMN_NAME"] is None or r["COLUMN_NAME"] in listed:
                parts.setdefault(r["INDEX_NAME"], []).append((r["COLUMN_NAME"], r.get("EXPRESSION")))
        return [UniqueKey(name, tuple(c for c, _e in cols), tuple(e for _c, e in cols), None, name == "PRIMARY")
                for name, cols in parts.items()]


class SqliteCatalog(Catalog):
    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        inspector = sa.inspect(self.conn)
        found = []
        wanted = table.name.lower()
        for (schema, child), fks in sorted(inspector.get_multi_foreign_keys(schema=table.schema).items(),
                                           key=lambda item: str(item[0])):
            for fk in fks:
                if fk["referred_table"].lower() != wanted:
                    continue
                columns = tuple(fk["constrained_columns"])
                referred = tuple(fk["referred_columns"]) or tuple(c.name for c in table.primary_key.columns)
                found.append(ForeignKey(schema, child, fk.get("name"), columns, referred,
                                        self._ondelete(schema, child, columns)))
        return found

    def _ondelete(self, schema: str | None, table: str, columns: tuple[str, ...]) -> str | None:
        """SQLAlchemy misses ON DELETE on SQLite's inline `REFERENCES`; the pragma always has it."""
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(schema)}." if schema else ""
        rows = self.conn.exec_driver_sql(f"PRAGMA {prefix}foreign_key_list({quote(table)})").mappings().all()
        by_id: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(row["id"], []).append(dict(row))
        for parts in by_id.values():
            if tuple(p["from"] for p in sorted(parts, key=lambda p: p["seq"])) == columns:
                action = parts[0]["on_delete"]
                return None if action in (None, "NO ACTION") else action
        return None

    def delete_hooks(self, table: sa.Table) -> DeleteHooks:
        # SQLite keeps no catalog of a trigger's timing and event: its CREATE TRIGGER text is the record.
        rows = self.conn.execute(sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND lower(tbl_name) = lower(:t) "
            "ORDER BY name"), {"t": table.name}).all()
        blocking: list[str] = []
        firing: list[str] = []
        for name, sql in rows:
            match = re.search(r"\b(BEFORE|AFTER|INSTEAD\s+OF)?\s*DELETE\s+ON\b", sql or "", re.I)
            if match is None:
                continue
            timing = (match.group(1) or "BEFORE").upper()  # SQLite's default timing is BEFORE
            (firing if timing == "AFTER" else blocking).append(f"{timing} DELETE trigger {name}")
        return DeleteHooks(tuple(blocking), tuple(firing))

    def table_identity(self, table: sa.Table) -> str:
        return f"sqlite {(table.schema or 'main').lower()}.{table.name.lower()}"

    def index_names(self, table: sa.Table) -> set[str]:
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        return {row[1] for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_list({quote(table.name)})")}

    def generated_columns(self, table: sa.Table) -> set[str]:
        # table_xinfo's `hidden`: 2 a virtual, 3 a stored generated column.
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        return {row[1] for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}table_xinfo({quote(table.name)})")
                if row[6] in (2, 3)}

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        found = []
        # index_list rows: (seq, name, unique, origin, partial); index_xinfo: (seqno, cid, name, desc, coll, key).
        # cid -2 is an expression, kept only as text: such an index is left out (see `distinct_entity_keys`).
        for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_list({quote(table.name)})").all():
            if not row[2]:
                continue
            keys = [r for r in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_xinfo({quote(row[1])})") if r[5]]
            if all(r[1] >= 0 for r in keys):
                found.append(UniqueKey(row[1], tuple(r[2] for r in keys), primary=row[3] == "pk"))
        if not any(u.primary for u in found) and table.primary_key.columns:  # INTEGER PRIMARY KEY is the rowid
            found.append(UniqueKey("PRIMARY KEY", tuple(c.name for c in table.primary_key.columns), primary=True))
        return found


def catalog_for(conn: Connection) -> Catalog:
    return {"postgresql": PostgresCatalog, "mysql": MySqlCatalog, "mariadb": MySqlCatalog,
            "sqlite": SqliteCatalog}[conn.dialect.name](conn)
