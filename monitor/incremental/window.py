"""What bounds the rows one incremental run reads, from what the database says.

- **The watermark never runs ahead of rows still to come.** A timestamp watermark stays at or below the
  database's clock, an id watermark at or below its sequence's position (the highest value handed out): a row
  dated a day ahead, or imported with an id far above the sequence, is read (and recognised when read again) but
  does not lift the watermark past the rows that will still arrive; the run says such a row lies in the future.
- **The overlap window** (rows re-read below the watermark, for rows committed after rows with higher values)
  covers, for a timestamp watermark, every transaction still running at the previous run: the next run reads
  from the start of the oldest of them (`Window.since`, kept in the state; by the database's clock, and by the
  highest value read where that lies behind it: rows dated by an application's clock in another time zone),
  and at least `TIMESTAMP_OVERLAP` below the watermark, for clocks that differ; for an id watermark, every range
  of values the sessions inserting now may hold cached from the sequence (`cache_size` times its increment, times
  the sessions that may hold one; at least `ID_OVERLAP`, for transactions committing out of order), and every
  transaction still running that may insert a value it took (`Dialect.writers_columns`): the state keeps the
  positions (`bounded` highest value read) of recent runs by the database's clock
  (`POSITIONS_KEPT`, over `POSITIONS_SPAN`), and the next run reads from the position of the last run before the
  oldest such transaction began (`id_since`, kept as `Window.since`), minus the overlap.
- Where the database cannot say, the run says once that late rows wait for the full pass, and why; so does a run
  whose sequence hands out cached ranges (`CACHE` > 1): an idle session holds its range for as long as it stays
  open, beyond any window (`_cache_note`, which proposes `CACHE 1`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.detect import CheckDefinitionError

if TYPE_CHECKING:
    from monitor.dialects.polling import SequencePosition
    from monitor.incremental.check import IncrementalCheck

TIMESTAMP_OVERLAP = timedelta(minutes=5)  # the least a timestamp watermark re-reads below itself
ID_OVERLAP = 1000  # the least an integer watermark re-reads below itself
CACHED_IDS = "late rows (sequence cache)"  # the kind of the note `_cache_note` writes
REMOVALS_UNSEEN = "deleted rows unseen"  # the kind of the note `IncrementalCheck._removals_notes` writes
FUTURE_TOLERANCE = timedelta(minutes=1)  # a row this far ahead of the database's clock is said to lie in the future
POSITIONS_KEPT = 32  # runs whose (database clock, position) the state keeps, thinned to spread over
POSITIONS_SPAN = 3600.0  # seconds: a transaction writing for longer than this is beyond them


@dataclass(frozen=True)
class Window:
    """One run's bounds: `upper` (the watermark never goes above it; None where nothing bounds it) and what it is,
    the `overlap` below the watermark, `since` (the earliest value a row of a transaction running now can carry:
    the next run reads from there at the latest; None where not known), and what the database could not bound
    (one line each)."""

    upper: Any
    upper_name: str
    overlap: Any
    notes: list[str] = field(default_factory=list)
    since: Any = None
    running: timedelta | None = None  # how long the oldest transaction running has run (timestamp windows)

    def since_below(self, highest: Any) -> Any:
        """`since`, or earlier where the highest value read lies below the clock by more than a transaction runs:
        rows dated by another clock than the database's (a `timestamp` column the application fills with its own
        session's local time, behind the database's: a JDBC driver sets the session's time zone to the JVM's) carry
        their transaction's start by that clock, which stands at least at the highest value read; so a transaction
        running now dates its rows no earlier than `highest` minus how long it has run."""
        if self.since is None or self.running is None or highest is None:
            return self.since
        try:
            if isinstance(highest, datetime):
                return min(self.since, highest - self.running)
            if isinstance(highest, date):
                return min(self.since, highest - timedelta(days=1))
        except TypeError:  # naive against aware: the column's type changed
            pass
        return self.since

    def resumed(self, highest: Any) -> tuple[Any, Any]:
        """(`since_below(highest)`, kept as the state's `pending_since`; `start(highest, since)`): where a run that
        leaves its watermark at `highest` has the next one start reading, and the `since` that start comes from."""
        since = self.since_below(highest)
        return since, self.start(highest, since)

    def start(self, watermark: Any, since: Any = None) -> Any:
        """Where a run reading past `watermark` starts: the watermark minus the overlap, or `since` (the start of
        the oldest transaction a run saw running) where that is earlier."""
        if watermark is None:
            return None
        if isinstance(watermark, date) and not isinstance(watermark, datetime):
            days = max(1, -(-int(self.overlap.total_seconds()) // 86400))  # a DATE column: whole days
            start = watermark - timedelta(days=days)
        else:
            start = watermark - self.overlap
        try:
            return since if since is not None and since < start else start
        except TypeError:  # naive against aware: the column's type changed
            return start

    def bounded(self, value: Any) -> Any:
        """`value`, or the upper bound where `value` lies beyond it."""
        if value is None or self.upper is None:
            return value
        try:
            return self.upper if value > self.upper else value
        except TypeError:  # naive against aware: the column's type changed; nothing to bound by
            return value

    def ahead_bound(self) -> Any:
        """The value beyond which a row lies in the future (`ahead`), or None where nothing bounds it."""
        if self.upper is None:
            return None
        return self.upper + FUTURE_TOLERANCE if isinstance(self.upper, datetime) else self.upper

    def ahead(self, value: Any) -> bool:
        """Whether a read value lies in the future: beyond the bound (a clock: by more than FUTURE_TOLERANCE)."""
        if value is None or self.upper is None:
            return False
        try:
            if isinstance(value, datetime):
                return bool(value > self.upper + FUTURE_TOLERANCE)
            return bool(value > self.upper)
        except TypeError:
            return False


def window_for(conn: Connection, check: IncrementalCheck, writers: tuple[Any, Any] | None = None,
               positions: str | None = None) -> Window:
    """Ask the database for this run's bounds (a few catalog reads; no scan). `writers`: the database's clock and
    the start of the oldest transaction that may still insert a value it took, as read with the table's highest
    value (`Dialect.writers_columns`; None where not read); `positions`: what the state keeps of recent runs."""
    if check.kind == "timestamp":
        return _timestamp_window(conn, check)
    return _id_window(conn, check, writers, positions)


def id_since(positions: str | None, oldest: Any, overlap: int, column: str) -> tuple[int | None, list[str]]:
    """Where the next run of an id watermark reads from at the latest: the position kept of the last run before
    the oldest transaction still running that may insert began (`oldest`, seconds by the database's clock),
    minus the overlap; None where no transaction is writing. Where it began before every run kept, the earliest
    position kept (or none), and a note."""
    if oldest is None:
        return None, []
    kept = _positions(positions)
    before = [value for at, value in kept if at <= float(oldest)]
    if before:
        return before[-1] - overlap, []
    note = (f"late rows: a transaction open since before the runs the state keeps (the last "
            f"{int(POSITIONS_SPAN // 60)} min, {POSITIONS_KEPT} runs) may hold {column} values below the window; "
            "a row it commits there waits for the full pass")
    return (kept[0][1] - overlap if kept else None), [note]


def next_positions(positions: str | None, clock: Any, position: Any) -> str | None:
    """The positions kept after a run at `clock` (seconds, the database's clock) that left `position`: older
    ones dropped beyond POSITIONS_SPAN, and above POSITIONS_KEPT the one whose neighbours lie closest (the kept
    runs spread over the span; a transaction between two of them reads from the earlier: more, never less). A
    kept position above this one (a sequence set back) is dropped."""
    if clock is None or not isinstance(position, int):
        return positions
    now = float(clock)
    kept = [(at, value) for at, value in _positions(positions)
            if now - POSITIONS_SPAN <= at < now and value <= position]
    kept.append((now, position))
    while len(kept) > POSITIONS_KEPT:
        closest = min(range(1, len(kept) - 1), key=lambda i: kept[i + 1][0] - kept[i - 1][0])
        del kept[closest]
    return json.dumps(kept)


def merged_positions(a: str | None, b: str | None) -> str | None:
    """The positions two processes kept (each a fact about the sequence), as one list."""
    union = sorted(set(_positions(a)) | set(_positions(b)))
    if not union:
        return a or b
    return json.dumps(union[-POSITIONS_KEPT:])


def _positions(text: str | None) -> list[tuple[float, int]]:
    if not text:
        return []
    return sorted((float(at), int(value)) for at, value in json.loads(text))


def _timestamp_window(conn: Connection, check: IncrementalCheck) -> Window:
    rules, column = check.resolved.rules, check.column
    clock = conn.execute(sa.select(rules.database_clock(column))).scalar()
    age, why = rules.oldest_transaction_age(conn)
    notes = []
    overlap = TIMESTAMP_OVERLAP
    if age is None or clock is None:
        notes.append(f"late rows: a row committed more than {_minutes(overlap)} after its {column.name} value waits "
                     f"for the full pass: {why}")
        return Window(clock, "the database's clock", overlap, notes)
    running = timedelta(seconds=age + 1)
    since = clock - running if isinstance(clock, datetime) else clock - timedelta(days=1)
    return Window(clock, "the database's clock", overlap, notes, since, running)


def _id_window(conn: Connection, check: IncrementalCheck, writers: tuple[Any, Any] | None,
               positions: str | None) -> Window:
    rules, column = check.resolved.rules, check.column
    position = rules.sequence_position(conn, check.resolved.table, column)
    if position is not None and position.descending:
        # Every new row lies below the watermark: the runs read none, and the sequence's position, below the
        # watermark at every run, made one full pass after another, each saying the sequence was set back.
        detail = (f"column {column.name!r} is handed out by {position.name}, which counts down (a negative "
                  "INCREMENT BY): new rows lie below any watermark; watch a column that grows")
        raise CheckDefinitionError(f"check {check.resolved.check.name!r}: incremental: {detail}",
                                   field="incremental", detail=detail)
    if position is None:
        return Window(None, "", ID_OVERLAP, [
            f"late rows: {column.name} is not handed out by a sequence the database describes, so nothing bounds "
            f"the watermark by the rows still to come; a row committed with a value more than {ID_OVERLAP:,} below "
            "the highest read waits for the full pass"])
    cache_notes = [_cache_note(position)] if position.cached_span else []
    if position.last_value is None:
        return Window(None, "", ID_OVERLAP, [
            f"late rows: the position of {position.name} cannot be read ({position.why_unknown}); a row committed "
            f"with a value more than {ID_OVERLAP:,} below the highest read waits for the full pass", *cache_notes])
    cached = position.cached_span * (position.sessions or 1)
    overlap = max(ID_OVERLAP, cached)
    notes: list[str] = list(cache_notes)
    since = None
    if writers is not None:
        since, unkept = id_since(positions, writers[1], overlap, column.name)
        notes += unkept
    elif check.writers_unseen:
        notes.append(f"late rows: {check.writers_unseen}, so a row committed with a value more than {overlap:,} "
                     "below the highest read waits for the full pass")
    return Window(position.last_value, f"{position.name} (last value {position.last_value:,})", overlap, notes,
                  since)


def _cache_note(position: SequencePosition) -> str:
    """What no window bounds where a sequence hands out cached ranges: a session holds the ids it cached and has not
    used for as long as it stays open (an idle pooled connection: hours), so its next row may carry an id any number
    of rows below the watermark. The database does not say which session holds which range."""
    return (f"{CACHED_IDS}: {position.name} has CACHE {position.cache_size}: a session takes {position.cached_span:,} "
            "ids at once and holds those it has not used for as long as it stays open (idle in a pool included), so "
            "a row with an id from a session's cached range can arrive later than any window allows, and waits for "
            f"the full pass; `ALTER SEQUENCE {position.name} CACHE 1` would hand out every id in order (a proposal: "
            "dupewatch never runs it)")


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
