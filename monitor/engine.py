"""The one engine every face calls: run checks, page through groups, show a group's rows.

`Monitor` owns the configured databases (one pool each) and the checks resolved against them. It is
thread-safe: the dashboard and the daemon call it from scheduler threads. It knows nothing of
terminals, schedulers or HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.config import CheckConfig, Config, ConfigError, TargetDatabaseConfig, close_matches
from monitor.db import Database, DatabaseError, first_line
from monitor.detect import (
    GROUP_PAGE_SIZE,
    MEMBER_ROW_LIMIT,
    CheckDefinitionError,
    CheckResult,
    DuplicateGroup,
    GroupCursor,
    GroupMembers,
    GroupPage,
    Status,
    TableCheck,
    as_datetime,
    custom_columns,
    custom_figures,
    custom_page_statement,
    custom_rows,
    custom_weighted,
    ensure_safe,
    figures_statement,
    refused_where,
    split_table_name,
    where_probe,
)
from monitor.dialects import for_backend
from monitor.history import History, IncrementalState, TableChange, subject
from monitor.incremental import (
    ColumnTypeChanged,
    IncrementalCheck,
    encode_key,
    full_pass_due,
    index_advice,
    refuse_unreadable_watermark,
    state_key,
    table_key,
)
from monitor.incremental import Outcome as Pass
from monitor.thresholds import Outcome, judge

log = logging.getLogger("dupewatch.engine")

# Errors a user can cause or a database can raise at run time: reported per check, never a traceback.


class DatabaseRemoved(ConfigError):
    """A check's database is no longer in the running config: a reload or fleet discovery removed it (and
    cancelled its queries) while the check ran or waited. A `ConfigError`, so its run ends in one line."""

    def __init__(self, name: str) -> None:
        super().__init__(f"database {name!r} left the config while its check ran (a reload or fleet discovery "
                         "removed it; its queries were cancelled)")
        self.name = name


CheckError = (ConfigError, DatabaseError, CheckDefinitionError)
PLACE_RETRY_SECONDS = 30.0  # how often a server that did not say what it is is asked again


class Monitor:
    """`first_page_size > 0` lets runs of the checks named by `keep_first_page` also keep their first page of
    groups, from the same scan, so a live caller can open the largest groups of a huge check without a second
    aggregate. It costs the run a top-N sort (about twice the time on a million groups), so a dashboard asks
    it only for the check under the operator's cursor."""

    def __init__(self, config: Config, *, first_page_size: int = 0, state: History | None = None) -> None:
        self.config = config
        # Incremental checks keep their watermark and known groups in `state` (the store shared with the
        # dashboard, the daemon and `dupewatch check`); without one, in this process's memory only.
        self.state = state
        self._incremental: dict[str, IncrementalCheck] = {}
        self._fingerprints: dict[str, str] = {}
        self._advice: dict[str, str | None] = {}
        self._places: dict[str, list[str]] = {}  # database name -> its server's place, once it answered
        self._place_retry: dict[str, float] = {}  # database name -> when to ask an unanswering server again
        self._closed = False  # `close()`: a run still in flight asks no server what it is (see `place`)
        self._remembered: dict[str, list[str]] = {}  # database name -> the place last written to the store
        self._memory_state: dict[str, IncrementalState] = {}
        self._stale: set[str] = set()  # keys whose copy above a run changed without saving it
        # Held while a run changes a state's known groups in place (`IncrementalCheck._applied`) and while
        # `group_first_seen` reads them from another thread.
        self._groups_lock = threading.Lock()
        # One run at a time of each incremental state (by its key): a run changes the known groups it starts from.
        self._state_locks: dict[str, threading.Lock] = {}
        self._memory_changes: list[tuple[str, TableChange]] = []  # (table key, change), without a state store
        self.clock: Callable[[], float] = time.time  # UNIX time; tests advance it instead of sleeping
        self.first_page_size = first_page_size
        self._first_pages: dict[str, GroupPage] = {}
        self._weighted: dict[str, bool] = {}  # custom checks: does the query return `dup_count`?
        self._columns: dict[str, list[str]] = {}  # custom checks: the names of the query's columns
        self._page_checks: frozenset[str] = frozenset()
        self._databases: dict[str, Database] = {}
        self._resolved: dict[str, TableCheck] = {}
        # Custom queries the database has vetted (`ensure_safe`), as (database, SQL): once per process, since
        # PostgreSQL writes the plan tree it is vetted by to its log.
        self._vetted: set[tuple[str, str]] = set()
        # Reflected tables, shared by the checks of one table (200 checks over 10 tables reflect 10 times).
        self._tables: dict[tuple[str, str], tuple[sa.Table, bool]] = {}  # (table, is a view)
        # Fleet targets' plain checks: their figures statement, unreflected, by (dialect, table, key, nulls, the
        # other columns the check names).
        self._unreflected: dict[tuple[str, str, tuple[str, ...], str, tuple[str, ...]], sa.Select[Any]] = {}
        self._lock = threading.Lock()

    # -- databases and checks -------------------------------------------------------------------

    def database(self, name: str) -> Database:
        """The pool of the config's database `name`; `DatabaseRemoved` once the running config no longer names it."""
        with self._lock:
            if name not in self._databases:
                config = self.config.databases.get(name)
                if config is None:
                    raise DatabaseRemoved(name)
                self._databases[name] = Database(name, config, fix_schema=self.config.fix.schema_)
            return self._databases[name]

    def database_for(self, check: CheckConfig | str) -> Database:
        check = self.config.check(check) if isinstance(check, str) else check
        return self.database(check.database)

    def subject(self, check: CheckConfig | str, *, ask: bool = True, answering: bool = False) -> str:
        """What the check measures (`monitor.history.subject`): the key of its runs and state in the store.
        Asks the server what it is once per process (see `place`); `ask=False` never connects."""
        check = self.config.check(check) if isinstance(check, str) else check
        sql = self.config.custom_sql(check) if check.is_custom else None
        return subject(self.place(check.database, ask=ask, answering=answering), check, sql)

    def place(self, database: str, *, ask: bool = True, answering: bool = False) -> list[str]:
        """What the database is (`Database.server_place`), remembered in the store for its URL's address. A
        server that does not answer (or is not asked: `ask=False`, for a start that must not wait on servers)
        is known by what it said last time, else by its address (so is every one after `close()`); it is asked
        again at most every `PLACE_RETRY_SECONDS`, so that a dead database does not cost each run a second
        connection attempt, unless the caller just reached it (`answering`: asking costs no failed attempt)."""
        try:
            db = self.database(database)
            address = db.address
        except ConfigError:  # its URL names an unset variable: what it measures is not known; keep apart by name
            return ["unresolved", database]
        known = self._places.get(database)
        if known is not None:
            return known
        if not ask or self._closed or (not answering and self.clock() < self._place_retry.get(database, 0.0)):
            return self._remembered_place(address) or address
        try:
            place = db.server_place()
        except DatabaseError:
            self._place_retry[database] = self.clock() + PLACE_RETRY_SECONDS
            return self._remembered_place(address) or address
        if self.state is not None and self._remembered.get(database) != place:
            self.state.remember_place(address, place)
            self._remembered[database] = place
        if db.rules.database_file(db.url) is None:  # a file's identity is asked each time (it can be replaced)
            self._places[database] = place
        return place

    def _remembered_place(self, address: list[str]) -> list[str] | None:
        return self.state.known_place(address) if self.state is not None else None

    def resolve(self, check: CheckConfig | str, conn: Connection | None = None) -> TableCheck:
        """The check bound to its reflected table (validated once, then cached)."""
        check = self.config.check(check) if isinstance(check, str) else check
        if check.is_custom:
            raise CheckDefinitionError(f"check {check.name!r} is a custom query, not a table check")
        cached = self._resolved.get(check.name)
        if cached is not None:
            return cached
        db = self.database_for(check)
        if conn is None:
            with db.read_only() as own:
                return self.resolve(check, own)
        schema, name = split_table_name(check.table or "")
        if schema is None:  # every statement names the table where the server resolves it (one place)
            schema = db.rules.resolved_schema(conn, name)
        table_key = (check.database, check.table or "")
        try:
            reflected = self._tables.get(table_key)
            if reflected is None:
                # resolve_fks=False: reflect the checked table only, not every table its foreign keys reach.
                with warnings.catch_warnings():
                    # SQLite's expression indexes (which incremental checks advise) cannot be reflected;
                    # detection does not need them, and the warning would reach every user's terminal.
                    warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index",
                                            sa.exc.SAWarning)
                    table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn, resolve_fks=False)
                for column, kind in db.rules.catalog_types(conn, table).items():
                    table.c[column].type = kind  # compared as the catalog says (citext outside the search_path)
                reflected = table, name in sa.inspect(conn).get_view_names(schema=schema)
                self._tables[table_key] = reflected
            table, is_view = reflected
        except sa.exc.NoSuchTableError:
            raise _table_not_found(check, schema, conn) from None
        except sa.exc.DBAPIError as exc:
            if schema and (db.rules.missing_schema(exc) or _is_unknown_or_denied_database(exc)):
                raise _table_not_found(check, schema, conn) from None  # no such schema or database
            raise DatabaseError(db.describe(exc)) from None
        resolved = TableCheck(check, table, db.rules, is_view=is_view)
        resolved.refuse_ungroupable_keys(conn)
        # Only the key's columns: the state's fingerprints hash them, and another column's collation is none of
        # the check's business (changing it must not restart the check's state).
        keys = {column.name for column in resolved.key_columns}
        resolved.compared = {name: c for name, c in db.rules.compared_apart(conn, table).items() if name in keys}
        _probe_where(db, conn, resolved)
        self._resolved[check.name] = resolved
        return resolved

    def preflight(self, checks: Iterable[CheckConfig] | None = None, *, stored_values: bool = False) -> list[str]:
        """Resolve every table check (one connection per database) before any runs, so that unknown tables
        and columns are reported together: one line each, `FILE: checks[i] ('name').field: problem`. With
        `stored_values` (`config validate`), also an incremental column holding values its type cannot read
        (`refuse_unreadable_watermark`; a run refuses its own check then, and the others run).

        A database that cannot be reached is not a config problem: its checks are skipped here and fail
        when they run (reported once per database by the caller).
        """
        chosen = list(self.config.checks if checks is None else checks)
        by_database: dict[str, list[CheckConfig]] = {}
        for check in chosen:
            if not check.is_custom and not check.needs_targets:  # a fleet template is resolved per target
                by_database.setdefault(check.database, []).append(check)
        problems: list[str] = []
        for database, table_checks in by_database.items():
            try:
                with self.database(database).read_only() as conn:
                    for check in table_checks:
                        try:
                            resolved = self.resolve(check, conn)
                            if stored_values:
                                refuse_unreadable_watermark(conn, resolved)  # what the incremental column holds
                        except CheckDefinitionError as exc:
                            problems.append(self.describe_definition_error(check, exc))
                            if conn.in_transaction():
                                conn.rollback()  # PostgreSQL refuses every statement after a failed one
            except DatabaseError:
                continue
        return problems

    def describe_definition_error(self, check: CheckConfig, exc: CheckDefinitionError) -> str:
        """A definition error as one line naming the file, the check and the field."""
        if exc.field and exc.detail:
            return f"{self.config.locate(check.name, exc.field)}: {exc.detail}"
        return f"{self.config.locate(check.name)}: {str(exc).removeprefix(f'check {check.name!r}: ')}"

    def keeper_description(self, check: str) -> str | None:
        """Which row of a group a fix keeps, in words, once the check has been resolved (no database access)."""
        resolved = self._resolved.get(check)
        return resolved.keeper_description() if resolved is not None else None

    def keep_first_page(self, *checks: str) -> None:
        """Which checks' runs keep their first page of groups (see the class docstring); others drop theirs."""
        self._page_checks = frozenset(checks)
        for name in list(self._first_pages):
            if name not in self._page_checks:
                self._first_pages.pop(name, None)

    def forget(self, check: str | None = None) -> None:
        """Drop cached reflection (after a schema change or a config reload)."""
        if check is None:
            self._resolved.clear()
            self._tables.clear()
            self._first_pages.clear()
            self._weighted.clear()
            self._columns.clear()
            self._incremental.clear()
            self._fingerprints.clear()
            self._advice.clear()
            self._places.clear()
            self._place_retry.clear()
            self._remembered.clear()
        else:
            dropped = self._resolved.pop(check, None)
            if dropped is not None:
                self._tables.pop((dropped.check.database, dropped.check.table or ""), None)
            self._first_pages.pop(check, None)
            self._weighted.pop(check, None)
            self._columns.pop(check, None)
            self._incremental.pop(check, None)
            self._fingerprints.pop(check, None)
            self._advice.pop(check, None)

    def retarget(self, config: Config) -> None:
        """Switch to `config`, the same checks over other fleet targets (`monitor.fleet.expand`): the databases it
        no longer names are closed (their queries cancelled), what was cached of checks it no longer has is
        dropped, and the rest (pools, reflection, incremental state) is kept."""
        with self._lock:
            gone = [name for name, db in self._databases.items() if config.databases.get(name) != db.config]
            dropped = [self._databases.pop(name) for name in gone]
            for name in gone:
                for known in (self._places, self._place_retry, self._remembered):
                    known.pop(name, None)
            # Under the same lock: a check asking for a removed database from here on is told it left
            # (`DatabaseRemoved`) rather than given a new pool of it that nothing would close.
            self.config = config
        names = set(config.names)
        for check in {*self._resolved, *self._incremental, *self._weighted, *self._columns} - names:
            self.forget(check)
        for db in dropped:
            db.dispose()

    def cancel_queries(self, owners: Collection[object] | None = None) -> int:
        """Cancel the queries running now on every database (all, or those of `owners`: see
        `monitor.db.register_owner_lookup`); returns how many. Blocks for at most a few seconds."""
        with self._lock:
            databases = list(self._databases.values())
        return sum(db.cancel_running(owners) for db in databases)

    def close(self) -> None:
        """Cancel what is still running and close every pool. A run still in flight (its statement cancelled)
        reports without asking its server what it is: that would re-open a pool nothing closes any more."""
        with self._lock:
            self._closed = True
            for db in self._databases.values():
                db.dispose()
            self._databases.clear()

    # -- running checks -------------------------------------------------------------------------

    def run(self, check: CheckConfig | str, *, full: bool = False) -> CheckResult:
        """Run one check in a read-only transaction; errors become a result, never an exception.

        An incremental check (`incremental = "column"`) runs a full pass when `full`, when due, or when it
        has no usable state; otherwise an incremental one (see `monitor/incremental.py`). A plain check's
        result has `duration_ms` for the query alone and `setup_ms` for the connection and reflection before it.
        """
        check = self.config.check(check) if isinstance(check, str) else check
        started = time.perf_counter()
        timing: dict[str, float] = {}
        try:
            if check.incremental is not None and not check.is_custom:
                return self._incremental_result(check, started, self._run_incremental(check, full))
            groups, excess, rows = self._figures(check, timing)
        except CheckError as exc:
            return self._result(check, started, timing, error=str(exc))
        except sa.exc.DBAPIError as exc:
            # A schema change (dropped column, recreated table) invalidates cached reflection.
            self.forget(check.name)
            return self._result(check, started, timing, error=self._describe(check, exc))
        except Exception as exc:  # a bug or an unexpected driver error must not stop the other checks
            log.exception("check %s failed unexpectedly", check.name)
            detail = self._describe(check, exc)
            return self._result(check, started, timing, error=f"internal error ({type(exc).__name__}): {detail}")
        return self._result(check, started, timing, groups=groups, excess=excess, rows=rows)

    def _describe(self, check: CheckConfig, exc: BaseException) -> str:
        """`exc` in one line as the check's database describes it; that its database left the config, where it
        did (its queries were cancelled: that is why `exc` was raised)."""
        try:
            return self.database_for(check).describe(exc)
        except DatabaseRemoved as gone:
            return str(gone)

    def run_many(self, checks: Iterable[CheckConfig | str] | None = None, workers: int = 4, *,
                 full: bool = False) -> list[CheckResult]:
        """Run checks concurrently (one connection each), results in the given order."""
        chosen = list(self.config.checks if checks is None else checks)
        if len(chosen) <= 1:
            return [self.run(c, full=full) for c in chosen]
        with ThreadPoolExecutor(max_workers=min(workers, len(chosen))) as pool:
            runs = [pool.submit(self.run, c, full=full) for c in chosen]
            try:
                return [run.result() for run in runs]
            except BaseException:  # Ctrl-C: leaving the pool would wait for every statement to its end
                for run in runs:
                    run.cancel()
                with self._lock:
                    databases = list(self._databases.values())
                for db in databases:
                    db.abandon_running()
                raise

    # -- incremental checks ---------------------------------------------------------------------

    def state_key(self, check: CheckConfig | str) -> str:
        """What an incremental check's state is stored by (`monitor.incremental.state_key`). No database access."""
        check = self.config.check(check) if isinstance(check, str) else check
        return state_key(self.subject(check), check.incremental or "")

    def _run_incremental(self, check: CheckConfig, full: bool) -> Pass:
        """One run of an incremental check; its state is saved before returning.

        What fixes and undos changed in the table since the state was saved decides the run: rows restored below
        the watermark need a full pass; rows a fix deleted, a re-count of every known group."""
        db = self.database_for(check)
        key = self.state_key(check)
        with self._lock:
            running = self._state_locks.setdefault(key, threading.Lock())
        with running:  # a second run of this state in this process starts from what the first saved
            loaded = self._load_state(key)
            try:
                outcome = self._incremental_pass(check, db, key, loaded, full)
                self._save_state(outcome.state, loaded)
            except BaseException:
                # A run changes the known groups of the state it started from in place
                # (`IncrementalCheck._applied`): one that did not save them may leave that copy ahead of the
                # store's, so the next run loads the store's (the dashboard reads this copy until then).
                if self.state is not None:  # (without a store, this copy is the only state there is)
                    self._stale.add(key)
                raise
        return outcome

    def _incremental_pass(self, check: CheckConfig, db: Database, key: str, loaded: IncrementalState | None,
                          full: bool) -> Pass:
        """One run; again, with the table reflected anew, where its incremental column's values are no longer of
        the type it was reflected with (`ColumnTypeChanged`: an `ALTER COLUMN ... TYPE` since)."""
        try:
            return self._incremental_pass_once(check, db, key, loaded, full)
        except ColumnTypeChanged as exc:
            log.info("check %s: %s; reflecting the table again", check.name, exc)
            self.forget(check.name)
        try:
            return self._incremental_pass_once(check, db, key, loaded, full)
        except ColumnTypeChanged as exc:
            raise CheckDefinitionError(f"check {check.name!r}: incremental: {exc}", field="incremental",
                                       detail=str(exc)) from None

    def _incremental_pass_once(self, check: CheckConfig, db: Database, key: str, loaded: IncrementalState | None,
                               full: bool) -> Pass:
        with db.read_only() as conn:
            resolved = self.resolve(check, conn)
            refuse_unreadable_watermark(conn, resolved)  # at every run: the application may start writing them
            incremental = self._incremental.get(check.name)
            # The key names what the database is, which can change under a running process (a server known by its
            # address until it first answers, a database file replaced on disk): a run saves its state under the
            # key the next run loads from, never under the one the check was first built with.
            if incremental is None or incremental.key != key:
                incremental = self._incremental[check.name] = IncrementalCheck(resolved, key, self._groups_lock)
            fingerprint = self._fingerprints.get(check.name)
            if fingerprint is None:
                fingerprint = self._fingerprints[check.name] = incremental.fingerprint(conn, db.url)
            if check.name not in self._advice:
                self._advice[check.name] = index_advice(conn, incremental)
            usable = loaded if loaded is not None and loaded.fingerprint == fingerprint else None
            changes = self._table_changes(table_key(self.place(check.database), resolved.table.name),
                                          usable.changes_seen if usable is not None else 0)
            seen = max([c.id for c in changes], default=usable.changes_seen if usable is not None else 0)
            restored = [c.why for c in changes if c.restored]
            if full or usable is None or full_pass_due(usable, fingerprint, check.full_every, self.clock()) \
                    or restored:
                notes = [f"full pass: {restored[-1]} restored rows the watermark had passed"] if restored else []
                if usable is None:
                    seen = self._last_table_change()
                return incremental.full_pass(conn, fingerprint, usable, changes_seen=seen, notes=notes,
                                             now=self.clock(), compare=not restored)
            notes = [f"every known group re-counted: {changes[-1].why} changed rows"] if changes else []
            return incremental.incremental_pass(conn, usable, recount_all=bool(changes), changes_seen=seen,
                                                notes=notes, now=self.clock())

    def table_changed(self, database: str, table: str, why: str, *, restored: bool) -> None:
        """A fix (`restored=False`: it deleted rows) or an undo (`restored=True`: rows came back with their old
        ids and timestamps, below any watermark) changed rows of `table`: every incremental check of that table,
        in this config or another sharing the state store, learns it at its next run (see `_run_incremental`).
        Written to the state store ([state] path) when any check of the config is incremental."""
        key = table_key(self.place(database), table)
        self._memory_changes.append((key, TableChange(len(self._memory_changes) + 1, why, restored)))
        if self.state is not None:
            self.state.record_table_change(key, why, restored=restored)
        elif any(c.incremental for c in self.config.checks):
            store = History(self.config.state.path, self.config.state.retention) if self.config.state.path \
                else History(retention_seconds=self.config.state.retention)
            try:
                store.record_table_change(key, why, restored=restored)
            finally:
                store.close()

    def _table_changes(self, key: str, after: int) -> list[TableChange]:
        if self.state is not None:
            return self.state.table_changes(key, after)
        return [c for k, c in self._memory_changes if k == key and c.id > after]

    def _last_table_change(self) -> int:
        return self.state.last_table_change() if self.state is not None else len(self._memory_changes)

    def _load_state(self, key: str) -> IncrementalState | None:
        """A check's state: the copy this process saved last, unless another process saved since."""
        cached = None if key in self._stale else self._memory_state.get(key)
        self._stale.discard(key)
        if self.state is None:
            return cached
        if cached is not None and \
                self.state.incremental_version(key) == (cached.fingerprint, cached.generation):
            return cached
        return self.state.load_incremental(key)

    def _save_state(self, state: IncrementalState, loaded: IncrementalState | None) -> None:
        saved = state if self.state is None else self.state.save_incremental(state, loaded)
        self._memory_state[state.key] = saved

    def group_first_seen(self, check: str, key: Sequence[Any]) -> tuple[datetime, bool] | None:
        """When dupewatch first saw an incremental check's group with this (normalised) key, and whether that
        was in the check's latest run; None when not known. From the state in memory: no database access."""
        state = self._memory_state.get(self.state_key(check))
        if state is None:
            return None
        wanted = encode_key(key)
        with self._groups_lock:  # a run changes them in place (`IncrementalCheck._applied`)
            group = state.groups.get(wanted) or next(
                (g for g in state.groups.values() if g.spelling == wanted), None)
            if group is None and (incremental := self._incremental.get(check)) is not None:
                group = incremental.group_shown_as(state.groups, state.generation, key)
        if group is None:
            return None
        seen = datetime.fromtimestamp(group.first_seen_at).astimezone()
        return seen, group.first_seen_generation == state.generation

    def index_advice(self, check: str) -> str | None:
        """The CREATE INDEX statement(s) that would make an incremental check fast, once its first run
        looked (None when its indexes serve it, or before its first run). No database access."""
        return self._advice.get(check)

    def _incremental_result(self, check: CheckConfig, started: float, outcome: Pass) -> CheckResult:
        base = self._result(check, started, {}, groups=outcome.groups, excess=outcome.excess_rows,
                            rows=outcome.rows_scanned if outcome.mode == "full" else None)
        last_full = outcome.state.last_full_at
        return replace(base, mode=outcome.mode, rows_scanned=outcome.rows_scanned, new_groups=outcome.new_groups,
                       first_run=outcome.first_run, notes=tuple(outcome.notes),
                       last_full_pass=None if last_full is None else datetime.fromtimestamp(last_full).astimezone(),
                       index_advice=self._advice.get(check.name))

    def _figures(self, check: CheckConfig, timing: dict[str, float]) -> tuple[int, int, int | None]:
        """The check's figures (groups, excess rows, rows checked: None for a custom query);
        `timing["query"]` is set to when its query started (perf_counter)."""
        db = self.database_for(check)
        with db.read_only() as conn:
            if check.is_custom:
                sql = self.config.custom_sql(check)
                try:
                    self._ensure_safe(conn, db, sql)
                    weighted = self._weighted.get(check.name)
                    if weighted is None:
                        columns = self._custom_columns(conn, db, check.name, sql)
                        weighted = self._weighted[check.name] = custom_weighted(columns)
                    self._ensure_safe(conn, db, sql, figures_statement(sql, weighted))
                    timing["query"] = time.perf_counter()
                    groups, excess = custom_figures(conn, sql, weighted)
                    timing["done"] = time.perf_counter()
                    return groups, excess, None
                except CheckDefinitionError as exc:
                    raise CheckDefinitionError(f"check {check.name!r}: {exc}") from None
            paged = bool(self.first_page_size) and check.name in self._page_checks
            unreflected = None if paged else self._unreflected_figures(check, db)
            if unreflected is not None:
                timing["query"] = time.perf_counter()
                try:
                    groups, excess, rows = conn.execute(unreflected).one()[:3]
                except sa.exc.DBAPIError as exc:
                    if exc.connection_invalidated or db.rules.is_timeout(first_line(exc)) \
                            or db.deadline_passed(conn):
                        raise  # cancelled (a deadline, a stop), not refused: the reflected check must not run
                    # The server refused the statement (no such table or column, a key it cannot group): the
                    # reflected check says which, as for any other check, or runs where the guess was wrong.
                    conn.rollback()
                else:
                    timing["done"] = time.perf_counter()
                    return int(groups), int(excess), int(rows)
            resolved = self.resolve(check, conn)
            timing["query"] = time.perf_counter()
            if not paged:
                groups, excess, rows = conn.execute(resolved.figures()).one()
                timing["done"] = time.perf_counter()
                return int(groups), int(excess), int(rows)
            rows = list(conn.execute(resolved.figures_with_first_page(self.first_page_size + 1)))
            timing["done"] = time.perf_counter()
        groups, excess, checked = rows[0][0], rows[0][1], rows[0][2]
        found = [row[3:] for row in rows if row[3 + len(resolved.key_exprs)] is not None]
        self._first_pages[check.name] = _page(resolved, found, self.first_page_size)
        return int(groups), int(excess), int(checked)

    def _unreflected_figures(self, check: CheckConfig, db: Database) -> sa.Select[Any] | None:
        """The figures statement of a fleet target's plain check, built from the quoted names of its table and
        columns without reflecting them; None when the check needs its columns' types (`where`, trimmed or
        case-folded keys, incremental) or is not on a fleet target.

        A fleet has hundreds of targets with the same tables: reflecting each (several catalog queries, a
        `Table` kept per target) was most of a first run's cost and of the daemon's memory. The server resolves
        the names as it would the reflected table's (the target's `search_path` or database), and the
        statement is the same for every target of a template, so it is built once.

        It names every column the check names, its `timestamp` and `order_by` too (in an `EXISTS` over no rows,
        which reads nothing): a tenant whose table lacks one is refused by its server, and the reflected check
        then says which, as it does for a `[databases]` entry, rather than reporting figures that the group
        list and a fix of the same check would refuse."""
        if not isinstance(self.config.databases.get(check.database), TargetDatabaseConfig) or check.where \
                or check.trim_whitespace or check.case_insensitive or check.incremental is not None \
                or check.is_custom or check.name in self._resolved:
            return None
        others = tuple(c for c in dict.fromkeys([*([check.timestamp] if check.timestamp else []),
                                                 *(check.order_by or ())]) if c not in (check.key or ()))
        shape = (db.rules.name, check.table or "", tuple(check.key or ()), check.nulls, others)
        statement = self._unreflected.get(shape)
        if statement is None:
            schema, name = split_table_name(check.table or "")
            named = dict.fromkeys([*(check.key or ()), *others])
            table = sa.Table(name, sa.MetaData(), *(sa.Column(column) for column in named), schema=schema)
            statement = TableCheck(check, table, db.rules).figures()
            if others:
                statement = statement.add_columns(
                    sa.exists(sa.select(*(table.c[c] for c in others)).where(sa.false())).label("named"))
            statement = self._unreflected[shape] = statement
        return statement

    def _result(self, check: CheckConfig, started: float, timing: dict[str, float], *, groups: int | None = None,
                excess: int | None = None, rows: int | None = None, error: str | None = None) -> CheckResult:
        """`rows`: the rows the figures are about (a full pass of a table check), None when unknown."""
        ended = timing.get("done", time.perf_counter())
        query_started = timing.get("query")
        # A run that failed before its query (no connection) has no set-up to tell apart: its time is its duration.
        duration_ms = (ended - (query_started or started)) * 1000
        setup_ms = None if query_started is None else (query_started - started) * 1000
        status: Status
        outcome: Outcome | None = None
        if error is not None:
            status = "error"
        else:
            status = check.finds if groups else "ok"
            outcome = judge(check, (groups if check.finds == "violations" else excess) or 0, rows)
        return CheckResult(check.name, check.database, status, groups, excess, duration_ms, error,
                           setup_ms=setup_ms, subject=self.subject(check), rows_scanned=rows, outcome=outcome)

    # -- drill-down ----------------------------------------------------------------------------

    def kept_first_page(self, check: str) -> GroupPage | None:
        """The first page of groups the check's last run kept, if it did (a dict lookup: no database access,
        safe on the UI thread)."""
        return self._first_pages.get(check)

    def groups(self, check: str, after: GroupCursor | None = None, limit: int = GROUP_PAGE_SIZE,
               *, fresh: bool = False) -> GroupPage:
        """One page of a table check's duplicate groups, largest first. Raises a one-line error.

        The first page comes from the last run when that run kept it (see `first_page_size`), unless `fresh`.
        """
        if after is None and not fresh and limit == self.first_page_size:
            cached = self.kept_first_page(check)
            if cached is not None:
                return cached
        resolved = self.resolve(check)
        db = self.database_for(check)
        with db.read_only() as conn:
            rows = self._execute(db, conn, resolved.group_page(after, limit + 1))
        return _page(resolved, rows, limit)

    def members(self, check: str, key: Sequence[Any], limit: int = MEMBER_ROW_LIMIT) -> GroupMembers:
        """The rows of one group, all columns, the row a fix would keep first."""
        resolved = self.resolve(check)
        db = self.database_for(check)
        with db.read_only() as conn:
            try:
                result = conn.execute(resolved.members(key, limit + 1))
                columns = list(result.keys())
                rows = [tuple(r) for r in result]
            except sa.exc.DBAPIError as exc:
                raise DatabaseError(db.describe(exc)) from None
        truncated = len(rows) > limit
        return GroupMembers(columns, rows[:limit], 0 if rows else None, truncated, resolved.keeper_description())

    def custom_rows(self, check: str, offset: int = 0,
                    limit: int = GROUP_PAGE_SIZE) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A page of the rows a custom query check returns."""
        config = self.config.check(check)
        db = self.database_for(config)
        sql = self.config.custom_sql(config)
        while True:
            probed = check not in self._columns
            with db.read_only() as conn:
                try:
                    self._ensure_safe(conn, db, sql)
                    columns = self._custom_columns(conn, db, check, sql)
                    if columns:
                        # The page measures each value as it is sent (`Dialect.sent_width`: on PostgreSQL its cast
                        # to text, which may be a function of the database's own for a type of its own): the page
                        # statement is vetted too, once (its LIMIT and OFFSET call nothing).
                        self._ensure_safe(conn, db, sql, custom_page_statement(conn, db.rules, sql, len(columns),
                                                                               0, GROUP_PAGE_SIZE))
                    return custom_rows(conn, db.rules, sql, offset, limit, columns)
                except CheckDefinitionError as exc:
                    raise CheckDefinitionError(f"check {check!r}: {exc}") from None
                except sa.exc.DBAPIError as exc:
                    if probed:
                        raise DatabaseError(db.describe(exc)) from None
            # The columns were probed by an earlier call: the query's columns may have changed since (`SELECT *`
            # over a table that gained one). Probed again, once.
            self._columns.pop(check, None)

    def _custom_columns(self, conn: Connection, db: Database, check: str, sql: str) -> list[str]:
        """The names of a custom query's columns, probed once per check where the probe runs the whole query
        (`Dialect.column_probe_runs_query`), else each time."""
        if not db.rules.column_probe_runs_query:
            return custom_columns(conn, sql)
        columns = self._columns.get(check)
        if columns is None:
            columns = self._columns[check] = custom_columns(conn, sql)
        return columns

    def _ensure_safe(self, conn: Connection, db: Database, sql: str, statement: str | None = None) -> None:
        """Vet the custom query `sql` in `statement` (its rows by default), once per process."""
        if (db.name, statement or sql) not in self._vetted:
            ensure_safe(conn, sql, db.rules, statement)
            self._vetted.add((db.name, statement or sql))

    @staticmethod
    def _execute(db: Database, conn: Connection, statement: Any) -> list[Any]:
        try:
            return list(conn.execute(statement))
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None


def _table_not_found(check: CheckConfig, schema: str | None, conn: Connection) -> CheckDefinitionError:
    """The error for a missing table, listing the tables of that schema with close names."""
    where = f"schema {schema!r} of " if schema else ""
    detail = f"table {check.table!r} not found in {where}database {check.database!r}"
    _, name = split_table_name(check.table or "")
    names = _table_names(conn, schema)
    detail += close_matches(name, names)
    table = check.table or ""
    # a schema that lists no table may be no schema: the dot was the table's own
    if schema and not names and '"' not in table and "`" not in table:
        detail += f" (a table whose name contains a dot is written quoted: table = '\"{table}\"')"
    return CheckDefinitionError(f"check {check.name!r}: {detail}", field="table", detail=detail)


def _table_names(conn: Connection, schema: str | None) -> list[str]:
    """The tables and views of a schema, or none when they cannot be listed (no such schema, no privilege)."""
    try:
        inspector = sa.inspect(conn)
        return [*inspector.get_table_names(schema=schema), *inspector.get_view_names(schema=schema)]
    except sa.exc.SQLAlchemyError:
        if conn.in_transaction() and for_backend(conn.dialect.name).error_aborts_transaction:
            conn.rollback()  # an aborted PostgreSQL transaction refuses everything after
        return []


def _is_unknown_or_denied_database(exc: sa.exc.DBAPIError) -> bool:
    """MySQL/MariaDB answer reflection of `db.table` in a database the user cannot see with "Unknown database"
    (1049) or "SHOW command denied" (1142)."""
    args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in (1049, 1142, 1044)


def _probe_where(db: Database, conn: Connection, resolved: TableCheck) -> None:
    """Vet the check's `where` by the server's reading of it (`Dialect.refused_call`: it also runs on the fix's
    writable connection), then try it on no rows, so a mistake in it is reported as such, naming the check."""
    if not resolved.check.where:
        return
    # LIMIT 0 (not `AND false`, which SQLAlchemy would fold away with the filter) reads no rows.
    probe = sa.select(sa.literal(1)).select_from(resolved.table).where(*resolved.filters).limit(0)
    where = " ".join(resolved.check.where.split())
    try:
        statement = where_probe(resolved, conn.dialect.identifier_preparer)
        refused = refused_where(db.rules, conn, resolved, db.describe)
        if refused:
            raise CheckDefinitionError(f"check {resolved.check.name!r}: where: {refused}", field="where",
                                       detail=refused)
        unknown = db.rules.unknown_column(conn, statement)  # `"staus"` read as a name, not as 'staus'
        if unknown:
            detail = f"{where!r} fails: {db.label} ({db.display_url}): {unknown}"
            raise CheckDefinitionError(f"check {resolved.check.name!r}: where {detail}", field="where",
                                       detail=detail)
        conn.execute(probe).all()
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseError(db.describe(exc)) from None
        detail = f"{where!r} fails: {db.describe(exc)}"
        raise CheckDefinitionError(f"check {resolved.check.name!r}: where {detail}", field="where",
                                   detail=detail) from None


def _page(resolved: TableCheck, rows: Sequence[Any], limit: int) -> GroupPage:
    """A `GroupPage` from `group_page` rows (k0.., n, [first_seen, last_seen]); one more row than `limit`
    means there is a next page."""
    width = len(resolved.key_exprs)
    groups = []
    for row in rows[:limit]:
        first, last = (as_datetime(v) for v in row[width + 1:width + 3]) if resolved.timestamp is not None \
            else (None, None)
        groups.append(DuplicateGroup(tuple(row[:width]), int(row[width]), first, last))
    next_cursor = groups[-1].cursor if len(rows) > limit and groups else None
    return GroupPage([c.name for c in resolved.key_columns], groups, next_cursor)
