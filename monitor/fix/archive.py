"""The archive: deleted rows, kept in the same database, in a table shaped exactly like the fixed one.

`dupewatch_archive_<table>` is created with `CREATE TABLE ... AS SELECT *, CAST(NULL AS VARCHAR(40)) AS
dupewatch_fix_id FROM <table> WHERE 1 = 0` (one statement: nothing is left half-made when the server refuses it),
so every column has the database's own type (numerics keep precision and scale, timestamps their fractional
seconds, binary stays binary, NULL stays NULL), plus `dupewatch_fix_id`. Rows move with `INSERT ... SELECT` inside the
batch's transaction, never through Python, so undo puts back byte-identical rows with their original keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects import for_backend
from monitor.fix.catalog import catalog_for
from monitor.fix.errors import FixRefused, NotAsArchived
from monitor.fix.records import archive_columns, bookkeeping_lock, safe_identifier

FIX_ID_COLUMN = "dupewatch_fix_id"


def archive_name(table: sa.Table, *, apart: bool = False) -> str:
    """`dupewatch_archive_<table>`; `apart` (the archive lives in `[fix] schema`, shared by the tables of every
    schema): `dupewatch_archive_<schema>_<table>` for a schema-qualified table."""
    if apart and table.schema:
        return safe_identifier("dupewatch_archive_", f"{table.schema}_{table.name}")
    return safe_identifier("dupewatch_archive_", table.name)


def create_table_as(conn: Connection, name: str, schema: str | None, shape: sa.Select[Any]) -> sa.Table:
    """Create an empty table `name` with the columns of `shape` (`CREATE TABLE ... AS SELECT ... WHERE 1 = 0`,
    so each column has the database's own type) that nobody but its owner may read (see
    `Catalog.restrict_access`), and return it reflected."""
    _create_empty(conn, name, schema, shape)
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)


def _create_empty(conn: Connection, name: str, schema: str | None, shape: sa.Select[Any]) -> None:
    """`create_table_as` without reflecting the new table (for a caller that alters it, then reflects it)."""
    target = sa.Table(name, sa.MetaData(), schema=schema)
    conn.exec_driver_sql(f"CREATE TABLE {conn.dialect.identifier_preparer.format_table(target)} AS "
                         f"{_empty_select(conn, shape)}")
    catalog_for(conn).restrict_access(target)


def _empty_select(conn: Connection, shape: sa.Select[Any]) -> str:
    """`shape` reading no row, compiled for the driver (`%` doubled, as exec_driver_sql wants), constants inlined."""
    empty = shape.where(sa.literal_column("1") == sa.literal_column("0"))
    return str(empty.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _archive_shape(table: sa.Table) -> sa.Select[Any]:
    """The archive's columns: the table's, and the fix id."""
    return sa.select(table, sa.cast(sa.null(), sa.String(40)).label(FIX_ID_COLUMN))


def _too_wide(table: sa.Table, said: object) -> str:
    return (f"the archive of {table.name!r} cannot be created: the database refuses a table with its columns and "
            f"dupewatch's {FIX_ID_COLUMN} (a VARCHAR(40)) as too wide a row ({said}); the table is within a few bytes "
            "of the largest row the server stores, so its rows cannot be archived as they are: change one of its "
            "VARCHAR columns to TEXT, or remove these duplicates by hand; nothing was changed")


def _taken_column(conn: Connection, table: sa.Table) -> str | None:
    """Why the archive of `table` cannot hold its columns beside its own `dupewatch_fix_id`: a column of the table
    of that name, or, where the database takes two names differing in case for one column
    (`Dialect.column_names_fold`), of that name in another case (`DupeWatch_Fix_ID`); None otherwise."""
    folds = for_backend(conn.dialect.name).column_names_fold
    for column in table.columns:
        if column.name == FIX_ID_COLUMN or (folds and column.name.lower() == FIX_ID_COLUMN):
            return (f"table {table.name!r} has a column named {column.name!r}, which the archive of its rows needs "
                    f"for dupewatch's own {FIX_ID_COLUMN}: dupewatch cannot archive its rows; rename that column, or "
                    "remove these duplicates by hand")
    return None


def archive_refusal(conn: Connection, table: sa.Table) -> str | None:
    """The dry run's answer to what `ensure_archive` would meet creating the archive of `table`: a column taking
    the archive's own column's name, or the server's refusal of its shape as too wide a row, asked without creating
    a table that lasts (`Dialect.refused_table_shape`); None when the server takes it or cannot be asked."""
    if taken := _taken_column(conn, table):
        return taken
    said = for_backend(conn.dialect.name).refused_table_shape(conn, _empty_select(conn, _archive_shape(table)))
    return None if said is None else _too_wide(table, said)


def ensure_archive(conn: Connection, table: sa.Table, schema: str | None, *, apart: bool = False) -> sa.Table:
    """The archive table of `table` in `schema`, created on first use; refuses one that no longer matches.
    Creating it takes the bookkeeping lock: a fix archiving referencing rows may share it with a fix of that
    table. `apart`: see `archive_name`."""
    name = archive_name(table, apart=apart)
    bookkeeping_lock(conn)
    if not sa.inspect(conn).has_table(name, schema=schema):
        if taken := _taken_column(conn, table):
            raise FixRefused(taken)
        # One statement: the table's columns and the fix id together. MariaDB commits DDL at once, so a separate
        # ALTER TABLE ... ADD that the server refused (a table close to its 65,535-byte row limit) left an archive
        # without the fix id, which every later run called "changed since an earlier fix".
        try:
            _create_empty(conn, name, schema, _archive_shape(table))
        except sa.exc.DBAPIError as exc:
            if exc.orig is None or not for_backend(conn.dialect.name).row_size_refusal(exc.orig):
                raise
            raise FixRefused(_too_wide(table, exc.orig.args[-1] if exc.orig.args else exc.orig)) from None
        preparer = conn.dialect.identifier_preparer
        target = preparer.format_table(sa.Table(name, sa.MetaData(), schema=schema))
        index = safe_identifier("", f"{name}_fix")  # hashed when shortened: long names sharing a prefix differ
        method = for_backend(conn.dialect.name).archive_tag_index
        using = f" USING {method}" if method else ""
        conn.exec_driver_sql(f"CREATE INDEX {preparer.quote(index)} ON {target}{using} "
                             f"({preparer.quote(FIX_ID_COLUMN)})")
    archive = columns_of(conn, name, schema)
    expected = {c.name for c in table.columns} | {FIX_ID_COLUMN}
    if {c.name for c in archive.columns} != expected:
        raise FixRefused(f"archive table {name!r} no longer matches the columns of {table.name!r} (the table "
                         "changed since an earlier fix); rename the archive table and run again")
    return archive


@dataclass(frozen=True)
class Copy:
    """A table of dupewatch's that holds copies of a user table's values: `columns` maps each copying column to the
    `source` column it copies (an archive: every column of the same name; a repoint log: the keys and the old and
    new values). `kind` names it for the operator (`archive table`, `repoint log table`)."""

    table: sa.Table
    source: sa.Table
    columns: dict[str, str]
    kind: str = "archive table"


def refuse_altered(conn: Connection, copies: Sequence[Copy]) -> None:
    """Refuse (`FixRefused`, nothing written) when a table a batch copies rows into would not keep them as they are,
    as the database's catalog states it (one read per kind, every table at once, on every run before the first
    batch): a copying column whose type differs from its source column's (a `numeric(10,2)` retyped `integer`
    keeps 12 of 12.34, and undo would put back 12), a trigger or rule on the table (a BEFORE INSERT trigger
    setting a column to NULL archives NULL; an event trigger may add an audit trigger to every new table), as far
    as the catalog shows them (MySQL/MariaDB list a table's triggers only to a role with TRIGGER on it, directly or
    by a role: without it they are not seen). The batch's account cannot tell: such a change writes no other
    row."""
    if not copies:
        return
    catalog = catalog_for(conn)
    held = [c.table for c in copies]
    quote = conn.dialect.identifier_preparer.quote
    types = catalog.column_types([*held, *[c.source for c in copies]])
    for j, copy in enumerate(copies):
        mine, theirs = types[j], types[len(copies) + j]
        for column, source in copy.columns.items():
            if column in mine and source in theirs and not catalog.same_type(mine[column], theirs[source]):
                raise FixRefused(
                    f"{copy.kind} {copy.table.name!r}: its column {column!r} is {mine[column] or '(no type)'}, but "
                    f"{copy.source.name}.{source} is {theirs[source] or '(no type)'} (one of them changed since "
                    f"dupewatch created {copy.table.name!r}): what the fix copies there would not be the rows' own "
                    f"values, and undo would put those back; give the column the type {theirs[source]} (ALTER TABLE "
                    f"{quote(copy.table.name)} ...), then run the fix again")
    found = catalog.user_triggers(held)
    if found:
        name, what = found[0]
        kind = next((c.kind for c in copies if c.table.name.lower() == name.lower()), "table")
        more = f" (and {len(found) - 1} more trigger(s) or rule(s) there)" if len(found) > 1 else ""
        raise FixRefused(f"{kind} {name!r} has {what}{more}: it may change or drop what the fix copies there, and "
                         "undo would put that back (an event trigger may add such a trigger to every new table); "
                         f"drop it from {quote(name)}, then run the fix again")


def columns_of(conn: Connection, name: str, schema: str | None) -> sa.Table:
    """Table `name` with its columns (names and types) only: all a batch's `INSERT ... SELECT` into an archive or log
    table needs. One catalog read where reflecting the whole table (keys, indexes, constraints, comments) takes
    about eleven on PostgreSQL."""
    columns = sa.inspect(conn).get_columns(name, schema=schema)
    return sa.Table(name, sa.MetaData(), *[sa.Column(c["name"], c["type"]) for c in columns], schema=schema)


def archive_rows(archive: sa.Table, table: sa.Table, fix_id: str, where: ColumnElement[bool],
                 limit: int | None = None, joined: sa.FromClause | None = None) -> sa.Insert:
    """INSERT INTO archive SELECT <the rows of `table` matching `where`>, tagged with the fix id. `joined`: the
    FROM clause to select from (`table` joined to the plan), for a join the database can drive by index."""
    names = [c.name for c in table.columns]
    source = sa.select(*table.columns, sa.literal(fix_id, sa.String(40)).label(FIX_ID_COLUMN)).where(where)
    if joined is not None:
        source = source.select_from(joined)
    if limit is not None:
        source = source.limit(limit)
    # preserve_rowcount: SQLAlchemy reports INSERT ... SELECT row counts only when asked to.
    return sa.insert(archive).from_select([*names, FIX_ID_COLUMN], source).execution_options(preserve_rowcount=True)


def restorable_columns(conn: Connection, table: sa.Table) -> list[str]:
    """Columns undo writes back: the archive keeps every column, but the database computes generated ones (and
    MariaDB's system-versioning `row_start`/`row_end`) again and refuses to be given them (catalog's word)."""
    generated = catalog_for(conn).generated_columns(table)
    return [c.name for c in table.columns if c.name not in generated and c.computed is None]


def added_since(conn: Connection, archive: sa.Table, table: sa.Table, fix_id: str) -> list[str]:
    """The columns added to `table` since the fix archived its rows (a migration deployed in between): restored
    rows get their default, as the table's other rows did when the column was added. Refuses (nothing changed)
    when that cannot put the rows back: a column the archive has is gone while another was added (a rename
    looks so, and its archived values would come back empty) and the fix's archived rows hold a value there (the
    archive is shared by the fixes of its table: a column holding NULL in every row of this fix, an earlier fix's
    values only, loses nothing of this fix's), or an added column has no value to give a row (part of the primary
    key, or NOT NULL without a default)."""
    archived = {c.name for c in archive.columns} - {FIX_ID_COLUMN}
    added = [n for n in restorable_columns(conn, table) if n not in archived]
    if not added:
        return []
    # The archive had every column of the table when each of its fixes ran (`ensure_archive`): a column it lacks
    # now may be one dropped from it by hand, whose archived values are gone, not one added to the table. The
    # database says: the archive's columns now against those it reported when the fix first ran, recorded in the
    # fix's record (an archive is shared by the fixes of its table: a column it gained since is none of this
    # fix's, and one dropped before this fix ran was never this fix's either). Only a column of the table counts:
    # one dropped from the table too puts nothing back (its values wanted gone from both, say).
    recorded = archive_columns(conn, fix_id, archive)
    lost = [n for n in added if n in recorded] if recorded is not None else []
    if lost:
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: archive table {archive.name!r} no longer "
                         f"has column(s) it had when the fix archived its rows there ({', '.join(lost)}), and "
                         "dupewatch never drops them: they were dropped by hand, with the values the fix archived "
                         f"there, and the restored rows of {table.name!r} would get the column's default instead; "
                         f"give {archive.name!r} the column back with its values and undo again, or restore the "
                         "rows by hand")
    if recorded is None and catalog_for(conn).lost_columns(archive):
        # (a fix recorded without its archives' columns: where the catalog keeps a trace of a dropped column,
        # PostgreSQL's, it tells, without naming it)
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: {table.name!r} has column(s) that "
                         f"archive table {archive.name!r} lacks ({', '.join(added)}), and columns were dropped from "
                         "the archive since dupewatch created it (dupewatch never drops them): the values the fix "
                         "archived there may be gone, and the restored rows would get the column's default instead; "
                         f"restore the rows by hand from {archive.name!r}, or give it the column back with its values "
                         "and undo again")
    head = f"undo of fix {fix_id} refused, nothing changed: {table.name!r} has column(s) added since the fix"
    held = _held_values(conn, archive, table, fix_id)
    if held:
        counts = ", ".join(f"{name}: {count} row(s)" for name, count in held.items())
        raise FixRefused(f"{head} ({', '.join(added)}) and lacks archived one(s) that hold values of this fix's "
                         f"rows ({counts}): a renamed column's archived values would come back empty; give the table "
                         f"the archived columns back for the undo, or restore the rows by hand from {archive.name!r}")
    empty = [n for n in added if table.c[n].primary_key or not (
        table.c[n].nullable or table.c[n].server_default is not None or table.c[n].identity is not None)]
    if empty:
        raise FixRefused(f"{head} that the restored rows would have no value for ({', '.join(empty)}: part of the "
                         "primary key, or NOT NULL without a default); give it a default for the undo, or restore "
                         f"the rows by hand from {archive.name!r}")
    return added


def dropped_since(conn: Connection, archive: sa.Table, table: sa.Table, fix_id: str) -> list[str]:
    """The archived columns `table` no longer has (dropped by a migration since the fix) where the fix's archived
    rows hold a value: undo restores the rows without them, and those values stay in the archive, not restored.
    The archive is shared by the fixes of its table: a dropped column whose values were an earlier fix's (NULL in
    every row of this one) keeps nothing of this fix's rows, and is not named (the database says, one statement)."""
    return list(_held_values(conn, archive, table, fix_id))


