"""One thread per live database: read its change stream, re-count the groups the changes name, report.

The reader opens the stream first and counts every watched check in full second, so that nothing committed
between the two is missed (a change seen twice only re-counts a group twice). Then it reads the stream every
`poll_seconds` (at once again while changes keep coming; at once when a stream fed by a thread has some:
`ChangeStream.wait`) and re-counts, through the detection connections,
the groups the changes name. A broken stream (connection lost, slot gone, a re-count that failed after its
changes were consumed) is a **gap**: reported to the sink at once (metric, log, a poll of the database's
checks), then the stream is opened again and every check counted in full, the groups that appeared
meanwhile counted as new. A stream lost with its connection whose server can give what followed the position
its changes were counted up to (`StreamLost.resumable`: MariaDB/MySQL's binary log) is opened again from that
position instead, every check counted in full (groups formed meanwhile are new) and its changes since read
again: no gap, unless the server no longer holds the position (a purged binary log: then one gap, reported as
above, and the stream opened from the current position). Lost again at the same position, it waits as a failed
opening does before trying again. Changes the stream says it cannot name (`Transaction.unnamed`: a statement MariaDB
logged as a statement) are a gap too, reported the same way and followed by a full count, on the open stream.
A refusal (`LiveRefused`) is logged once and ends the reader; polling goes on.

**Across restarts.** Once the changes of a read are counted, the stream's position is saved in the state store
(at most every `SAVE_SECONDS`, and when the reader stops; a position is saved only after what precedes it was
counted, so a crash re-reads, never skips: at least once; while rows of the binary log are not visible yet, the
position before the oldest one's transaction: `RowVisibility.resume`). A reader started later opens the stream from the
position saved for its database: MariaDB/MySQL reads what committed while the daemon was down; where the server
cannot resume from it (a PostgreSQL temporary slot dies with its session; a purged binary log) that is a gap,
reported like any other (metric, log line, a poll of the database's checks) after every check was counted in
full, which counts the rows that arrived meanwhile. A daemon's reader (`remember`) also saves each check's known
groups (their identities, by the check's subject, with the position's cadence); its first count compares with
them, so a group formed while no daemon ran is new and one saved before is not; with none saved (the first start)
the groups are the baseline, logged once per check. Until the stream is first followed the daemon holds its runs'
new groups in the database's checks (`MetricsExporter.live_starting`): a reader whose open or first count fails,
or that is stopped first, says at once that it is not following (`_release`), which counts them.

**Across a config reload.** The reader of the new config takes over from the previous one (`predecessor`):
it opens its own stream while the previous reader still follows, then has it read to the end of its stream and
stop (`hand_over`). Whatever committed before the new stream began is read by the previous one, whatever
committed after by the new one, so a reload is no gap, on PostgreSQL either, unless the previous reader could
not read to its end (then it is one, reported like any other). The re-counts the previous reader still owed (keys
read before their transactions were visible, or due to be counted again) are the new one's, for each check it
follows as before (`_take_recounts`).

**Visibility.** A transaction a stream hands out may not be visible to other sessions yet. PostgreSQL's stream
says which (`ChangeStream.unsettled`): a read's keys are counted again once its transactions are. MariaDB/MySQL's
cannot: the rows its changes name are asked about by their table's primary key before each re-count
(`RowVisibility`, monitor/live/visibility.py), counted again once visible, and reported as a gap where one is
not after `VISIBLE_SECONDS`; the keys of a table without one are counted again a fixed time later
(`recount_again`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.config import CheckConfig
from monitor.detect import CheckDefinitionError, TableCheck
from monitor.dialects.polling import expr_text
from monitor.engine import CheckError, Monitor
from monitor.live.cascades import FULL, NOTHING, READ_BY_WHERE, Effect, ancestors
from monitor.live.changes import UNSEEN, Change, ChangeStream, LiveRefused, StreamLost, Transaction, overflowed
from monitor.live.groups import KEYS_PER_READ, Figures, LiveGroups, Named, merge
from monitor.live.visibility import GIVE_UP_SECONDS, VISIBLE_SECONDS, RowVisibility

log = logging.getLogger("dupewatch.live")

POLL_SECONDS = 0.2
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between attempts to open a stream again
SAVE_SECONDS = 1.0  # the stream's position is saved at most this often
BATCH_SECONDS = 0.02  # reads of a stream that keeps changing start at most this often
COMPILED_STATEMENTS = 64  # compiled re-count statements kept per reader
DRAIN_SECONDS = 5.0  # how long a reader handing over may read to the end of its stream
UNSETTLED_READS = 256  # reads waiting for their transactions to be visible, each re-counted once they are
MISSING_SECONDS = 2.0  # how often a check whose table was not there at the last full count is looked for again


class LiveSink(Protocol):
    """Where a reader reports (the daemon's metrics exporter and its poller)."""

    def live_figures(self, check: str, database: str, figures: Figures) -> None: ...

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None: ...

    def live_gap(self, database: str, reason: str) -> None: ...

    def live_following(self, database: str, following: bool) -> None: ...

    def live_overflow(self, database: str, check: str) -> None:
        """A read named more keys of `check`'s table than `KEYS_PER_READ`: the check was counted in full."""

    def live_left(self, database: str, check: str) -> None:
        """The stream no longer counts `check`, which it counted before: a full count (after a gap) left it to its
        poll (its table's changes no longer streamed, its key's index dropped). Its runs' figures count again."""


class LiveReader:
    """Follows one database's change stream for its table checks; `start()`, `stop()`."""

    def __init__(self, monitor: Monitor, database: str, checks: list[CheckConfig], stream: ChangeStream,
                 sink: LiveSink, *, poll_seconds: float = POLL_SECONDS, predecessor: LiveReader | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone(), remember: bool = False,
                 compare: bool = True, owner: str | None = None) -> None:
        self.monitor = monitor
        self.database = database
        self.checks = checks
        self.stream = stream
        self.sink = sink
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.refused: str | None = None
        self.groups: dict[str, LiveGroups] = {}
        self._tables: dict[tuple[str, str], list[str]] = {}  # (schema, table) as the stream names it -> checks
        # Tables whose changes cascade to checks' tables unnamed by the stream (InnoDB's foreign key actions)
        self._cascades: dict[tuple[str, str], dict[str, Effect]] = {}
        # Checks left to their poll (logged once): no index serves the key, or the stream shows none of their table's
        # changes (`ChangeStream.unstreamed`)
        self._unindexed: set[str] = set()
        # Checks whose table was not there (or did not resolve) at the last full count: renamed or moved away, maybe
        # for a moment (a swap in two steps, SET SCHEMA and back). Looked for again every `MISSING_SECONDS`; once
        # there, every check is counted in full (they were followed by no change meanwhile). Before, such a check was
        # left to its poll until the stream was opened again, and said to lack an index on its key.
        self._missing: set[str] = set()
        self._missing_looked = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"live-{database}", daemon=True)
        self.following = threading.Event()  # set once the stream is open and every check counted
        self.predecessor = predecessor  # the reader of the previous config, following until this one took over
        self.took_over = threading.Event()  # set once the predecessor (if any) is stopped, handed over or not
        if predecessor is None:
            self.took_over.set()
        self._drain = False  # stopping: read to the end of the stream first (`hand_over`)
        self._drained = False  # the last read reached the end of the stream
        self._saved: tuple[str | None, float] = (None, 0.0)  # the position last saved, and when (monotonic)
        self._counted: str | None = None  # the stream's position once the changes it read were counted
        self._resumable: str | None = None  # where a stream lost with its connection can be opened again
        # The detection engine keeps no compiled statements (each check runs its own once per interval); the
        # re-counts repeat a few shapes many times a second, so the reader keeps theirs.
        self._compiled: sa.util.LRUCache[Any, Any] = sa.util.LRUCache(COMPILED_STATEMENTS)
        # `remember` (the daemon's readers): each check's groups are saved in the state store, and (`compare`: at
        # the daemon's start, not a reload, whose runs counted what formed meanwhile) the first count counts the
        # groups not saved before as new.
        self.remember = remember and compare and predecessor is None
        self._saves = remember
        self.owner = owner  # who saves the groups (`History.forget_live_groups` deletes those of checks removed)
        self._counted_once: set[str] = set()  # checks counted in full at least once by this reader
        # Until the stream is first followed the daemon holds the new groups its runs find in this database's
        # checks (`MetricsExporter.live_starting`); a reader that cannot get there (an attempt to open the stream
        # or count it first failed, it was stopped first) says it is not following, which counts them (`_release`).
        self._followed_once = False
        self._released = False
        self._release_lock = threading.Lock()
        # check -> the subject (`Monitor.subject`) its groups were last saved under: taken again at each count and
        # save, not kept from the first (a reader that started while the server did not say what it is saved its
        # groups under the URL's address, where the next start, the server answering, found none); under another
        # subject, the next save writes all of them.
        self._subjects: dict[str, str] = {}
        # Keys of reads whose transactions were not yet visible when they were counted (`ChangeStream.unsettled`),
        # one bucket per read: its transactions, and its keys to re-count once they all are. Each is released on
        # its own (one shared bucket, joined by every read, never emptied under steady writes: its keys never
        # counted again); past `UNSETTLED_READS` buckets, or `KEYS_PER_READ` keys in all, a read joins the newest.
        self._unsettled: list[tuple[set[str], dict[str, Named]]] = []
        # A stream that cannot tell (`ChangeStream.recount_again`): the keys read since the last hand-over, and
        # those handed over, counted again once their time comes (between one and two such delays after a read).
        self._again_every = stream.recount_again
        # Such a stream's rows are asked about by their identity instead, where their table has one (monitor/live/
        # visibility.py): their keys are counted again once they are visible, not at a fixed time.
        self._visibility = RowVisibility(monitor.database(database).rules) if stream.recount_again else None
        self._again: dict[str, Named] = {}
        self._again_due: tuple[float, dict[str, Named]] | None = None
        self._groups_saved_at = 0.0  # monotonic

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self.stream.close()
        self._release()  # a reader stopped (or removed by a reload) before it followed: its thread may hang still
        self.took_over.set()  # a reader stopped before it opened takes over from nobody

    def hand_over(self) -> bool:
        """Stop after reading and counting everything the stream holds: True when that last read reached the end
        of the stream, so every change committed before this call was counted."""
        self._drain = True
        self.stop(DRAIN_SECONDS + 5.0)
        return self._drained

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        gap_pending = False
        resume = self._saved_position()
        reconnecting = False  # `resume` is where a lost stream's changes were counted up to (`StreamLost.resumable`)
        resumed: tuple[str | None, int] = (None, 0)  # the last such position, and how often it was lost there
        while not self._stopping.is_set():
            try:
                restart_gap = self.stream.open(resume)
                self._count_all(count_new=gap_pending)
            except LiveRefused as exc:
                self.sink.live_following(self.database, False)  # for good: its checks are left to their poll
                log.error(str(exc), extra={"fields": {"database": self.database}})
                self.refused = str(exc)  # last: whoever waits for it finds the rest said
                return
            except (StreamLost, sa.exc.SQLAlchemyError, *CheckError) as exc:
                self.stream.close()
                if not gap_pending or reconnecting:  # not a gap (yet): said at each attempt, not hidden
                    log.warning("live stream not open, retrying", extra={"fields": {
                        "database": self.database, "error": self._describe(exc)}})
                self._release()
                self._stopping.wait(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            except Exception:  # a bug must not end live mode silently: logged, then retried like a failure
                log.exception("live reader failed to open", extra={"fields": {"database": self.database}})
                self.stream.close()
                self._release()
                self._stopping.wait(RETRY_SECONDS[-1])
                continue
            attempt = 0
            if self.predecessor is not None:
                predecessor, self.predecessor = self.predecessor, None
                drained = predecessor.hand_over()
                self._take_recounts(predecessor)
                if drained and restart_gap is not None:
                    log.info("took over the change stream from the previous config's reader, no gap", extra={
                        "fields": {"database": self.database}})
                    restart_gap = None  # it read what committed before this stream began
                self.took_over.set()
            if restart_gap is not None:  # counted in full above: what arrived while no stream was read is counted
                self.sink.live_gap(self.database, f"database {self.database}: live stream: {restart_gap}")
            elif reconnecting:
                log.info("live stream lost and opened again from the position counted up to: no gap",
                         extra={"fields": {"database": self.database, "position": resume}})
            elif resume is not None:
                log.info("resuming the change stream from the position saved before", extra={"fields": {
                    "database": self.database, "position": resume}})
            resume, reconnecting = None, False  # from now on the stream keeps its own position
            self._counted = self.stream.position
            self._save_position(force=True)
            self._save_groups(force=True)
            log.info("live stream open again, every check counted in full" if gap_pending else
                     "following the change stream", extra={"fields": {"database": self.database}})
            with self._release_lock:
                self._followed_once = True
            self.following.set()
            self.sink.live_following(self.database, True)
            reason = self._follow()
            self.following.clear()
            if reason is None:
                self.sink.live_following(self.database, False)
                return
            gap_pending = True
            if self._resumable is None:
                self.sink.live_gap(self.database, reason)
                continue
            # Lost with its connection: opened again from where its changes were counted, it misses nothing
            # (at least once), and it is a gap only where the server no longer holds that position (`open`
            # returns why, or the stream says so once read: then `_resumable` is None).
            resume, reconnecting = self._resumable, True
            self.sink.live_following(self.database, False)  # the poll's figures count until it is followed again
            resumed = (resume, resumed[1] + 1 if resumed[0] == resume else 0)
            log.warning("live stream lost, opening it again from the position counted up to", extra={"fields": {
                "database": self.database, "error": reason, "position": resume}})
            if resumed[1]:  # lost again before anything more was counted: not at once, as any retry
                self._stopping.wait(RETRY_SECONDS[min(resumed[1] - 1, len(RETRY_SECONDS) - 1)])
        self._release()  # stopped before it followed

    def _release(self) -> None:
        """Not followed yet, and maybe never: say so once (`live_following(False)`), so that the new groups the
        daemon's runs found in this database's checks meanwhile, held until the stream's first count, are counted
        and its runs count theirs at once until the stream is followed (a stream that never opens: PostgreSQL's
        replication slots all in use, a first count past the statement timeout). A later first count that
        compares with the saved groups may count some of them again: at least once, never none."""
        with self._release_lock:
            if self._followed_once or self._released:
                return
            self._released = True
        self.sink.live_following(self.database, False)

    def _follow(self) -> str | None:
        """Read and apply changes until stopped (None) or the stream breaks (the reason, one line; then
        `_resumable` is where to open it again without a gap, or None)."""
        self._resumable = None
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                done = self._read_and_apply()
            except StreamLost as exc:
                self.stream.close()
                self._resumable = self._counted if exc.resumable else None
                return None if self._stopping.is_set() else str(exc)
            except (sa.exc.SQLAlchemyError, *CheckError) as exc:
                self.stream.close()  # its changes are consumed but not counted: a gap, unless stopping
                if self._stopping.is_set():  # a stop cancelled the re-count: not a gap (the next start has one
                    return None  # where the position cannot be resumed; nothing uncounted is saved)
                return f"database {self.database}: re-count failed: {self._describe(exc)}"
            except Exception as exc:  # a bug must not end live mode silently: logged, and a gap like any other
                log.exception("live reader failed", extra={"fields": {"database": self.database}})
                self.stream.close()
                return f"database {self.database}: live reader failed: {type(exc).__name__}"
            self._counted = self.stream.position
            self._save_position()
            self._save_groups()
            try:
                self._look_for_missing()
            except StreamLost as exc:
                self.stream.close()
                return None if self._stopping.is_set() else str(exc)
            except (sa.exc.SQLAlchemyError, *CheckError) as exc:
                self.stream.close()
                return None if self._stopping.is_set() else \
                    f"database {self.database}: count failed: {self._describe(exc)}"
            except Exception as exc:  # as a read's: a bug (or a refusal naming the table) must not end live mode
                log.exception("live reader failed", extra={"fields": {"database": self.database}})  # silently
                self.stream.close()
                return f"database {self.database}: live reader failed: {type(exc).__name__}"
            if not done:
                self.stream.wait(self.poll_seconds)
            elif (left := started + BATCH_SECONDS - time.monotonic()) > 0:
                self._stopping.wait(left)  # a batch per few commits, not per commit: each batch costs statements
        if self._drain:
            self._read_to_end()
        self._save_position(force=True)
        self._save_groups(force=True)
        return None

    def _take_recounts(self, predecessor: LiveReader) -> None:
        """Keep the re-counts the previous config's reader still owed (the keys of reads whose transactions were
        not visible yet, `_unsettled`; those to count again, `_again`), for each check this reader counts as it
        did, on the same database: its own first count may have run before those transactions were visible, and
        a reload dropped them (the duplicate they made never shown)."""
        if predecessor._thread.is_alive():  # its stop timed out: it may be reading still, its re-counts are its own
            return
        databases = self.monitor.config.databases, predecessor.monitor.config.databases
        if databases[0].get(self.database) != databases[1].get(self.database):
            return
        before = {check.name: check for check in predecessor.checks}
        same = {check.name for check in self.checks if check.name in self.groups and before.get(check.name) == check}

        def kept(named: dict[str, Named]) -> dict[str, Named]:
            return {check: keys for check, keys in named.items() if check in same}

        if self._visibility is not None and predecessor._visibility is not None:
            self._visibility.keep(predecessor._visibility, same)
        for xids, named in predecessor._unsettled:
            if (mine := kept(named)) and len(self._unsettled) < UNSETTLED_READS:
                self._unsettled.append((set(xids), mine))
        for check, keys in kept(predecessor._again).items():
            merge(self._again, check, keys)
        if predecessor._again_due is not None and (due := kept(predecessor._again_due[1])):
            if self._again_due is None:
                self._again_due = (predecessor._again_due[0], due)
            else:
                for check, keys in due.items():
                    merge(self._again_due[1], check, keys)

    def _look_for_missing(self) -> None:
        """Every `MISSING_SECONDS`, whether the table of a check skipped at the last full count (`_missing`) is
        there again; then a gap (no change of it was followed meanwhile), and every check counted in full."""
        if not self._missing or time.monotonic() - self._missing_looked < MISSING_SECONDS:
            return
        self._missing_looked = time.monotonic()
        back = []
        with self.monitor.database(self.database).read_only() as conn:
            for check in self.checks:
                if check.name in self._missing:
                    try:
                        if _table_there(conn, self.monitor.resolve(check, conn).table):
                            back.append(check.name)
                    except CheckError as exc:
                        if isinstance(exc, CheckDefinitionError) and not _table_absent(exc):  # its table is there,
                            back.append(check.name)  # the check fails otherwise: logged at the full count, once
        if not back:
            return
        self.sink.live_gap(self.database, f"database {self.database}: live stream: the table of check "
                           f"{', '.join(back)} is there again, and no change of it was followed while it was not: "
                           "every check counted in full")
        self._count_all(count_new=True)
        self.sink.live_following(self.database, True)

    def _count_unnamed(self, done: list[Transaction]) -> None:
        """Where `done` holds rows the stream does not name (`Transaction.unnamed`), report a gap and count every
        check in full: the groups those rows formed are counted as new."""
        reason = next((t.unnamed for t in done if t.unnamed), None)
        if reason is None:
            return
        self.sink.live_gap(self.database, f"database {self.database}: live stream: {reason}")
        self._count_all(count_new=True)
        self.sink.live_following(self.database, True)

    def _read_to_end(self) -> None:
        """Read and count until a read finds nothing more (then `_drained`), for at most `DRAIN_SECONDS`."""
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            while time.monotonic() < deadline:
                if not self._read_and_apply():
                    self._drained = True
                    return
        except (StreamLost, sa.exc.SQLAlchemyError, *CheckError) as exc:
            log.warning("the previous config's live reader could not read to the end of its stream", extra={
                "fields": {"database": self.database, "error": self._describe(exc)}})

    # -- the position, across restarts -------------------------------------------------------------

    def _saved_position(self) -> str | None:
        """The position a reader of this database saved before (another process, maybe), or None."""
        state = self.monitor.state
        if state is None:
            return None
        try:
            saved = state.live_position(self.monitor.place(self.database))
        except (sa.exc.SQLAlchemyError, *CheckError):
            return None  # the server does not answer: the stream will not open either, and retries
        return saved[0] if saved is not None else None

    def _save_position(self, *, force: bool = False) -> None:
        """Save the stream's position (its changes are counted) unless it is saved already, or was less than
        `SAVE_SECONDS` ago (`force`: now). While rows are pending (`RowVisibility.resume`), the position before the
        oldest one's transaction: a reader started later reads it again, and counts its rows once visible."""
        state, position = self.monitor.state, self.stream.position
        last, when = self._saved
        now = time.monotonic()
        if state is None or position is None or (not force and now - when < SAVE_SECONDS):
            return
        if self._visibility is not None and (pending := self._visibility.resume()) is not None:
            position = pending
        if position == last:
            return
        state.save_live_position(self.monitor.place(self.database), position)
        self._saved = (position, now)

    # -- the known groups, across restarts ----------------------------------------------------------

    def _saved_groups(self, check: CheckConfig, groups: LiveGroups) -> set[str] | None:
        """The identities of the groups a reader saved for this check (its subject: the database as the server
        identifies itself, and what the check measures) before this one started, or None: none saved (the first
        run), or saved under another comparison (`LiveGroups.fingerprint`)."""
        state = self.monitor.state
        if state is None:
            return None
        try:  # counting: the server answers, so it is asked what it is (not the fallback of a failed ask)
            saved = state.live_groups(self.monitor.subject(check, answering=True))
        except sqlite3.Error as exc:
            log.warning("the duplicate groups saved before cannot be read: the groups counted now are the baseline",
                        extra={"fields": {"check": check.name, "database": self.database, "error": str(exc)}})
            return None
        return saved[1] if saved is not None and saved[0] == groups.fingerprint else None

    def _save_groups(self, *, force: bool = False) -> None:
        """Save what changed in each check's known groups (the daemon's readers), at most every `SAVE_SECONDS`
        unless `force`."""
        state = self.monitor.state
        now = time.monotonic()
        if not self._saves or state is None or (not force and now - self._groups_saved_at < SAVE_SECONDS):
            return
        self._groups_saved_at = now
        for name, groups in self.groups.items():
            subject = self.monitor.subject(groups.resolved.check)
            if self._subjects.get(name, subject) != subject:  # changes of the set saved under another subject
                groups.resave()
            changes = groups.saved_changes()
            if changes is None:
                continue
            present, gone, replace = changes
            try:
                saver = (self.owner, self.database, name) if self.owner is not None else None
                if state.save_live_groups(subject, groups.fingerprint, present, gone, replace=replace, saver=saver):
                    self._subjects[name] = subject
                else:
                    groups.resave()  # the set stored is not the one these changes change: all of them next time
            except (sqlite3.Error, sa.exc.SQLAlchemyError, *CheckError) as exc:
                groups.resave()  # all of them next time
                log.warning("the duplicate groups of live mode could not be saved", extra={"fields": {
                    "check": name, "database": self.database, "error": str(exc)}})

    def _describe(self, exc: BaseException) -> str:
        """One line, without the statement's values (`Database.describe`)."""
        if isinstance(exc, sa.exc.SQLAlchemyError):
            return self.monitor.database(self.database).describe(exc)
        return str(exc)

    # -- counting ---------------------------------------------------------------------------------

    def _leave(self, check: str) -> None:
        """`check` is left to its poll by this full count: where the stream counted it until now, its groups are
        dropped and the sink told (`live_left`), so that its runs' figures count again (a check that stopped being
        followed after a gap, `ALTER TABLE ... SET UNLOGGED`, kept the stream's last figures while the stream was
        followed: its duplicates were missed until the stream was opened again)."""
        if self.groups.pop(check, None) is not None:
            self.sink.live_left(self.database, check)

    def _leave_to_poll(self, check: str, message: str) -> None:
        """`check` is left to its poll (`_leave`), said once per reader, not again after each gap."""
        self._leave(check)
        if check not in self._unindexed:
            self._unindexed.add(check)
            log.error(message, extra={"fields": {"check": check, "database": self.database}})

    def _to_poll(self, check: str, why: str) -> str:
        return f"database {self.database}: live = true leaves check {check} to its poll: {why}"

    def _unstreamed_reads(self, conn: Connection, reads: set[tuple[str, str]]) -> str | None:
        """Why the stream shows not all changes of a table a check's `where` reads (`ChangeStream.unstreamed`),
        or None."""
        for schema, name in sorted(reads):
            if (why := self.stream.unstreamed(conn, sa.Table(name, sa.MetaData(), schema=schema))) is not None:
                return f"a table its where reads, {schema}.{name}: {why}"
        return None

    def _count_all(self, *, count_new: bool) -> None:
        """Resolve the checks and count each in full (after a gap, groups unknown before are new)."""
        db = self.monitor.database(self.database)
        self._tables.clear()
        self._cascades.clear()
        identities: dict[tuple[str, str], tuple[str, ...]] = {}  # the columns identifying a watched table's rows
        if self._visibility is not None:
            self._visibility.tables.clear()
        followed: list[tuple[CheckConfig, TableCheck, LiveGroups, tuple[str, str], set[tuple[str, str]]]] = []
        self._missing = set()
        self._missing_looked = time.monotonic()
        with db.read_only() as conn:
            for check in self.checks:
                try:
                    resolved = self.monitor.resolve(check, conn)
                except CheckError as exc:
                    log.error("live mode skips a check that does not resolve", extra={"fields": {
                        "check": check.name, "database": self.database, "error": str(exc)}})
                    # Looked for again only where its table is not there: another failure (a refused or unknown
                    # `where`, an unknown column) would be resolved, and its `where` vetted, every
                    # `MISSING_SECONDS` for ever; it is resolved again at the next full count.
                    if _table_absent(exc):
                        self._missing.add(check.name)
                    continue
                if not _table_there(conn, resolved.table):  # resolved from what was reflected before
                    log.error("live mode skips a check whose table is not there now (renamed, moved or dropped): "
                              "it is looked for again, and counted in full once it is there", extra={"fields": {
                                  "check": check.name, "database": self.database, "table": resolved.table.name}})
                    self._missing.add(check.name)
                    continue
                if (unmatched := resolved.keys_not_found_by_equality()) is not None:
                    self._leave_to_poll(check.name, self._to_poll(check.name, unmatched))
                    continue
                if not resolved.rules.served_by_index(conn, resolved.table, list(resolved.key_exprs)):
                    self._leave_to_poll(check.name, unindexed(self.database, check.name, resolved))
                    continue
                if (unstreamed := self.stream.unstreamed(conn, resolved.table)) is not None:
                    # Followed, its duplicates would be missed without a gap: none of its rows' changes is streamed.
                    self._leave_to_poll(check.name, self._to_poll(check.name, unstreamed))
                    continue
                # The tables its `where` reads, asked (as the check's own) before any check is counted: one without a
                # replica identity makes the stream read a plugin that prints its DELETEs (wal2json prints none: a
                # row let back in made a duplicate never counted), and one whose changes are not streamed at all
                # (UNLOGGED) leaves the check to its poll.
                reads = self.stream.where_tables(conn, resolved.table, list(resolved.filters))
                if (unseen := self._unstreamed_reads(conn, reads)) is not None:
                    self._leave_to_poll(check.name, self._to_poll(check.name, unseen))
                    continue
                groups = self.groups.get(check.name) or LiveGroups(resolved, typed_values=self.stream.typed_values)
                self.groups[check.name] = groups
                # Every table is named before any check is counted: naming one may make the stream start again
                # (PostgreSQL: another output plugin), and a check counted before that would miss what committed
                # between its count and the new start.
                followed.append((check, resolved, groups, self.stream.table_name(conn, resolved.table), reads))
                for schema, name in sorted(reads):
                    # Named as the checks' tables are, for their shape (PostgreSQL): a REFRESH MATERIALIZED VIEW (not
                    # CONCURRENTLY) of a view the `where` reads fills a new storage whose rows no change names, as
                    # ATTACH PARTITION brings rows in unnamed: a gap, not a row let back in without a count.
                    self.stream.table_name(conn, sa.Table(name, sa.MetaData(), schema=schema))
            for check, resolved, groups, table, reads in followed:
                self._tables.setdefault(table, []).append(check.name)
                if self._visibility is not None:
                    identities[table] = self._visibility.identify(table, resolved.table)
                for parent, effect in ancestors(self.stream, conn, table, frozenset(groups.key_names),
                                                bool(check.where)).items():
                    self._cascades.setdefault(parent, {})[check.name] = effect
                for other in reads:
                    if other != table:
                        self._cascades.setdefault(other, {})[check.name] = READ_BY_WHERE
                first = check.name not in self._counted_once
                saved = self._saved_groups(check, groups) if first and self.remember else None
                new = groups.resync(conn, saved)
                self._counted_once.add(check.name)
                if first and self.remember and saved is None:
                    log.info("no duplicate groups saved by an earlier run of live mode for this check: the groups "
                             "counted now are the baseline, none counted as new", extra={"fields": {
                                 "check": check.name, "database": self.database, "groups": len(groups.known)}})
                # Counted before by an attempt that failed on another check (the stream never followed): the groups
                # formed since that count are new (its runs' are not counted while the stream counts the check).
                counted_new = (new if saved is not None else 0) if first else \
                    (new if count_new or not self._followed_once else 0)
                groups_now, excess = groups.figures
                self.sink.live_figures(check.name, self.database, Figures(
                    groups_now, excess, counted_new, baseline=first and self.remember and saved is None,
                    compared=first and saved is not None))
        columns: dict[tuple[str, str], frozenset[str]] = {}
        for table, names in self._tables.items():
            columns[table] = frozenset(c for name in names for c in self.groups[name].key_names).union(
                identities.get(table, ()))
        for table, effects in self._cascades.items():  # an UPDATE of its referenced columns cascades
            columns[table] = columns.get(table, frozenset()).union(*(e.referenced for e in effects.values()))
        # A table a check's `where` reads: any UPDATE of it matters, whatever columns it changes (`READ_BY_WHERE`)
        read_by_where = {table for table, effects in self._cascades.items() if READ_BY_WHERE in effects.values()}
        self.stream.watch(columns, frozenset(table for table, names in self._tables.items()
                                             if any(self.groups[name].resolved.check.where for name in names))
                          | read_by_where)

    def _read_and_apply(self) -> list[Transaction]:
        """Read the stream, keeping of its changes only the keys each check's groups need (`_fold`), re-count
        them and count what it cannot name (`_count_unnamed`); what was read. Keys counted before their
        transactions were visible, or that the stream cannot tell of, are counted again (`_settled`)."""
        touched: dict[str, Named] = {}
        again: dict[str, Named] = {}  # what is counted again later (`recount_again`): what no row's visibility tells
        visibility = self._visibility

        def fold(change: Change) -> None:
            if change.operation == "COMMIT":  # `COMMITTED`: the changes folded next are of later transactions
                if visibility is not None:
                    visibility.committed()
                return
            self._fold(touched, change)
            if visibility is None:
                return
            table = (change.schema, change.table)
            for released in self._unnamed_rows(change):  # rows it may have changed unnamed: no longer asked about
                visibility.release(released)
            checks = [(check, self.groups[check].fold) for check in self._tables.get(table, ())]
            if visibility.fold(change, checks, self.stream.position):
                self._fold_cascades(again, change)
            else:
                self._fold(again, change)

        done = self.stream.read(fold)
        if visibility is not None:  # rows left unasked (see `RowVisibility.release`, `take_again`): counted later
            if any(t.unseen for t in done):  # a TRUNCATE (or DDL) of any table: its rows are not named
                visibility.release(None)
            for check, named in visibility.take_again().items():
                if check in self.groups:
                    merge(again, check, named)
        xids = {t.xid for t in done if t.xid is not None}
        waiting = self.stream.unsettled(xids) if xids else set()  # asked before counting: counted after, it is seen
        read = {check: _copy(named) for check, named in touched.items()} if waiting else again
        for check, named in self._settled().items():
            if check in self.groups:
                merge(touched, check, named)
        self._apply(done, touched)
        if waiting:
            if len(self._unsettled) < UNSETTLED_READS and _keys(read) + sum(
                    _keys(named) for _xids, named in self._unsettled) <= KEYS_PER_READ:
                self._unsettled.append((set(waiting), read))
            else:  # bounded memory: the newest bucket waits for this read's transactions too
                newest_xids, kept = self._unsettled[-1]
                for check, named in read.items():
                    merge(kept, check, named)
                self._unsettled[-1] = (newest_xids | waiting, kept)
        elif self._again_every and read:
            for check, named in read.items():
                merge(self._again, check, named)
        self._count_unnamed(done)
        return done

    def _settled(self) -> dict[str, Named]:
        """The keys to count again now: those of each read whose transactions were not visible yet (`ChangeStream.
        unsettled`) once all of that read's are (one question for every read waiting); and, for a stream that
        cannot tell (`ChangeStream.recount_again`), those read between `recount_again` and twice that many seconds
        ago."""
        settled: dict[str, Named] = {}
        if self._unsettled:
            still = self.stream.unsettled(set().union(*(xids for xids, _named in self._unsettled)))
            waiting = []
            for xids, named in self._unsettled:
                if xids & still:
                    waiting.append((xids & still, named))
                else:
                    for check, keys in named.items():
                        merge(settled, check, keys)
            self._unsettled = waiting
        if self._again_every:
            now = time.monotonic()
            if self._again_due is not None and now >= self._again_due[0]:
                for check, keys in self._again_due[1].items():
                    merge(settled, check, keys)
                self._again_due = None
            if self._again_due is None and self._again:
                self._again_due, self._again = (now + self._again_every, self._again), {}
        return settled

    def _unnamed_rows(self, change: Change) -> list[tuple[str, str]]:
        """The checks' tables whose rows `change` may change without the stream naming them: its own where the
        stream dropped its changes (`overflowed`), those its foreign keys' actions reach (`cascades`)."""
        table = (change.schema, change.table)
        if change.operation == "OVERFLOW":
            return [table]
        reached = {check for check, effect in self._cascades.get(table, {}).items() if effect.of(change) != NOTHING}
        return [name for name, checks in self._tables.items() if reached.intersection(checks)] if reached else []

    def _report_late(self, late: list[tuple[tuple[str, str], int]]) -> None:
        """Rows logged and not visible after `VISIBLE_SECONDS`, or not remembered (`RowVisibility.settle`): a gap,
        reported like any other; the stream is still followed (their keys are counted if they become visible)."""
        tables = ", ".join(f"{schema}.{table} ({rows} row{'s' if rows != 1 else ''})" for (schema, table), rows in late)
        self.sink.live_gap(self.database, f"database {self.database}: live stream: rows logged in the binary log "
                           f"are not visible after {VISIBLE_SECONDS:g} s, or too many were waiting to be: {tables}; "
                           f"left to the poll (each is counted too if it becomes visible within {GIVE_UP_SECONDS:g} "
                           "s)")
        self.sink.live_following(self.database, True)

    def _fold(self, touched: dict[str, Named], change: Change) -> None:
        """Hand `change` to the groups of each check of its table, and what it cascades to (`cascades`)."""
        table = (change.schema, change.table)
        for check in self._tables.get(table, ()):
            self.groups[check].fold(touched.setdefault(check, Named()), change)
        self._fold_cascades(touched, change)

    def _fold_cascades(self, touched: dict[str, Named], change: Change) -> None:
        """Hand `change` to the groups of the checks it cascades to (`cascades`)."""
        table = (change.schema, change.table)
        for check, effect in self._cascades.get(table, {}).items():
            if (what := effect.of(change)) != NOTHING:
                self.groups[check].fold(touched.setdefault(check, Named()),
                                        overflowed(*table) if what == FULL else UNSEEN)

    def _apply(self, done: list[Transaction], touched: dict[str, Named]) -> None:
        """Re-count what `done` named (`touched`: folded per check), and some groups still queued for a re-count
        (`LiveGroups.pending`)."""
        for name, groups in self.groups.items():
            if groups.pending:
                touched.setdefault(name, Named())
        for transaction in done:
            for change in transaction.changes:  # a stream that kept them
                self._fold(touched, change)
            if transaction.unseen:
                for check, groups in self.groups.items():
                    groups.fold(touched.setdefault(check, Named()), UNSEEN)
        changed: dict[str, Figures] = {}
        visibility = self._visibility
        asking = visibility is not None and visibility.asking
        late: list[tuple[tuple[str, str], int]] = []
        if touched or asking:
            db = self.monitor.database(self.database)
            with db.read_only() as conn:
                conn.execution_options(compiled_cache=self._compiled)
                if visibility is not None and asking:  # asked first, in the snapshot counted: a row seen is counted
                    for check, named in visibility.settle(conn).items():
                        if check in self.groups:
                            merge(touched, check, named)
                    late = visibility.late
                for check, named in touched.items():
                    if named.overflow:
                        log.info("one read of the change stream named more keys than live mode re-counts one by "
                                 "one, or a change whose keys it cannot name (a foreign key's action, an "
                                 "unchanged TOASTed key column): the check is counted in full", extra={"fields": {
                                     "database": self.database, "check": check, "changes": named.changes,
                                     "keys_per_read": KEYS_PER_READ}})
                        self.sink.live_overflow(self.database, check)
                    if (figures := self.groups[check].apply(conn, named)) is not None:
                        changed[check] = figures
        if done:
            # As Debezium's MilliSecondsBehindSource: from the last change's commit to its processing, held
            # until the next change (a quiet database is not a lagging stream).
            committed = [t.committed_at for t in done if t.committed_at is not None]
            lag = max((self.clock() - committed[-1]).total_seconds(), 0.0) if committed else None
            self.sink.live_events(self.database, sum(t.events for t in done), lag)
        for check, figures in changed.items():
            self.sink.live_figures(check, self.database, figures)
        if late:
            self._report_late(late)

def _table_absent(exc: BaseException) -> bool:
    """Whether a check failed to resolve because its table (or its schema) is not there (`_table_not_found`)."""
    return isinstance(exc, CheckDefinitionError) and exc.field == "table"


def _table_there(conn: sa.Connection, table: sa.Table) -> bool:
    """Whether `table` (a table or a view: SQLAlchemy's `has_table` finds both) is there now under its name."""
    return bool(sa.inspect(conn).has_table(table.name, schema=table.schema))


def unindexed(database: str, check: str, resolved: TableCheck) -> str:
    """Why live mode leaves `check` to its poll, and the statement creating the index it needs: one line."""
    table, exprs = resolved.table, list(resolved.key_exprs)
    names = [str(getattr(e, "name", "")) or expr_text(e).split("(")[-1].rstrip(")") for e in exprs]
    statement = resolved.rules.index_statement(table, exprs, f"{table.name}_{'_'.join(names)}_dw_key"[:60])
    return (f"database {database}: live = true leaves check {check} to its poll: no index serves its key, so "
            f"re-counting the keys each change names would read the whole table; create one ({statement}) and "
            "reload")


def wait_following(readers: list[LiveReader], timeout: float) -> bool:
    """For callers that must not race the first full count (tests, a one-shot run)."""
    deadline = time.monotonic() + timeout
    return all(reader.following.wait(max(deadline - time.monotonic(), 0)) for reader in readers)


def _copy(named: Named) -> Named:
    return Named(set(named.present), set(named.left), named.unknown_old, named.overflow)


def _keys(named: dict[str, Named]) -> int:
    return sum(len(keys.present) + len(keys.left) for keys in named.values())

