"""PostgreSQL's final guard round: the straggler fix and a plain build in one transaction holding the table's
write lock, the fix running on the locked session itself (its commits become savepoints of that transaction)."""

from __future__ import annotations

import inspect
from typing import Any, cast

import psycopg
import sqlalchemy as sa

from monitor.db import Database, DatabaseError
from monitor.engine import Monitor
from monitor.fix.accounting import DdlAccount
from monitor.fix.guard.build import lock_refused, milliseconds
from monitor.fix.guard.postgresql import PostgresBuilder
from monitor.fix.guard.report import GuardInterrupted, GuardReport

# psycopg's own properties, called past the overrides below (as descriptors: mypy types a property read from the
# class as its getter's value)
_AUTOCOMMIT: Any = inspect.getattr_static(psycopg.Connection, "autocommit")
_ISOLATION_LEVEL: Any = inspect.getattr_static(psycopg.Connection, "isolation_level")


class _PinnedPsycopg(psycopg.Connection):
    """A psycopg connection whose commits and rollbacks, while `pinned`, are savepoints of one outer
    transaction: code that commits its own transactions (a fix) then runs inside the caller's."""

    pinned = False
    _SAVEPOINT = "SAVEPOINT dupewatch_pinned"

    def commit(self) -> None:
        if not self.pinned:
            super().commit()
            return
        self.execute("RELEASE SAVEPOINT dupewatch_pinned")
        self.execute(self._SAVEPOINT)

    def rollback(self) -> None:
        if not self.pinned:
            super().rollback()
            return
        self.execute("ROLLBACK TO SAVEPOINT dupewatch_pinned")

    def close(self) -> None:
        if not self.pinned:
            super().close()

    @property
    def autocommit(self) -> bool:
        return bool(_AUTOCOMMIT.__get__(self))

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if not self.pinned:
            _AUTOCOMMIT.__set__(self, value)

    @property
    def isolation_level(self) -> Any:
        return _ISOLATION_LEVEL.__get__(self)

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        if not self.pinned:
            _ISOLATION_LEVEL.__set__(self, value)


class PinnedDatabase(Database):
    """The database as a fix sees it, but writing through the locked session."""

    def __init__(self, db: Database, writer: sa.Engine) -> None:
        super().__init__(db.name, db.config, fix_schema=db.fix_schema)
        self._origin, self._pinned_writer = db, writer

    @property
    def engine(self) -> sa.Engine:
        return self._origin.engine

    @property
    def writer(self) -> sa.Engine:
        return self._pinned_writer

    def dispose(self) -> None:
        self._pinned_writer.dispose()


class PinnedMonitor:
    """A `Monitor` whose check's database writes through the locked session; everything else delegated."""

    def __init__(self, monitor: Monitor, db: Database) -> None:
        self._monitor, self._db = monitor, db

    def database_for(self, _check: Any) -> Database:
        return self._db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._monitor, name)


class LockedSession:
    """`LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE` (application writes wait, reads go on) under
    `SET LOCAL lock_timeout`, held until `build` commits or anything fails (then all is rolled back)."""

    def __init__(self, builder: PostgresBuilder, lock_timeout: float) -> None:
        self.builder, self.lock_timeout = builder, lock_timeout
        t = builder.t
        dialect = t.db.writer.dialect
        args, kwargs = dialect.create_connect_args(t.db.writer.url)
        kwargs.update(connect_timeout=10, application_name="dupewatch")
        try:
            self.raw = _PinnedPsycopg.connect(*args, **kwargs)
        except psycopg.Error as exc:
            raise DatabaseError(t.db.describe(exc)) from None
        self.engine = sa.create_engine(t.db.writer.url, creator=lambda: self.raw, poolclass=sa.pool.StaticPool,
                                       pool_reset_on_return=None)

    def __enter__(self) -> LockedSession:
        t = self.builder.t
        try:
            self.raw.execute(f"SET LOCAL statement_timeout = {milliseconds(t.db.config.statement_timeout)}")
            self.raw.execute(f"SET LOCAL lock_timeout = {milliseconds(self.lock_timeout)}")
            self.raw.execute(f"LOCK TABLE {self.builder.table_sql} IN SHARE ROW EXCLUSIVE MODE")
            self.raw.execute(f"SET LOCAL lock_timeout = {milliseconds(t.db.config.statement_timeout)}")
            self.raw.execute(_PinnedPsycopg._SAVEPOINT)
        except psycopg.errors.LockNotAvailable:
            self._close()
            raise lock_refused(t, self.lock_timeout) from None
        except BaseException:
            self._close()
            raise
        self.raw.pinned = True
        self.builder.was_fixed = True
        return self

    def __exit__(self, kind: Any, exc: Any, _tb: Any) -> None:
        self._close()
        if isinstance(exc, KeyboardInterrupt):
            raise GuardInterrupted(f"interrupted: the locked build for {self.builder.t.config.name!r} was rolled "
                                   "back (the straggler fix with it) and nothing was left behind") from None
        if isinstance(exc, sa.exc.DBAPIError):
            raise self.builder.failed(exc) from None

    def _close(self) -> None:
        self.raw.pinned = False
        if not self.raw.closed:
            self.raw.rollback()  # a no-op after `build` committed
            self.raw.close()
        self.engine.dispose()

    def monitor(self, monitor: Monitor) -> Monitor:
        return cast(Monitor, PinnedMonitor(monitor, PinnedDatabase(self.builder.t.db, self.engine)))

    def groups(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.builder.t.tc.figures()).one()[0])

    def build(self) -> GuardReport:
        builder = self.builder
        index = builder.index(concurrently=False)
        with self.engine.connect() as conn:
            builder.duplicates(conn)
            account = DdlAccount(conn, builder.t.db.rules, f"the guard of check {builder.t.config.name!r}")
            conn.execute(sa.schema.CreateIndex(index))
            account.settle(conn)  # what fired on the CREATE INDEX: refused, rolled back with the lock's transaction
            conn.commit()
        self.raw.pinned = False
        self.raw.commit()
        return GuardReport(builder.t.config.name, builder.name, True, builder.statement(index), builder.notes)
