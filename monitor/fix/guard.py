"""The guard: the unique index every seed incident ended with, added once the duplicates are gone.

- PostgreSQL: `CREATE UNIQUE INDEX CONCURRENTLY` on an autocommit connection (the table stays writable),
  `NULLS NOT DISTINCT` on 15+ when the check treats NULLs as equal, an expression index (`lower()`,
  `trim()`) for case-insensitive or trimmed keys, and the check's `where` as a partial-index predicate
  (PostgreSQL itself refuses a predicate that is not immutable, e.g. one using `now()`; we then refuse
  too). The index is verified with `pg_index.indisvalid`; a failed or invalid build is dropped.
- MySQL/MariaDB: `CREATE UNIQUE INDEX` (an online `ALTER TABLE ... ADD UNIQUE`), atomic. Expression keys need
  MySQL 8.0.13+ functional key parts; MariaDB has none, and we refuse rather than add a generated column
  behind the application's back (it changes `SELECT *` and column-less INSERTs). No partial indexes.
- SQLite: `CREATE UNIQUE INDEX`, expressions and partial indexes included, inside a transaction.

MySQL, MariaDB and SQLite (and PostgreSQL before 15) treat NULLs in a unique index as distinct; when the
check treats them as equal and a key column is nullable, the report says so. If duplicates exist (they
arrived after the fix), nothing is built and the refusal says so. The index name is deterministic:
`uq_dupewatch_<check>`, sanitised, at most 63 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import DatabaseError
from monitor.engine import Monitor
from monitor.fix.errors import FixRefused
from monitor.fix.execute import _Target, target
from monitor.fix.records import safe_identifier


@dataclass
class GuardReport:
    check: str
    index_name: str
    created: bool
    statement: str
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "constraint": self.index_name, "created": self.created,
                "statement": self.statement, "notes": self.notes}


def guard_name(check: str) -> str:
    return safe_identifier("uq_dupewatch_", check, strict=False)


def add_guard(monitor: Monitor, check: str) -> GuardReport:
    """Add the unique index for `check`; idempotent. Raises `FixRefused` with the reason when it cannot."""
    t = target(monitor, check)
    name = guard_name(t.config.name)
    index = _index(t, name)
    statement = _shown(sa.schema.CreateIndex(index), t.db.writer.dialect)
    notes = _null_notes(t)
    try:
        with t.db.connect(t.db.writer) as conn:
            if _exists(conn, t, name):
                return GuardReport(t.config.name, name, False, statement, [f"index {name} already exists", *notes])
            _refuse_if_duplicates(conn, t)
            if t.db.dialect == "postgresql":
                _build_postgresql(conn, t, name, index)
            else:
                _build(conn, t, index)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(t.db.describe(exc)) from None
    return GuardReport(t.config.name, name, True, statement, notes)


def _shown(ddl: sa.schema.CreateIndex, dialect: sa.Dialect) -> str:
    """The statement as the operator would type it: compiled for the driver, every `%` would be doubled."""
    return str(ddl.compile(dialect=type(dialect)(paramstyle="named"))).strip()


def _normalised(t: _Target) -> bool:
    return any(e is not c for e, c in zip(t.tc.key_exprs, t.tc.key_columns, strict=True))


def _index(t: _Target, name: str) -> sa.Index:
    dialect, check = t.db.dialect, t.config
    options: dict[str, Any] = {}
    if check.where:
        if dialect == "mysql":
            raise FixRefused(f"check {check.name!r} has a `where` filter and MySQL/MariaDB have no partial "
                             "indexes: a unique index would also cover the rows the check ignores; add the "
                             "constraint by hand")
        options[f"{dialect}_where"] = sa.literal_column(f"({check.where})", sa.Boolean)
    if dialect == "postgresql":
        options["postgresql_concurrently"] = True
        if check.nulls == "equal" and _nullable_key(t) and _pg_version(t) >= 150000:
            options["postgresql_nulls_not_distinct"] = True
    if dialect == "mysql" and _normalised(t):
        version = _mysql_version(t)
        if "mariadb" in version.lower():
            raise FixRefused(f"check {check.name!r} compares its key case-insensitively or trimmed, which needs an "
                             "expression index; MariaDB has none (a generated column would change the table's "
                             "shape for the application): add the constraint by hand")
        numbers = tuple(int(p) for p in version.split("-")[0].split(".")[:3] if p.isdigit())
        if numbers < (8, 0, 13):
            raise FixRefused(f"check {check.name!r} needs an expression index (lower()/trim()), which requires "
                             f"MySQL 8.0.13 or later (server is {version})")
    return sa.Index(name, *t.tc.key_exprs, unique=True, **options)


def _nullable_key(t: _Target) -> bool:
    return any(c.nullable for c in t.tc.key_columns)


def _null_notes(t: _Target) -> list[str]:
    if t.config.nulls != "equal" or not _nullable_key(t):
        return []
    if t.db.dialect == "postgresql" and _pg_version(t) >= 150000:
        return []
    where = {"postgresql": "PostgreSQL before 15", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}[t.db.dialect]
    return [f"{where} unique indexes treat NULLs as distinct: rows whose key has a NULL are not guarded, "
            "although the check counts them as duplicates (nulls = \"equal\")"]


def _pg_version(t: _Target) -> int:
    with t.db.connect(t.db.writer) as conn:
        return int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())


def _mysql_version(t: _Target) -> str:
    with t.db.connect(t.db.writer) as conn:
        return str(conn.execute(sa.text("SELECT VERSION()")).scalar_one())


def _exists(conn: Connection, t: _Target, name: str) -> bool:
    with conn.begin():
        indexes = sa.inspect(conn).get_indexes(t.tc.table.name, schema=t.tc.table.schema)
    return any(index.get("name") == name for index in indexes)


def _refuse_if_duplicates(conn: Connection, t: _Target) -> None:
    with conn.begin():
        groups, excess = conn.execute(t.tc.figures()).one()
    if groups:
        raise FixRefused(f"check {t.config.name!r} has {groups} duplicate group(s) ({excess} excess rows), "
                         "perhaps new ones that arrived after the fix; nothing was built: fix them first "
                         f"(dupewatch fix {t.config.name})")


def _duplicate_message(t: _Target, exc: sa.exc.DBAPIError) -> str:
    return (f"building the unique index for {t.config.name!r} failed and nothing was left behind: "
            f"{t.db.describe(exc)} (new duplicates may have arrived meanwhile: run the check and fix again)")


def _build(conn: Connection, t: _Target, index: sa.Index) -> None:
    try:
        with conn.begin():
            conn.execute(sa.schema.CreateIndex(index))
    except sa.exc.DBAPIError as exc:
        raise FixRefused(_duplicate_message(t, exc)) from None


def _build_postgresql(conn: Connection, t: _Target, name: str, index: sa.Index) -> None:
    """CONCURRENTLY cannot run in a transaction; a failed build leaves an INVALID index we must drop."""
    auto = conn.execution_options(isolation_level="AUTOCOMMIT")
    preparer = conn.dialect.identifier_preparer
    qualified = (f"{preparer.quote_schema(t.tc.table.schema)}." if t.tc.table.schema else "") + preparer.quote(name)
    timeout_ms = int(t.db.config.statement_timeout * 1000)
    auto.exec_driver_sql("SET statement_timeout = 0")  # a concurrent build takes as long as the table needs
    try:
        try:
            auto.execute(sa.schema.CreateIndex(index))
        except sa.exc.DBAPIError as exc:
            _drop(auto, qualified)
            raise FixRefused(_duplicate_message(t, exc)) from None
        valid = auto.execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                             {"n": qualified}).scalar()
        if not valid:
            _drop(auto, qualified)
            raise FixRefused(f"the unique index {name} was built INVALID and has been dropped; run the check "
                             "and try again")
    finally:
        auto.exec_driver_sql(f"SET statement_timeout = {timeout_ms}")


def _drop(conn: Connection, qualified: str) -> None:
    conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")
