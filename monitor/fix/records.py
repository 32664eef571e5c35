"""dupewatch's own bookkeeping in the target database: the fix record and the repoint log.

`dupewatch_fix` holds one row per fix (who, when, which check and table, state, counts, resume point, and the
columns of each archive it writes as the database reported them when it first ran: `archives`, added to a table
made before it);
`dupewatch_fix_reference` each reference a fix repointed or archived (and the table holding its log);
`dupewatch_fix_repoint` the repoints of fixes made by dupewatch 0.1 (never created now: read by undo and purge
where an old fix left it). They live in the database's default schema, or in `[fix] schema`: they are declared in
the placeholder schema `BOOKKEEPING`, which every connection of `Database.bookkeeping` translates (SQLAlchemy's
`schema_translate_map`). The first two are created on first use.
Timestamps are ISO 8601 UTC text, the same on every dialect.
"""

from __future__ import annotations

import getpass
import json
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import first_line
from monitor.dialects import for_backend
from monitor.fix.errors import FixRefused

FIX_TABLE = "dupewatch_fix"
REPOINT_TABLE = "dupewatch_fix_repoint"
REFERENCE_TABLE = "dupewatch_fix_reference"
MAX_IDENTIFIER = 63  # PostgreSQL's limit, the smallest of the three

# planned: snapshot taken, nothing changed yet; running: batches under way (also after a crash);
# stopped: cancelled between batches; failed: a batch was refused; done; undone; discarded (never ran);
# purged: a done, undone or abandoned fix whose archived rows and logs were deleted (`dupewatch fixes purge`);
# abandoned: an unfinished fix given up (`dupewatch fixes abandon`): what its batches did stays, undoable.
UNFINISHED = ("planned", "running", "stopped", "failed")
ABANDONED = "abandoned"

BOOKKEEPING = "__dupewatch_bookkeeping__"  # placeholder schema, translated per connection (see the docstring)
_metadata = sa.MetaData(schema=BOOKKEEPING)
fix_table = sa.Table(
    FIX_TABLE, _metadata,
    sa.Column("fix_id", sa.String(40), primary_key=True),
    sa.Column("check_name", sa.String(200), nullable=False),
    sa.Column("table_name", sa.String(400), nullable=False),
    sa.Column("identity", sa.String(16), nullable=False),
    sa.Column("plan_table", sa.String(80), nullable=False),
    sa.Column("archive_table", sa.String(80), nullable=False),
    sa.Column("os_user", sa.String(128), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("total_groups", sa.BigInteger, nullable=False, default=0),
    sa.Column("done_through", sa.BigInteger, nullable=False, default=0),
    sa.Column("groups", sa.BigInteger, nullable=False, default=0),
    sa.Column("deleted", sa.BigInteger, nullable=False, default=0),
    sa.Column("archived", sa.BigInteger, nullable=False, default=0),
    sa.Column("repointed", sa.BigInteger, nullable=False, default=0),
    sa.Column("skipped", sa.BigInteger, nullable=False, default=0),
    sa.Column("constraint_name", sa.String(80)),
    sa.Column("message", sa.Text),
)
# `dupewatch_fix.archives` (JSON, NULL for a fix recorded before it existed): each archive the fix writes, as
# {"schema": ..., "table": ..., "columns": [...]}, its columns as the database reported them when the fix first
# ran. Not a column of `fix_table`: a `dupewatch_fix` made before it lacks it until a fix adds it
# (`record_archives`), and every other read of the records (the daemon's, through a read-only role) stays as it was.
ARCHIVES_COLUMN = "archives"

# Apart from `_metadata`, so that `ensure_tables` never creates it.
repoint_table = sa.Table(
    REPOINT_TABLE, sa.MetaData(schema=BOOKKEEPING),
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("fix_id", sa.String(40), nullable=False, index=True),
    sa.Column("child_schema", sa.String(128)),
    sa.Column("child_table", sa.String(128), nullable=False),
    sa.Column("fk_columns", sa.Text, nullable=False),
    sa.Column("child_key", sa.Text, nullable=False),
    sa.Column("old_value", sa.Text, nullable=False),
    sa.Column("new_value", sa.Text, nullable=False),
)


reference_table = sa.Table(
    REFERENCE_TABLE, _metadata,
    sa.Column("fix_id", sa.String(40), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("child_schema", sa.String(128)),
    sa.Column("child_table", sa.String(128), nullable=False),
    sa.Column("fk_columns", sa.Text, nullable=False),  # JSON list of the referencing column names
    sa.Column("referred_columns", sa.Text, nullable=False),  # JSON list of the fixed table's column names
    sa.Column("action", sa.String(16), nullable=False),  # repoint | archive
    sa.Column("log_table", sa.String(80), nullable=False),  # the repoint log, or the child's archive
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),  # rows repointed or archived so far
)


@dataclass(frozen=True)
class FixRecord:
    """One row of `dupewatch_fix`."""

    fix_id: str
    check_name: str
    table_name: str
    identity: str
    plan_table: str
    archive_table: str
    os_user: str
    host: str
    created_at: str
    finished_at: str | None
    state: str
    total_groups: int
    done_through: int
    groups: int
    deleted: int
    archived: int
    repointed: int
    skipped: int
    constraint_name: str | None
    message: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "fix_id": self.fix_id, "check": self.check_name, "table": self.table_name, "state": self.state,
            "user": self.os_user, "host": self.host, "started_at": self.created_at,
            "finished_at": self.finished_at, "groups": self.groups, "deleted": self.deleted,
            "archived": self.archived, "repointed": self.repointed, "skipped": self.skipped,
            "total_groups": self.total_groups, "constraint": self.constraint_name, "message": self.message,
        }


