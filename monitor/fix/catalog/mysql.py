"""MySQL/MariaDB's catalog: `information_schema` (KEY_COLUMN_USAGE, REFERENTIAL_CONSTRAINTS, TRIGGERS, STATISTICS,
COLUMNS), tables named by bound schema and name."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from monitor.fix.catalog.base import Catalog, ForeignKey, Trigger, UniqueKey


class MySqlCatalog(Catalog):
    def _schema(self, table: sa.Table) -> str:
        return table.schema or str(self.conn.execute(sa.text("SELECT DATABASE()")).scalar_one())

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        # KEY_COLUMN_USAGE lists a foreign key to whoever has a privilege on its table; MariaDB shows its row of
        # REFERENTIAL_CONSTRAINTS (the ON DELETE rule) only with privileges on the whole database, so the rule is
        # joined where visible (None otherwise) and never decides whether the reference exists. information_schema
        # compares names case-insensitively, but with lower_case_table_names = 0 (Linux) `Users` and `users` are
        # two tables: a foreign key to the other one is not a reference to this one.
        rows = self.conn.execute(sa.text("""
            SELECT k.TABLE_SCHEMA AS child_schema, k.TABLE_NAME AS child_table, k.CONSTRAINT_NAME AS fk_name,
                   rc.DELETE_RULE AS on_delete, rc.UPDATE_RULE AS on_update, k.COLUMN_NAME AS fk_column,
                   k.REFERENCED_COLUMN_NAME AS referred_column
            FROM information_schema.KEY_COLUMN_USAGE k
            LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
              ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME
             AND rc.TABLE_NAME = k.TABLE_NAME
            WHERE k.REFERENCED_TABLE_SCHEMA = :s AND k.REFERENCED_TABLE_NAME = :t
              AND (@@lower_case_table_names <> 0 OR (BINARY k.REFERENCED_TABLE_SCHEMA = BINARY :s
                                                     AND BINARY k.REFERENCED_TABLE_NAME = BINARY :t))
            ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"""),
            {"s": self._schema(table), "t": table.name}).all()
        grouped: dict[tuple[str, str, str], tuple[str, str | None, list[str], list[str]]] = {}
        for r in rows:
            _rule, _update, cols, refs = grouped.setdefault((r.child_schema, r.child_table, r.fk_name),
                                                            (r.on_delete, r.on_update, [], []))
            cols.append(r.fk_column)
            refs.append(r.referred_column)
        return [ForeignKey(self._schema_or_none(s), t, name, tuple(cols), tuple(refs),
                           None if rule in (None, "NO ACTION") else rule, onupdate=update)
                for (s, t, name), (rule, update, cols, refs) in grouped.items()]

    def _read_triggers(self, schema: str | None, name: str) -> tuple[Trigger, ...]:
        # One event per trigger; no `UPDATE OF` columns (MySQL/MariaDB have none).
        rows = self.conn.execute(sa.text(
            "SELECT TRIGGER_NAME AS name, ACTION_TIMING AS timing, EVENT_MANIPULATION AS event "
            "FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = :s AND EVENT_OBJECT_TABLE = :t "
            "ORDER BY TRIGGER_NAME"), {"s": self._schema(sa.Table(name, sa.MetaData(), schema=schema)), "t": name})
        return tuple(Trigger(str(r.name), str(r.timing).upper(), str(r.event).upper()) for r in rows)

    def _places(self, tables: Sequence[sa.Table]) -> list[tuple[str, str]]:
        current = str(self.conn.execute(sa.text("SELECT DATABASE()")).scalar_one())
        return [(t.schema or current, t.name) for t in tables]

    def column_types(self, tables: Sequence[sa.Table]) -> list[dict[str, str]]:
        places = self._places(tables)
        columns = sa.table("COLUMNS", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("COLUMN_NAME"),
                           sa.column("COLUMN_TYPE"), sa.column("CHARACTER_SET_NAME"), schema="information_schema")
        rows = self.conn.execute(sa.select(columns).where(
            sa.tuple_(columns.c.TABLE_SCHEMA, columns.c.TABLE_NAME).in_(places))).all()
        where = {(s.lower(), n.lower()): j for j, (s, n) in enumerate(places)}
        found: list[dict[str, str]] = [{} for _ in tables]
        for r in rows:
            j = where.get((str(r.TABLE_SCHEMA).lower(), str(r.TABLE_NAME).lower()))
            if j is not None:
                # (the character set converts values; a collation of the same set only compares them)
                charset = f" CHARACTER SET {r.CHARACTER_SET_NAME}" if r.CHARACTER_SET_NAME else ""
                found[j][str(r.COLUMN_NAME)] = f"{r.COLUMN_TYPE}{charset}"
        return found

    def user_triggers(self, tables: Sequence[sa.Table]) -> list[tuple[str, str]]:
        triggers = sa.table("TRIGGERS", sa.column("EVENT_OBJECT_SCHEMA"), sa.column("EVENT_OBJECT_TABLE"),
                            sa.column("TRIGGER_NAME"), schema="information_schema")
        rows = self.conn.execute(sa.select(triggers.c.EVENT_OBJECT_TABLE, triggers.c.TRIGGER_NAME).where(
            sa.tuple_(triggers.c.EVENT_OBJECT_SCHEMA, triggers.c.EVENT_OBJECT_TABLE).in_(self._places(tables)))
            .order_by(triggers.c.EVENT_OBJECT_TABLE, triggers.c.TRIGGER_NAME)).all()
        return [(str(r[0]), f"trigger {r[1]}") for r in rows]

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
        return {r["COLUMN_NAME"] for r in rows if is_generated(r["EXTRA"], r.get("IS_GENERATED"))}

    def auto_updated_columns(self, table: sa.Table) -> tuple[str, ...]:
        return tuple(self.conn.execute(sa.text(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
            "AND LOWER(EXTRA) LIKE '%on update%' ORDER BY ORDINAL_POSITION"),
            {"s": self._schema(table), "t": table.name}).scalars())

    def unique_column_sets(self, schema: str | None, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """MariaDB appends a system-versioned table's row end column to its primary key and unique keys (listed so
        when the period columns are explicit): among the current rows, the only ones a fix sees and a foreign key
        refers to, the key without it is unique."""
        found = super().unique_column_sets(schema, name)
        ends = self._row_end_columns(sa.Table(name, sa.MetaData(), schema=schema))
        if not ends:
            return found
        return [(key, kept) for key, columns in found if (kept := tuple(c for c in columns if c not in ends))]

    def _row_end_columns(self, table: sa.Table) -> set[str]:
        """MariaDB system versioning: the period's end column, when the table names it."""
        return set(self.conn.execute(sa.text(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t "
            "AND GENERATION_EXPRESSION = 'ROW END'"), {"s": self._schema(table), "t": table.name}).scalars())

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


def is_generated(extra: object, is_generated_always: object = None) -> bool:
    """Whether `information_schema.COLUMNS` says a column is computed: `GENERATED` as a word of EXTRA (`VIRTUAL
    GENERATED`, `STORED GENERATED`), not MySQL 8's `DEFAULT_GENERATED` (an expression default such as
    `DEFAULT CURRENT_TIMESTAMP`: a stored value undo must restore), or MariaDB's IS_GENERATED = 'ALWAYS'."""
    return "GENERATED" in str(extra or "").upper().split() or is_generated_always == "ALWAYS"
