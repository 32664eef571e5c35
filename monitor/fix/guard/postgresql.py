"""The guard on PostgreSQL: `CREATE UNIQUE INDEX CONCURRENTLY` outside a transaction, the definition asked of
PostgreSQL on an empty temporary copy of the table, partitioned tables partition by partition, and a build under
the table's write lock (`--lock-timeout`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors

from monitor.db import DatabaseError, first_line
from monitor.detect import where_condition
from monitor.fix.accounting import DdlAccount
from monitor.fix.errors import FixRefused
from monitor.fix.guard.build import Builder, lock_refused, milliseconds
from monitor.fix.guard.report import ConcurrentBuildRefused, GuardInterrupted, GuardReport
from monitor.fix.records import safe_identifier
from monitor.fix.target import Target

_TRIAL_TABLE = "dupewatch_guard_trial"


_PG_INDEX = sa.text(
    "SELECT i.indisvalid, i.indisready, i.indisunique, i.indrelid = c2.oid AS on_table, "
    "pg_get_indexdef(i.indexrelid) AS definition, c2.relkind "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
    "LEFT JOIN pg_catalog.pg_class c2 ON c2.relname = :table AND c2.relnamespace = n.oid "
    "WHERE c.relname = :name AND n.nspname = COALESCE(:schema, current_schema())")
# How long the up-front probe (`probe`) waits for a partitioned table's SHARE lock, queueing its writers meanwhile.
_PROBE_LOCK_WAIT = 0.5
# The commands a concurrent build (and the cleanup of a failed one) runs outside a transaction; a partitioned table's
# index is attached to its parent's (ALTER INDEX ... ATTACH PARTITION).
_CONCURRENT_TAGS = ("CREATE INDEX", "DROP INDEX", "ALTER INDEX")
_PG_RELKIND = sa.text(
    "SELECT c.oid, c.relkind, n.nspname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :table AND n.nspname = COALESCE(:schema, current_schema())")
_PG_PARTITIONS = sa.text(
    "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_inherits h "
    "JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE h.inhparent = :parent ORDER BY n.nspname, c.relname")


class PostgresBuilder(Builder):
    """CONCURRENTLY outside a transaction; partitioned tables partition by partition."""

    nulls_distinct_in = "PostgreSQL before 15"

    def __init__(self, t: Target) -> None:
        super().__init__(t)
        self.version = self._scalar("SHOW server_version_num", int)
        self.relid, relkind, self.schema = self._relation()
        self.partitioned = relkind == "p"

    def _scalar(self, sql: str, cast: Callable[[Any], Any]) -> Any:
        with self.t.db.connect(self.t.db.writer) as conn:
            return cast(conn.execute(sa.text(sql)).scalar_one())

    def _relation(self) -> tuple[int, str, str]:
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(_PG_RELKIND, {"table": table.name, "schema": table.schema}).one()
        return int(row.oid), str(row.relkind), str(row.nspname)

    def qualified(self, name: str) -> str:
        """`schema.name` in the table's schema as the catalog has it, so a printed statement runs anywhere."""
        return self.qualified_in(self.schema, name)

    def nulls_not_distinct(self) -> bool:
        return bool(self.version >= 150000)

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        where: list[sa.ColumnElement[bool]] = []
        if self.t.config.where:
            where.append(where_condition(self.t.config.where))
        if self.t.config.nulls != "distinct" and self.nullable_key() and self.nulls_not_distinct():
            options["postgresql_nulls_not_distinct"] = True
            if self.t.config.nulls == "skip_all_null":  # rows the check skips are not one entity either
                where.extend(self.t.tc.null_filters)
        if where:
            options["postgresql_where"] = sa.and_(*where) if len(where) > 1 else where[0]
        return options

    def index(self, *, concurrently: bool) -> sa.Index:
        return self.index_on(self.t.tc.table, self.name, concurrently=concurrently and not self.partitioned)

    def index_on(self, table: sa.Table, name: str, *, concurrently: bool) -> sa.Index:
        parts = _rebind(self.key_parts(), table) if table is not self.t.tc.table else self.key_parts()
        options = self._options()
        if table is not self.t.tc.table and "postgresql_where" in options:
            options["postgresql_where"] = _rebind([options["postgresql_where"]], table)[0]
        if concurrently:
            options["postgresql_concurrently"] = True
        return sa.Index(name, *parts, unique=True, **options)

    def expected_definition(self) -> str:
        """The definition PostgreSQL deparses for our index, tried on an empty temporary copy of the table.

        Also where PostgreSQL refuses what we would build (a `where` or key that is not IMMUTABLE) before
        anything is built; the trial is rolled back."""
        trial = _shadow(self.t, _TRIAL_TABLE, None)
        with self.t.db.connect(self.t.db.writer) as conn, conn.begin() as tx:
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {self.q(_TRIAL_TABLE)} (LIKE {self.table_sql}) "
                                 "ON COMMIT DROP")
            try:
                with conn.begin_nested():
                    conn.execute(sa.schema.CreateIndex(self.index_on(trial, _TRIAL_TABLE + "_idx",
                                                                     concurrently=False)))
            except sa.exc.DBAPIError as exc:
                raise self._refused_definition(exc) from None
            definition = conn.execute(sa.text("SELECT pg_get_indexdef(to_regclass(:n))"),
                                      {"n": _TRIAL_TABLE + "_idx"}).scalar_one()
            tx.rollback()
        return str(definition)

    def _on_only_parent(self) -> str:
        """`CREATE UNIQUE INDEX name ON ONLY parent ...`: SQLAlchemy has no ON ONLY; the compiled statement
        quoted every identifier already."""
        parent = sa.schema.CreateIndex(self.index_on(self.t.tc.table, self.name, concurrently=False))
        head, tail = str(parent.compile(dialect=self.t.db.writer.dialect)).split(" ON ", 1)
        return f"{head} ON ONLY {tail}"

    def _try_parent(self, lock_timeout: float | None = None) -> None:
        """A partitioned table's own rules (a unique index must include every partitioning column), asked of
        PostgreSQL up front: the catalog-only `ON ONLY` index is created and rolled back. Its SHARE lock queues
        the table's writers while it waits: `lock_timeout` (the probe's) bounds that wait, which then asks
        nothing (the build asks again)."""
        wait = self.t.db.config.statement_timeout if lock_timeout is None else lock_timeout
        with self.t.db.connect(self.t.db.writer) as conn, conn.begin() as tx:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds(wait)}")
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(self._on_only_parent())
            except sa.exc.DBAPIError as exc:
                if lock_timeout is not None and getattr(exc.orig, "sqlstate", None) == "55P03":
                    return
                raise FixRefused(f"check {self.t.config.name!r}: PostgreSQL refuses a unique index on the "
                                 f"partitioned table {self.t.table_name!r}: {self.t.db.describe(exc)}; nothing "
                                 "was built") from None
            tx.rollback()

    def _refused_definition(self, exc: sa.exc.DBAPIError) -> FixRefused:
        check = self.t.config
        cause = self.t.db.describe(exc)
        if getattr(exc.orig, "sqlstate", None) == "42P17" and check.where and "predicate" in str(exc.orig):
            return FixRefused(f"check {check.name!r}: its where filter ({check.where}) cannot be a unique "
                              f"index's predicate: {cause}; nothing was built (guard a `where` that does not "
                              "depend on the time or the session, or add the constraint by hand)")
        return FixRefused(f"check {check.name!r}: PostgreSQL refuses the unique index this check needs: {cause}; "
                          "nothing was built")

    def existing(self) -> str | None:
        return self._existing(repair=True)

    def _existing(self, *, repair: bool) -> str | None:
        """`existing`; an INVALID index of our name (an interrupted build, or one still under way) is dropped only
        when `repair`: the probe of a dry run or of a fix not yet begun changes nothing, locks nothing."""
        expected = self.expected_definition()
        table = self.t.tc.table
        with self.t.db.connect(self.t.db.writer) as conn:
            row = conn.execute(_PG_INDEX, {"name": self.name, "table": table.name, "schema": self.schema}).first()
        if row is None:
            return None
        if row.definition is None or not row.on_table:
            raise FixRefused(f"a relation named {self.name} already exists and is not an index on "
                             f"{self.t.table_name!r}: rename or drop it, then run the guard again")
        if not (row.indisvalid and row.indisready):
            if not repair:
                return None
            self._drop_all()
            self.notes.append(f"index {self.name} existed but was INVALID (an interrupted build): it was dropped "
                              "and is built again")
            return None
        if not (row.indisunique and _same_definition(row.definition, expected)):
            raise FixRefused(f"index {self.name} already exists on {self.t.table_name!r} but is not this check's "
                             f"guard: it is `{row.definition}`, the check needs `{_tail(expected)}`; drop or "
                             "rename it, then run the guard again")
        return "present"

    def probe(self, lock_timeout: float | None) -> str | None:
        """Also what `add` refuses before building: event triggers a concurrent build would fire, a partitioned
        table partitioned again or whose partitioning columns the key leaves out (the trial copy is a plain
        table, which takes any unique index)."""
        if lock_timeout is None:
            self._refuse_concurrent_triggers()
        self.index(concurrently=lock_timeout is None)
        present = self._existing(repair=False)
        if present is None and self.partitioned:
            self._partitions()
            self._try_parent(_PROBE_LOCK_WAIT)
        return present

    # building
    def add(self, lock_timeout: float | None) -> GuardReport:
        if lock_timeout is None:
            self._refuse_concurrent_triggers()
        return super().add(lock_timeout)

    def _refuse_concurrent_triggers(self) -> None:
        """A concurrent build (and the drop of an invalid index) cannot run in a transaction: what an event trigger
        firing on it writes can be neither counted before a commit nor rolled back. Refused before any DDL, only
        for the triggers whose tags could fire on those commands (a transaction's DDL is accounted instead)."""
        with self.t.db.connect(self.t.db.writer) as conn, conn.begin():
            fired = self.t.db.rules.ddl_triggers(conn, _CONCURRENT_TAGS)
        if fired:
            raise ConcurrentBuildRefused(
                f"check {self.t.config.name!r}: the guard builds its unique index with CREATE INDEX CONCURRENTLY, "
                "which runs outside any transaction, so what an event trigger writes then can be neither counted "
                f"nor rolled back: {fired}; or build it under the table's lock with --lock-timeout (one "
                "transaction, accounted for); nothing was built")

    def build(self, lock_timeout: float | None) -> None:
        if lock_timeout is not None:
            self._build_locked(lock_timeout)
        elif self.partitioned:
            self._build_partitioned()
        else:
            self._build_concurrently()

    def _build_locked(self, lock_timeout: float) -> None:
        index = self.index(concurrently=False)
        with self.t.db.connect(self.t.db.writer) as conn:
            try:
                with conn.begin():
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds(lock_timeout)}")
                    conn.exec_driver_sql(f"LOCK TABLE {self.table_sql} IN SHARE ROW EXCLUSIVE MODE")
                    self.duplicates(conn)
                    account = DdlAccount(conn, self.t.db.rules, f"the guard of check {self.t.config.name!r}")
                    conn.execute(sa.schema.CreateIndex(index))
                    account.settle(conn)  # what fired on the CREATE INDEX, rolled back with it
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":
                    raise lock_refused(self.t, lock_timeout) from None
                raise self.failed(exc) from None
            except KeyboardInterrupt:
                raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                       "rolled back and nothing was left behind") from None

    def _build_concurrently(self) -> None:
        with self.t.db.connect(self.t.db.writer) as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            self.duplicates(conn)
            self._concurrently(conn, self.index(concurrently=True), self.qualified(self.name), self._drop_all)

    def _concurrently(self, conn: Connection, index: sa.Index, qualified: str,
                      cleanup: Callable[[], None]) -> None:
        """Run one CREATE UNIQUE INDEX CONCURRENTLY; on failure or Ctrl-C run `cleanup` (fresh connections)."""
        pid, started = conn.execute(sa.text("SELECT pg_backend_pid(), clock_timestamp()")).one()
        conn.exec_driver_sql("SET statement_timeout = 0")  # a concurrent build takes as long as the table needs
        # ... but waits at most statement_timeout for the table's lock and for every transaction older than it
        # (its snapshot waits are lock waits, which lock_timeout bounds), not as long as an idle session lives.
        wait = self.t.db.config.statement_timeout
        conn.exec_driver_sql(f"SET lock_timeout = {milliseconds(wait)}")
        try:
            conn.execute(sa.schema.CreateIndex(index))
        except sa.exc.DBAPIError as exc:
            older = self._older_transactions(pid, started) if getattr(exc.orig, "sqlstate", None) == "55P03" \
                else None
            conn.invalidate()  # its statement_timeout is 0: never back into the pool
            left = self._cleaned(cleanup, pid)
            if older is not None:
                raise FixRefused(self._waited(wait, older, left)) from None
            raise self.failed(exc, left=left) from None
        except KeyboardInterrupt:
            conn.invalidate()
            left = self._cleaned(cleanup, pid)
            raise GuardInterrupted(f"interrupted: the unique index build for {self.t.config.name!r} was "
                                   f"cancelled and {left}") from None
        valid = conn.execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                             {"n": qualified}).scalar()
        conn.exec_driver_sql(f"SET statement_timeout = {milliseconds(self.t.db.config.statement_timeout)}")
        conn.exec_driver_sql("RESET lock_timeout")
        if not valid:
            left = self._cleaned(cleanup, pid)
            raise FixRefused(f"the unique index {self.name} was built INVALID and {left}")

    def _older_transactions(self, pid: int, started: Any) -> list[str]:
        """The sessions of this database whose transaction began before the build (what a concurrent build waits
        for), oldest first, as `pid 123 (idle in transaction since 12:00:01, psql)`."""
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                rows = fresh.execute(sa.text(
                    "SELECT pid, state, xact_start, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND xact_start < :started AND pid NOT IN (:pid, "
                    "pg_backend_pid()) ORDER BY xact_start LIMIT 5"), {"started": started, "pid": pid}).all()
        except (sa.exc.DBAPIError, DatabaseError):
            return []
        return [f"pid {r.pid} ({r.state} since {r.xact_start:%Y-%m-%d %H:%M:%S %Z}"
                + (f", {r.application_name}" if r.application_name else "") + ")" for r in rows]

    def _waited(self, wait: float, older: list[str], left: str) -> str:
        waited_for = (f"transactions older than it: {', '.join(older)}" if older
                      else "the table's lock")
        return (f"the concurrent build of {self.name} waited {wait:g}s (the database's statement_timeout) for "
                f"{waited_for}, and was cancelled; {left}; end those transactions and run the guard again, or "
                "use --lock-timeout to build under the table's write lock instead")

    def _cleaned(self, cleanup: Callable[[], None], pid: int) -> str:
        """Stop the old session's build (psycopg cancels on Ctrl-C; make sure) and drop what it left."""
        try:
            with self.t.db.connect(self.t.db.writer) as fresh:
                auto = fresh.execution_options(isolation_level="AUTOCOMMIT")
                auto.execute(sa.text("SELECT pg_cancel_backend(:pid) FROM pg_stat_activity WHERE pid = :pid "
                                     "AND state = 'active'"), {"pid": pid})
            cleanup()
        except (sa.exc.DBAPIError, DatabaseError, KeyboardInterrupt) as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else first_line(exc)
            return (f"the half-built index could not be dropped ({reason}): run "
                    f"`{'; '.join(self._drop_statements())}`")
        return "the half-built index was dropped; nothing was left behind"

    def _drop_statements(self) -> list[str]:
        if self.partitioned:
            return [f"DROP INDEX IF EXISTS {self.qualified(self.name)}",
                    *(f"DROP INDEX CONCURRENTLY IF EXISTS {q}" for q, _ in self._partition_indexes())]
        return [f"DROP INDEX CONCURRENTLY IF EXISTS {self.qualified(self.name)}"]

    def _drop_all(self) -> None:
        """Drop our index (and partitions' indexes), waiting for the table's lockers at most statement_timeout."""
        with self.t.db.connect(self.t.db.writer) as fresh:
            auto = fresh.execution_options(isolation_level="AUTOCOMMIT")
            auto.exec_driver_sql(f"SET lock_timeout = {milliseconds(self.t.db.config.statement_timeout)}")
            try:
                for statement in self._drop_statements():
                    auto.exec_driver_sql(statement)
            except BaseException:
                fresh.invalidate()  # never back into the pool with our lock_timeout
                raise
            auto.exec_driver_sql("RESET lock_timeout")

    # partitioned tables
    def _partitions(self) -> list[tuple[str, str]]:
        with self.t.db.connect(self.t.db.writer) as conn:
            rows = conn.execute(_PG_PARTITIONS, {"parent": self.relid}).all()
        nested = [r.relname for r in rows if r.relkind == "p"]
        if nested:
            raise FixRefused(f"table {self.t.table_name!r} is partitioned on more than one level ({nested[0]} is "
                             "itself partitioned): build the unique index by hand, partition by partition")
        return [(r.nspname, r.relname) for r in rows]

    def _partition_indexes(self) -> list[tuple[str, str]]:
        """(qualified index name, partition) for every partition, names deterministic."""
        preparer = self.t.db.writer.dialect.identifier_preparer
        return [(f"{preparer.quote_schema(schema)}.{preparer.quote(self._partition_index(name))}", name)
                for schema, name in self._partitions()]

    def _partition_index(self, partition: str) -> str:
        return safe_identifier(self.name[:40] + "_", partition)

    def _build_partitioned(self) -> None:
        """PostgreSQL cannot build an index on a partitioned table concurrently: ON ONLY the parent (invalid
        until every partition's index is attached), then concurrently on each partition, then attach."""
        partitions = self._partitions()
        self._try_parent()
        with self.t.db.connect(self.t.db.writer) as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            self.duplicates(conn)
            try:
                conn.exec_driver_sql(self._on_only_parent())
            except sa.exc.DBAPIError as exc:
                raise self.failed(exc) from None
            for schema, name in partitions:
                child = self._partition_index(name)
                shadow = _shadow(self.t, name, schema)
                qualified = f"{self.qualified_in(schema, child)}"
                self._concurrently(conn, self.index_on(shadow, child, concurrently=True), qualified, self._drop_all)
                conn.exec_driver_sql(f"ALTER INDEX {self.qualified(self.name)} ATTACH PARTITION {qualified}")
            valid = conn.execute(sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"),
                                 {"n": self.qualified(self.name)}).scalar()
        if not valid:
            left = self._cleaned(self._drop_all, -1)
            raise FixRefused(f"the unique index {self.name} on the partitioned table {self.t.table_name!r} did not "
                             f"become valid after attaching every partition's index, and {left}")
        self.notes.append(f"partitioned table: built on ONLY the parent, then concurrently on each of "
                          f"{len(partitions)} partition(s) and attached")

    def qualified_in(self, schema: str, name: str) -> str:
        preparer = self.t.db.writer.dialect.identifier_preparer
        return f"{preparer.quote_schema(schema)}.{preparer.quote(name)}"

    def is_unique_violation(self, exc: sa.exc.DBAPIError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == "23505"


def _rebind(exprs: list[sa.ColumnElement[Any]], table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The key expressions with every column of the check's table replaced by `table`'s column of that name."""
    def swap(element: Any, **_kw: Any) -> Any:
        if isinstance(element, sa.Column) and element.name in table.c and element.table is not table:
            return table.c[element.name]
        return None

    return [visitors.replacement_traverse(e, {}, swap) for e in exprs]


def _shadow(t: Target, name: str, schema: str | None) -> sa.Table:
    return sa.Table(name, sa.MetaData(), *[sa.Column(c.name, c.type) for c in t.tc.table.columns], schema=schema)


def _tail(definition: str) -> str:
    """`USING btree (...) ...` of a pg_get_indexdef text: the part that does not name the index or table."""
    return "USING " + definition.split(" USING ", 1)[-1]


def _same_definition(existing: str, expected: str) -> bool:
    return existing.startswith("CREATE UNIQUE INDEX ") and _tail(existing) == _tail(expected)