# How an undone fix's `message` starts; a purge of it keeps this (the record's state becomes `purged`), so the
# rows its undo restored are still counted (`monitor.fixstats`, `dupewatch_fix_restored_rows_total`).
UNDONE_BY = "undone by "


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_fix_id() -> str:
    """Sortable by time, unique enough: `20240501-120000-3fa9c1`."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def host_name() -> str:
    return socket.gethostname()


def safe_identifier(prefix: str, name: str, *, strict: bool = True) -> str:
    """`prefix + name` as a plain lowercase identifier of at most 63 characters, deterministic.

    A hash of the original name is appended when it had to be shortened and, if `strict`, whenever
    sanitising changed it, so that two different names never share an identifier.
    """
    plain = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "x"
    candidate = prefix + plain
    if (plain == name or not strict) and len(candidate) <= MAX_IDENTIFIER:
        return candidate
    digest = sha256(name.encode()).hexdigest()[:8]
    return f"{candidate[:MAX_IDENTIFIER - 9]}_{digest}"


_BOOKKEEPING_LOCK = int.from_bytes(sha256(b"dupewatch bookkeeping").digest()[:8], "big", signed=True)


def bookkeeping_lock(conn: Connection) -> None:
    """Serialise the creation of dupewatch's tables between processes, for the rest of the transaction.

    PostgreSQL's `CREATE TABLE IF NOT EXISTS` still fails when two sessions race (a duplicate in
    `pg_type_typname_nsp_index`), so a transaction-level advisory lock comes first. MySQL/MariaDB create a
    table atomically and SQLite's write transaction already excludes other writers."""
    for_backend(conn.dialect.name).serialise_table_creation(conn, _BOOKKEEPING_LOCK)


def ensure_tables(conn: Connection) -> None:
    """Create dupewatch's bookkeeping tables where missing; a new one grants nothing to anyone but its owner
    (`Catalog.restrict_access`). An operator may let the detection role read `dupewatch_fix` afterwards (the
    daemon's `dupewatch_fix_deleted_rows_total`): GRANT SELECT on it and, on PostgreSQL, where the table has
    row-level security with no policy, also a policy (`CREATE POLICY ... FOR SELECT TO <role> USING (true)`):
    a grant alone reads no row there, and the totals read 0. Both are kept."""
    from monitor.fix.catalog import catalog_for

    bookkeeping_lock(conn)
    inspector = sa.inspect(conn)
    schema = home(conn)
    if schema is not None and not inspector.has_schema(schema):
        raise FixRefused(f"[fix] schema {schema!r} does not exist in this database; create it first "
                         f"(PostgreSQL: CREATE SCHEMA {schema}; MySQL/MariaDB: CREATE DATABASE {schema})")
    missing = [t for t in _metadata.sorted_tables if not inspector.has_table(t.name, schema=schema)]
    try:
        _metadata.create_all(conn, tables=missing, checkfirst=True)
        for table in missing:
            catalog_for(conn).restrict_access(sa.Table(table.name, sa.MetaData(), schema=schema))
    except sa.exc.OperationalError:
        # MySQL/MariaDB: another process created a table between the check and the CREATE (DDL commits at
        # once there, so nothing of ours is lost); a second pass finds it.
        if for_backend(conn.dialect.name).error_aborts_transaction or not tables_exist(conn):
            raise
        _metadata.create_all(conn, checkfirst=True)


