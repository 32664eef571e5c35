"""The guard's rounds: one attempt (`add_guard`), converging while the application keeps writing duplicates
(`secure_guard`: fix the stragglers, build again), and the guard after a fix (`guard_after_fix`)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from monitor.db import DatabaseError
from monitor.dialects import Dialect
from monitor.dialects.mysql import MySQL
from monitor.dialects.postgresql import PostgreSQL
from monitor.dialects.sqlite import SQLite
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.errors import FixError, FixRefused
from monitor.fix.execute import FixReport, ProgressCallback, run_fix
from monitor.fix.guard.build import Builder
from monitor.fix.guard.locked import LockedSession
from monitor.fix.guard.mysql import MySQLBuilder
from monitor.fix.guard.postgresql import PostgresBuilder
from monitor.fix.guard.report import ConcurrentBuildRefused, DuplicatesFound, GuardReport, GuardRound, guard_name
from monitor.fix.guard.sqlite import SQLiteBuilder
from monitor.fix.target import Target, target

GUARD_ROUNDS = 3

# Each database's builder, by the class of its dialect.
_BUILDERS: dict[type[Dialect], type[Builder]] = {PostgreSQL: PostgresBuilder, MySQL: MySQLBuilder,
                                                 SQLite: SQLiteBuilder}


def builder_for(t: Target) -> Builder:
    """The builder of the target's database (SQLite's for a database without one of its own)."""
    return _BUILDERS.get(type(t.db.rules), SQLiteBuilder)(t)


def guard_refusal(monitor: Monitor, check: str, *, lock_timeout: float | None = None) -> FixRefused | None:
    """What refuses `check`'s guard whatever the rows hold (a `where` on MySQL/MariaDB, a key needing an
    expression index MariaDB cannot build, an index of the guard's name with another definition, a PostgreSQL
    predicate that is not IMMUTABLE), asked before a fix with `--add-constraint` deletes anything, so that it
    refuses up front instead of reporting the guard's refusal after its deletes, and its dry run names it. Reads
    only (PostgreSQL's trial of the definition on an empty temporary copy of the table is rolled back)."""
    builder = builder_for(target(monitor, check))
    try:
        builder.probe(lock_timeout)
    except FixRefused as exc:
        return exc
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(builder.t.db.describe(exc)) from None
    return None


def add_guard(monitor: Monitor, check: str, *, lock_timeout: float | None = None) -> GuardReport:
    """Add the unique index for `check` in one attempt; idempotent.

    `lock_timeout` (seconds): build a plain `CREATE UNIQUE INDEX` under the table's write lock, waiting at most
    this long for the lock. Raises `DuplicatesFound` when the table has duplicates (nothing built),
    `GuardInterrupted` on Ctrl-C (nothing left behind, or the statement to run), `FixRefused` with the real
    cause otherwise, `monitor.db.DatabaseError` when the database cannot be reached.
    """
    builder = builder_for(target(monitor, check))
    try:
        return builder.add(lock_timeout)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(builder.t.db.describe(exc)) from None


def secure_guard(monitor: Monitor, check: str, *, rounds: int = GUARD_ROUNDS, lock_timeout: float | None = None,
                 batch_size: int | None = None, progress: ProgressCallback | None = None,
                 on_round: Callable[[GuardRound], None] | None = None) -> GuardReport:
    """Add the guard while the application may still be writing duplicates: converge in bounded rounds.

    Call it after a fix. Round 1 builds; each later round first fixes the duplicates that arrived meanwhile
    (`run_fix`, archived and undoable like any fix) and builds again, at most `rounds` rounds. With
    `lock_timeout` (seconds), up to `rounds` more rounds each fix the stragglers, take the table's write lock
    (waiting at most `lock_timeout`), re-count under it and build a plain `CREATE UNIQUE INDEX`; application
    writes wait meanwhile. `on_round` is called after every round. Returns the report with every round in
    `rounds`; raises `FixRefused` (the last round's cause, rounds so far in `.rounds`) when it did not converge
    or something other than new duplicates stopped it.
    """
    done: list[GuardRound] = []
    plans: list[tuple[int, float | None]] = [(n, None) for n in range(1, rounds + 1)]
    if lock_timeout is not None:
        plans += [(n, lock_timeout) for n in range(rounds + 1, 2 * rounds + 1)]
    last: FixError | None = None
    concurrent_refused = False
    for number, locked in plans:
        if concurrent_refused and locked is None:
            continue  # an event trigger may fire on a concurrent build: the locked rounds' builds are accounted
        step = GuardRound(number, "locked" if locked is not None else _method(monitor, check), "failed")
        try:
            if locked is not None and _method(monitor, check) == "concurrent":
                report = _locked_postgresql(monitor, check, locked, step, batch_size, progress)
            else:
                if number > 1:
                    _fix_stragglers(monitor, check, step, batch_size, progress)
                report = add_guard(monitor, check, lock_timeout=locked)
        except DuplicatesFound as exc:
            step.outcome, step.message, last = "duplicates", exc.short, exc
            _record_round(done, step, on_round)
            continue
        except ConcurrentBuildRefused as exc:
            if lock_timeout is None:
                raise _with_rounds(FixRefused(str(exc)), done) from None
            concurrent_refused, last = True, exc
            continue
        except FixError as exc:
            step.message = str(exc)
            _record_round(done, step, on_round)
            raise _with_rounds(FixRefused(str(exc)), done) from None
        step.outcome = "built" if report.created else "present"
        _record_round(done, step, on_round)
        report.rounds = done
        return report
    message = (f"the unique index for {check!r} was not added after {len(done)} round(s) of fixing the "
               f"stragglers and building: {last}")
    if lock_timeout is None:
        message += " (the application keeps writing duplicates: try --lock-timeout to pause its writes briefly)"
    raise _with_rounds(FixRefused(message), done)


def guard_after_fix(monitor: Monitor, check: str, report: FixReport, *, rounds: int = GUARD_ROUNDS,
                    lock_timeout: float | None = None, batch_size: int | None = None,
                    progress: ProgressCallback | None = None,
                    on_round: Callable[[GuardRound], None] | None = None) -> GuardReport:
    """`fix --add-constraint` and the dashboard's checkbox: `secure_guard` after a done fix.

    On success sets `report.constraint`, adds the guard's notes to `report.notes` and records the constraint
    on the fix's row of `dupewatch_fix`; on failure adds "constraint not added: <cause>" to `report.notes` and
    returns a report with `created` False and `error` set (the fix itself stands). Every round is in `rounds`.
    """
    try:
        guard = secure_guard(monitor, check, rounds=rounds, lock_timeout=lock_timeout, batch_size=batch_size,
                             progress=progress, on_round=on_round)
    except FixError as exc:
        report.notes.append(f"constraint not added: {exc}")
        done = exc.rounds if isinstance(exc, _RefusedAfterRounds) else []
        report.notes.extend(r.line() for r in done)
        report.straggler_fixes = [r.straggler_fix for r in done if r.straggler_fix and r.straggler_fix_stands]
        return GuardReport(check, guard_name(check), False, "", [], done, error=str(exc))
    report.straggler_fixes = [r.straggler_fix for r in guard.rounds if r.straggler_fix and r.straggler_fix_stands]
    report.constraint = guard.index_name
    report.notes.extend(guard.notes)
    if len(guard.rounds) > 1:
        report.notes.extend(r.line() for r in guard.rounds)
    t = target(monitor, check)
    with t.db.connect(t.db.bookkeeping) as conn, conn.begin():
        records.update_record(conn, report.fix_id, constraint_name=guard.index_name)
    return guard


def _record_round(done: list[GuardRound], step: GuardRound, on_round: Callable[[GuardRound], None] | None) -> None:
    done.append(step)
    if on_round is not None:
        on_round(step)


class _RefusedAfterRounds(FixRefused):
    """The guard gave up: `rounds`, the rounds it ran before."""

    def __init__(self, message: str, rounds: list[GuardRound]) -> None:
        super().__init__(message)
        self.rounds = rounds


def _with_rounds(exc: FixRefused, done: list[GuardRound]) -> FixRefused:
    return _RefusedAfterRounds(str(exc), list(done))


def _method(monitor: Monitor, check: str) -> str:
    rules = monitor.database_for(monitor.config.check(check)).rules
    return "concurrent" if rules.concurrent_index_build else "atomic"


def _fix_stragglers(monitor: Monitor, check: str, step: GuardRound, batch_size: int | None,
                    progress: ProgressCallback | None) -> None:
    """Fix the duplicates that arrived since the last round, if there are any."""
    t = target(monitor, check)
    with t.db.connect(t.db.writer) as conn, conn.begin():
        groups, _excess, _rows = conn.execute(t.tc.figures()).one()
    if not groups:
        return
    fixed = run_fix(monitor, check, batch_size=batch_size, progress=progress)
    step.straggler_fix, step.stragglers_deleted = fixed.fix_id, fixed.deleted


def _locked_postgresql(monitor: Monitor, check: str, lock_timeout: float, step: GuardRound,
                       batch_size: int | None, progress: ProgressCallback | None) -> GuardReport:
    """The final straggler pass and a plain build, all in one transaction holding the table's write lock.

    The fix runs on the locked session itself (`run_fix` through a one-connection engine whose commits are
    savepoints of the locked transaction), so nothing the application writes can slip in between the pass
    and the build; everything (fix records included) commits together or not at all."""
    builder = builder_for(target(monitor, check))
    assert isinstance(builder, PostgresBuilder)
    builder.notes.extend(builder.null_notes())
    if builder.existing() == "present":  # also drops an INVALID one and asks PostgreSQL about the definition
        index = builder.index(concurrently=False)
        return GuardReport(check, builder.name, False, builder.statement(index),
                           [f"index {builder.name} already exists", *builder.notes])
    try:
        with LockedSession(builder, lock_timeout) as session:
            if session.groups():
                fixed = run_fix(session.monitor(monitor), check, batch_size=batch_size,
                                progress=progress)
                step.straggler_fix, step.stragglers_deleted = fixed.fix_id, fixed.deleted
            return session.build()
    except DuplicatesFound as exc:
        if step.straggler_fix is None:
            raise
        rolled_back = f" (this round's straggler fix {step.straggler_fix} was rolled back with it)"
        raise DuplicatesFound(f"{exc}{rolled_back}", exc.short + rolled_back) from None