def _held_values(conn: Connection, archive: sa.Table, table: sa.Table, fix_id: str) -> dict[str, int]:
    """The archived columns `table` no longer has, each with how many of the fix's archived rows hold a value
    (not NULL) there, for those where any does, in the archive's order (one statement; none without such
    columns)."""
    kept = {c.name for c in table.columns}
    gone = [c for c in archive.columns if c.name != FIX_ID_COLUMN and c.name not in kept]
    if not gone:
        return {}
    counts = conn.execute(sa.select(*[sa.func.count(c) for c in gone])
                          .where(archive.c[FIX_ID_COLUMN] == fix_id)).one()
    return {c.name: int(n) for c, n in zip(gone, counts, strict=True) if n}


def restore_rows(conn: Connection, archive: sa.Table, table: sa.Table, fix_id: str) -> int:
    """Put the fix's archived rows back into `table`, original keys included; returns the rows inserted.
    The database then says whether the rows it holds are the archived ones, every restored column compared as
    stored: a BEFORE INSERT trigger (`NEW.updated_at := now()`, a key from a sequence) or a rule may change
    a row as it is inserted, and then undo refuses (raises `FixRefused`) rather than restore other values."""
    added = set(added_since(conn, archive, table, fix_id))
    names = [n for n in restorable_columns(conn, table) if n not in added]
    tagged = archive.c[FIX_ID_COLUMN] == fix_id
    matching = _matching_count(conn, archive, table, names, tagged)
    before = conn.execute(matching).scalar_one() if not table.primary_key.columns else 0
    source = sa.select(*[archive.c[n] for n in names]).where(tagged)
    if not any(c.identity is not None and c.identity.always for c in table.columns):
        insert = sa.insert(table).from_select(names, source).execution_options(preserve_rowcount=True)
        inserted = int(conn.execute(for_backend(conn.dialect.name).abort_on_conflict(insert)).rowcount)
    else:
        # PostgreSQL refuses values for a GENERATED ALWAYS identity column unless the INSERT overrides it, and
        # SQLAlchemy has no construct for OVERRIDING SYSTEM VALUE.
        preparer = conn.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(n) for n in names)
        body = str(source.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        inserted = int(conn.exec_driver_sql(f"INSERT INTO {preparer.format_table(table)} ({columns}) OVERRIDING "
                                            f"SYSTEM VALUE {body}").rowcount)
    same = conn.execute(matching).scalar_one() - before
    if same != inserted:
        raise NotAsArchived(fix_id, table.name, inserted - same, inserted)
    return inserted


def _matching_count(conn: Connection, archive: sa.Table, table: sa.Table, names: list[str],
                    tagged: ColumnElement[bool]) -> sa.Select[Any]:
    """How many rows of `table` equal an archived row of the fix in every restored column (as stored, NULL-safe:
    `Dialect.stored_identity`, not the type's `=`, which finds citext 'Bob' and 'bob' equal). With a primary key,
    from the archive's side (each archived row meets at most its own restored row); without one, the table's rows
    that have an equal one in the archive (identical rows kept by the fix count before and after the restore alike)."""
    rules = for_backend(conn.dialect.name)
    same = sa.and_(*[rules.stored_identity(table.c[n], table.c[n]).is_not_distinct_from(
        rules.stored_identity(archive.c[n], table.c[n])) for n in names])
    if table.primary_key.columns:
        # (the key's `=` as well: a join the database can hash or look up by index, and what it finds is then
        # compared as stored)
        keys = [table.c[c.name] == archive.c[c.name] for c in table.primary_key.columns if c.name in names]
        return sa.select(sa.func.count()).select_from(archive.join(table, sa.and_(*keys, same))).where(tagged)
    return sa.select(sa.func.count()).select_from(table).where(sa.exists().where(tagged, same))


def archived_count(conn: Connection, archive: sa.Table, fix_id: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(archive)
                            .where(archive.c[FIX_ID_COLUMN] == fix_id)).scalar_one())


def reflect_archive(conn: Connection, schema: str | None, name: str) -> sa.Table | None:
    if not sa.inspect(conn).has_table(name, schema=schema):
        return None
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