def home(conn: Connection) -> str | None:
    """The schema dupewatch's own tables live in on this connection (None: the default schema)."""
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    return translate.get(BOOKKEEPING)


def own_tables(conn: Connection) -> list[sa.Table]:
    """The bookkeeping tables a fix's step writes (its record, its links' entries), as this connection places them."""
    return [sa.Table(t.name, sa.MetaData(), schema=home(conn)) for t in (fix_table, reference_table)]


def place(conn: Connection, schema: str | None) -> str | None:
    """Where a fix's tables for a table in `schema` go: `[fix] schema` when set, else beside the table."""
    chosen = home(conn)
    return schema if chosen is None else chosen


def tables_exist(conn: Connection) -> bool:
    """Whether dupewatch's bookkeeping tables exist (whoever may read them)."""
    return sa.inspect(conn).has_table(FIX_TABLE, schema=home(conn))


def has_tables(conn: Connection) -> bool:
    """Whether dupewatch's bookkeeping tables exist, for a connection that reads and writes them: raises
    `FixRefused` when they belong to a role this one may not act for (see `unusable_tables`), or when the server
    will not say (MariaDB answers a role holding grants on some tables only with "SELECT command denied" for a
    table that does not exist as for one it may not read), naming what the role needs."""
    try:
        exists = tables_exist(conn)
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        where = f"{home(conn)}.{FIX_TABLE}" if home(conn) else FIX_TABLE
        raise FixRefused(
            f"the fix role may not tell whether dupewatch's fix records ({where}) exist: the database says "
            f"{first_line(exc)!r}; the fix keeps its records, plans and archives in tables it creates beside the "
            "table (or in [fix] schema): grant the fix role CREATE there, and SELECT, INSERT, UPDATE on the "
            "tables it creates") from None
    if not exists:
        return False
    refusals = unusable_tables(conn)
    if refusals:
        raise FixRefused(refusals[0])
    return True


def unusable_tables(conn: Connection, also: Sequence[sa.Table] = ()) -> list[str]:
    """A refusal per bookkeeping table this connection's role may not read and write: they grant nothing to
    anyone but their owner, so a fix through another role than the one that ran the first fix (a `fix_url`
    added later) would fail on them. `also`: more of dupewatch's tables a fix will write (the archives an
    earlier fix created), checked where they exist. [] when none of the tables exists yet."""
    from monitor.fix.catalog import catalog_for

    schema = home(conn)
    tables = list(also)
    if sa.inspect(conn).has_table(FIX_TABLE, schema=schema):
        tables[:0] = [sa.Table(name, sa.MetaData(), schema=schema) for name in (FIX_TABLE, REFERENCE_TABLE)]
    if not tables:
        return []
    foreign = catalog_for(conn).foreign_owners(tables)
    if not foreign:
        return []
    quote = conn.dialect.identifier_preparer.quote
    role = quote(str(conn.execute(sa.select(sa.func.current_user())).scalar()))
    return [f"dupewatch's table {quote(where)}.{quote(name)} belongs to {quote(owner)}, and this fix role {role} "
            "may not read and write it (dupewatch's tables grant nothing to anyone but their owner): run the fix "
            f"as {quote(owner)}, or give it to this role (ALTER TABLE {quote(where)}.{quote(name)} OWNER TO "
            f"{role}, and so for the other dupewatch_* tables there), or set [fix] schema to a schema of the fix "
            "role's own"
            for where, name, owner in foreign]


def planning(conn: Connection, check: str, table_name: str) -> list[FixRecord]:
    """Fixes of this check and table whose snapshot never finished (a process killed while planning)."""
    statement = sa.select(fix_table).where(fix_table.c.check_name == check, fix_table.c.table_name == table_name,
                                           fix_table.c.state == "planning")
    return [_record(row) for row in conn.execute(statement)]


def insert_record(conn: Connection, **values: Any) -> None:
    conn.execute(fix_table.insert().values(**values))


def update_record(conn: Connection, fix_id: str, **values: Any) -> None:
    conn.execute(fix_table.update().where(fix_table.c.fix_id == fix_id).values(**values))


def _record(row: Any) -> FixRecord:
    data = dict(row._mapping)
    for f in fields(FixRecord):
        if f.type == "int":
            data[f.name] = int(data[f.name] or 0)
    return FixRecord(**data)


