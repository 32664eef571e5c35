"""One thread per live database: read its change stream, re-count the groups the changes name, report.

The reader opens the stream first and counts every watched check in full second, so that nothing committed
between the two is missed (a change seen twice only re-counts a group twice). Then it reads the stream every
`poll_seconds` (at once again while changes keep coming) and re-counts, through the detection connections,
the groups the changes name. A broken stream (connection lost, slot gone, a re-count that failed after its
changes were consumed) is a **gap**: reported to the sink at once (metric, log, a poll of the database's
checks), then the stream is opened again and every check counted in full, the groups that appeared
meanwhile counted as new. A refusal (`LiveRefused`) is logged once and ends the reader; polling goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from monitor.config import CheckConfig
from monitor.engine import CheckError, Monitor
from monitor.live.changes import UNSEEN, Change, ChangeStream, LiveRefused, StreamLost, Transaction
from monitor.live.groups import Figures, LiveGroups

log = logging.getLogger("dupewatch.live")

POLL_SECONDS = 0.2
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between attempts to open a stream again


class LiveSink(Protocol):
    """Where a reader reports (the daemon's metrics exporter and its poller)."""

    def live_figures(self, check: str, database: str, figures: Figures) -> None: ...

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None: ...

    def live_gap(self, database: str, reason: str) -> None: ...

    def live_following(self, database: str, following: bool) -> None: ...


class LiveReader:
    """Follows one database's change stream for its table checks; `start()`, `stop()`."""

    def __init__(self, monitor: Monitor, database: str, checks: list[CheckConfig], stream: ChangeStream,
                 sink: LiveSink, *, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone()) -> None:
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
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"live-{database}", daemon=True)
        self.following = threading.Event()  # set once the stream is open and every check counted

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self.stream.close()

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        gap_pending = False
        while not self._stopping.is_set():
            try:
                self.stream.open()
                self._count_all(count_new=gap_pending)
            except LiveRefused as exc:
                self.refused = str(exc)
                log.error(str(exc), extra={"fields": {"database": self.database}})
                return
            except (StreamLost, sa.exc.SQLAlchemyError, *CheckError) as exc:
                self.stream.close()
                if not gap_pending:  # never opened yet: not a gap, nothing was being followed
                    log.warning("live stream not open, retrying", extra={"fields": {
                        "database": self.database, "error": self._describe(exc)}})
                self._stopping.wait(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            except Exception:  # a bug must not end live mode silently: logged, then retried like a failure
                log.exception("live reader failed to open", extra={"fields": {"database": self.database}})
                self.stream.close()
                self._stopping.wait(RETRY_SECONDS[-1])
                continue
            attempt = 0
            log.info("live stream open again, every check counted in full" if gap_pending else
                     "following the change stream", extra={"fields": {"database": self.database}})
            self.following.set()
            self.sink.live_following(self.database, True)
            reason = self._follow()
            self.following.clear()
            if reason is None:
                self.sink.live_following(self.database, False)
                return
            gap_pending = True
            self.sink.live_gap(self.database, reason)

    def _follow(self) -> str | None:
        """Read and apply changes until stopped (None) or the stream breaks (the reason, one line)."""
        while not self._stopping.is_set():
            try:
                done = self.stream.read()
                self._apply(done)
            except StreamLost as exc:
                self.stream.close()
                return str(exc)
            except (sa.exc.SQLAlchemyError, *CheckError) as exc:
                self.stream.close()  # its changes are consumed but not counted: a gap
                return f"database {self.database}: re-count failed: {self._describe(exc)}"
            except Exception as exc:  # a bug must not end live mode silently: logged, and a gap like any other
                log.exception("live reader failed", extra={"fields": {"database": self.database}})
                self.stream.close()
                return f"database {self.database}: live reader failed: {type(exc).__name__}"
            if not done:
                self._stopping.wait(self.poll_seconds)
        return None

    def _describe(self, exc: BaseException) -> str:
        """One line, without the statement's values (`Database.describe`)."""
        if isinstance(exc, sa.exc.SQLAlchemyError):
            return self.monitor.database(self.database).describe(exc)
        return str(exc)

    # -- counting ---------------------------------------------------------------------------------

    def _count_all(self, *, count_new: bool) -> None:
        """Resolve the checks and count each in full (after a gap, groups unknown before are new)."""
        db = self.monitor.database(self.database)
        self._tables.clear()
        with db.read_only() as conn:
            for check in self.checks:
                try:
                    resolved = self.monitor.resolve(check, conn)
                except CheckError as exc:
                    log.error("live mode skips a check that does not resolve", extra={"fields": {
                        "check": check.name, "database": self.database, "error": str(exc)}})
                    continue
                groups = self.groups.get(check.name) or LiveGroups(resolved, typed_values=self.stream.typed_values)
                self.groups[check.name] = groups
                self._tables.setdefault(self.stream.table_name(conn, resolved.table), []).append(check.name)
                new = groups.resync(conn)
                groups_now, excess = groups.figures
                self.sink.live_figures(check.name, self.database, Figures(groups_now, excess, new if count_new else 0))

    def _apply(self, done: list[Transaction]) -> None:
        """Re-count what `done` names, and some groups still queued for a re-count (`LiveGroups.pending`)."""
        touched: dict[str, list[Change]] = {name: [] for name, groups in self.groups.items() if groups.pending}
        for transaction in done:
            for change in transaction.changes:
                for check in self._tables.get((change.schema, change.table), ()):
                    touched.setdefault(check, []).append(change)
            if transaction.unseen:
                for check in self.groups:
                    touched.setdefault(check, []).append(UNSEEN)
        changed: dict[str, Figures] = {}
        if touched:
            db = self.monitor.database(self.database)
            with db.read_only() as conn:
                for check, changes in touched.items():
                    if (figures := self.groups[check].apply(conn, changes)) is not None:
                        changed[check] = figures
        if done:
            # As Debezium's MilliSecondsBehindSource: from the last change's commit to its processing, held
            # until the next change (a quiet database is not a lagging stream).
            committed = [t.committed_at for t in done if t.committed_at is not None]
            lag = max((self.clock() - committed[-1]).total_seconds(), 0.0) if committed else None
            self.sink.live_events(self.database, sum(len(t.changes) for t in done), lag)
        for check, figures in changed.items():
            self.sink.live_figures(check, self.database, figures)

def wait_following(readers: list[LiveReader], timeout: float) -> bool:
    """For callers that must not race the first full count (tests, a one-shot run)."""
    deadline = time.monotonic() + timeout
    return all(reader.following.wait(max(deadline - time.monotonic(), 0)) for reader in readers)