def get_record(conn: Connection, fix_id: str, *, lock: bool = False) -> FixRecord | None:
    statement = sa.select(fix_table).where(fix_table.c.fix_id == fix_id)
    if lock and for_backend(conn.dialect.name).row_locks:
        statement = statement.with_for_update()
    row = conn.execute(statement).first()
    return None if row is None else _record(row)


def records(conn: Connection, check: str | None = None) -> list[FixRecord]:
    statement = sa.select(fix_table).order_by(fix_table.c.created_at.desc(), fix_table.c.fix_id.desc())
    if check is not None:
        statement = statement.where(fix_table.c.check_name == check)
    return [_record(row) for row in conn.execute(statement)]


def unfinished(conn: Connection, check: str, table_name: str) -> FixRecord | None:
    """The newest fix of this check and table that did not run to its end (to resume)."""
    statement = (sa.select(fix_table)
                 .where(fix_table.c.check_name == check, fix_table.c.table_name == table_name,
                        fix_table.c.state.in_(UNFINISHED))
                 .order_by(fix_table.c.created_at.desc()).limit(1))
    row = conn.execute(statement).first()
    return None if row is None else _record(row)


def _archives_table(conn: Connection) -> sa.Table:
    return sa.Table(FIX_TABLE, sa.MetaData(), sa.Column("fix_id", sa.String(40)), sa.Column(ARCHIVES_COLUMN, sa.Text),
                    schema=home(conn))


def _has_archives_column(conn: Connection) -> bool:
    return any(c["name"] == ARCHIVES_COLUMN for c in sa.inspect(conn).get_columns(FIX_TABLE, schema=home(conn)))


def record_archives(conn: Connection, fix_id: str, archives: Sequence[sa.Table]) -> None:
    """Record in the fix's record the columns of each archive it writes (`archives`, as the database reports them
    now: `archive.columns_of`), on its first run; a later run keeps what the first recorded. Adds the column
    `archives` to a `dupewatch_fix` made before it (DDL: call inside a DDL step). Undo compares them with the
    archive's columns then (`archive.added_since`): one gone was dropped from it by hand, with the values the fix
    archived there."""
    bookkeeping_lock(conn)
    if not _has_archives_column(conn):
        preparer = conn.dialect.identifier_preparer
        target = preparer.format_table(sa.Table(FIX_TABLE, sa.MetaData(), schema=home(conn)))
        rules = for_backend(conn.dialect.name)
        try:
            conn.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN {preparer.quote(ARCHIVES_COLUMN)} "
                                 f"{sa.Text().compile(dialect=conn.dialect)}")
        except sa.exc.DBAPIError as exc:
            if not rules.error_aborts_transaction and rules.privilege_refusal(exc.orig or exc) is not None:
                # MySQL/MariaDB: a fix role without ALTER (a fix needs none but the guard's) fixed before this
                # column existed and fixes still; its fixes are recorded as before it, undone as those are
                return
            # MySQL/MariaDB: another process added it between the check and the ALTER (see `ensure_tables`)
            if rules.error_aborts_transaction or not _has_archives_column(conn):
                raise
    table = _archives_table(conn)
    if conn.execute(sa.select(table.c[ARCHIVES_COLUMN]).where(table.c.fix_id == fix_id)).scalar() is not None:
        return
    recorded = list({(a.schema, a.name): {"schema": a.schema, "table": a.name, "columns": [c.name for c in a.columns]}
                     for a in archives}.values())
    conn.execute(table.update().where(table.c.fix_id == fix_id).values({ARCHIVES_COLUMN: json.dumps(recorded)}))


def archive_columns(conn: Connection, fix_id: str, archive: sa.Table) -> list[str] | None:
    """The columns `archive` had when fix `fix_id` first ran, as recorded then (`record_archives`); None for a
    fix recorded without them (made before dupewatch recorded them)."""
    if not _has_archives_column(conn):
        return None
    table = _archives_table(conn)
    text = conn.execute(sa.select(table.c[ARCHIVES_COLUMN]).where(table.c.fix_id == fix_id)).scalar()
    if text is None:
        return None
    entries = json.loads(text)
    same = [e for e in entries if e["table"] == archive.name and e["schema"] == archive.schema]
    named = [e for e in entries if e["table"] == archive.name]
    found = same or (named if len(named) == 1 else [])  # (a schema named otherwise than at the fix: one by name)
    return list(found[0]["columns"]) if found else None
