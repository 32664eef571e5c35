"""A live reader before its stream is first followed, with a scripted stream over a SQLite table (fast: no server):
the daemon holds its runs' new groups until then (`MetricsExporter.live_starting`), so a reader that never gets
there must say so, and a first count that failed half-way must not lose the groups formed before the next one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import monitor.live.reader as reader_module
from dbtest import metric_samples
from monitor.config import config_from_dict
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.live import Figures, LiveReader, StreamLost
from monitor.live.changes import Change, LiveRefused, Transaction
from monitor.live.groups import LiveGroups
from monitor.metrics import MetricsExporter

pytestmark = pytest.mark.timeout(60)


class Scripted:
    """A `ChangeStream` with no changes whose `open` and `table_name` run the test's hooks."""

    typed_values = True
    recount_again = 0.0

    def __init__(self, on_open: Callable[[int], None] = lambda attempt: None,
                 on_table: Callable[[int, str], None] = lambda attempt, table: None) -> None:
        self.position: str | None = None
        self.opened = 0
        self.closed = threading.Event()
        self.on_open, self.on_table = on_open, on_table

    def open(self, resume: str | None = None) -> str | None:
        self.opened += 1
        self.closed.clear()
        self.on_open(self.opened)
        self.position = str(self.opened)
        return None

    def read(self, fold: Any = None) -> list[Any]:
        return []

    def watch(self, columns: Any, filtered: Any) -> None:
        pass

    def wait(self, timeout: float) -> None:
        self.closed.wait(timeout)

    def close(self) -> None:
        self.closed.set()

    def table_name(self, conn: Any, table: sa.Table) -> tuple[str, str]:
        self.on_table(self.opened, table.name)
        return ("main", table.name)

    def unlogged_cascades(self, conn: Any, table: Any) -> list[Any]:
        return []

    def unstreamed(self, conn: Any, table: Any) -> str | None:
        return None

    def where_tables(self, conn: Any, table: Any, filters: Any) -> set[Any]:
        return set()


class Sink:
    def __init__(self) -> None:
        self.figures: list[tuple[str, Figures]] = []
        self.following: list[bool] = []

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        self.figures.append((check, figures))

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        pass

    def live_gap(self, database: str, reason: str) -> None:
        pass

    def live_following(self, database: str, following: bool) -> None:
        self.following.append(following)

    def live_overflow(self, database: str, check: str) -> None:
        pass

    def live_left(self, database: str, check: str) -> None:
        pass


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    path = tmp_path / "app.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE a (id integer PRIMARY KEY, k text NOT NULL)"))
        conn.execute(sa.text("CREATE INDEX a_k ON a (k)"))
        conn.execute(sa.text("CREATE TABLE b (id integer PRIMARY KEY, j text NOT NULL)"))
        conn.execute(sa.text("CREATE INDEX b_j ON b (j)"))
        conn.execute(sa.text("INSERT INTO a (id, k) VALUES (1, 'x'), (2, 'x')"))
    engine.dispose()
    made = Monitor(config_from_dict({"databases": {"d": {"url": f"sqlite:///{path}"}}, "checks": [
        {"name": "on_a", "database": "d", "table": "a", "key": ["k"]},
        {"name": "on_b", "database": "d", "table": "b", "key": ["j"]}]}))
    try:
        yield made
    finally:
        made.close()


def await_true(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling interval of a condition wait


def test_a_stream_that_never_opens_says_it_is_not_following_so_the_held_groups_are_counted(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "RETRY_SECONDS", (0.05,))

    def refuse(attempt: int) -> None:
        raise StreamLost("all replication slots are in use")

    sink = Sink()
    reader = LiveReader(monitor, "d", list(monitor.config.checks), Scripted(on_open=refuse), sink)
    reader.start()
    try:
        await_true(lambda: reader.stream.opened >= 3, "three attempts")  # type: ignore[attr-defined]
        assert sink.following == [False]  # said once, at the first failed attempt
    finally:
        reader.stop()
    assert sink.following == [False]


def test_the_runs_new_groups_of_a_database_whose_stream_never_opens_are_counted(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's exporter as the sink: the runs' new groups were held for as long as the reader retried (the
    counter flat, the alert silent, while the poll kept finding groups)."""
    monkeypatch.setattr(reader_module, "RETRY_SECONDS", (0.05,))

    def refuse(attempt: int) -> None:
        raise StreamLost("all replication slots are in use")

    exporter = MetricsExporter(monitor.config, process_metrics=False)
    reader = LiveReader(monitor, "d", list(monitor.config.checks), Scripted(on_open=refuse), exporter)
    try:
        exporter.live_starting({"d": ["on_a", "on_b"]})
        exporter.observe(CheckResult("on_a", "d", "duplicates", 1, 1, 9.0, mode="incremental", rows_scanned=2,
                                     new_groups=1))
        reader.start()
        await_true(lambda: reader.stream.opened >= 2, "two attempts")  # type: ignore[attr-defined]
        for _ in range(49):
            exporter.observe(CheckResult("on_a", "d", "duplicates", 1, 1, 9.0, mode="incremental",
                                         rows_scanned=2, new_groups=1))
        assert metric_samples(exporter)[("dupewatch_new_duplicate_groups_total", "on_a")] == 50
    finally:
        reader.stop()
        exporter.close()


def test_a_reader_stopped_before_its_stream_opened_says_it_is_not_following(monitor: Monitor) -> None:
    hang = threading.Event()
    opening = threading.Event()

    def stuck(attempt: int) -> None:  # a first open that does not return in time (a stop during it)
        opening.set()
        hang.wait(10)
        raise StreamLost("closed")

    sink = Sink()
    reader = LiveReader(monitor, "d", list(monitor.config.checks), Scripted(on_open=stuck), sink)
    reader.start()
    try:
        assert opening.wait(10)
        reader.stop(timeout=0.05)
        assert sink.following == [False]
    finally:
        hang.set()
    reader._thread.join(10)
    assert sink.following == [False]  # once


def test_groups_formed_between_two_first_count_attempts_are_counted_new(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempt 1 counts check on_a, then fails on on_b; a group of on_a forms before attempt 2, which counts it new
    (on_a's runs' new groups are not counted while the stream counts it)."""
    monkeypatch.setattr(reader_module, "RETRY_SECONDS", (0.05,))
    writer = sa.create_engine(monitor.database("d").url)
    attempts: list[int] = []

    def on_open(attempt: int) -> None:
        attempts.append(attempt)
        if attempt == 2:
            with writer.begin() as conn:
                conn.execute(sa.text("INSERT INTO a (id, k) VALUES (3, 'y'), (4, 'y')"))

    resync = LiveGroups.resync

    def failing(groups: LiveGroups, *args: Any) -> int:  # every table is named first, then each check counted
        if attempts == [1] and groups.resolved.table.name == "b":
            raise StreamLost("lost during the first count")
        return resync(groups, *args)

    monkeypatch.setattr(LiveGroups, "resync", failing)
    sink = Sink()
    reader = LiveReader(monitor, "d", list(monitor.config.checks), Scripted(on_open), sink)
    reader.start()
    try:
        assert reader.following.wait(10)
    finally:
        reader.stop()
        writer.dispose()
    counts = [(figures.groups, figures.new_groups) for check, figures in sink.figures if check == "on_a"]
    assert counts == [(1, 0), (2, 1)]
    assert sink.following[:2] == [False, True]  # released at the failed attempt, then followed


def test_every_table_is_named_before_any_check_is_counted(monitor: Monitor) -> None:
    """Naming a table may start the stream again (PostgreSQL: a table without a replica identity, which wal2json
    does not print, makes it read a slot of test_decoding from then on): what committed before that is counted by
    every check, also one whose table was named before. Here check on_a was counted before on_b's table was named,
    and the group formed meanwhile (a commit the new stream does not show) was never counted."""
    writer = sa.create_engine(monitor.database("d").url)

    def on_table(attempt: int, table: str) -> None:  # the stream starts again here: what committed before is gone
        if table == "b":
            with writer.begin() as conn:
                conn.execute(sa.text("INSERT INTO a (id, k) VALUES (3, 'y'), (4, 'y')"))

    sink = Sink()
    reader = LiveReader(monitor, "d", list(monitor.config.checks), Scripted(on_table=on_table), sink)
    reader.start()
    try:
        assert reader.following.wait(10)
        assert reader.groups["on_a"].figures == (2, 2)
    finally:
        reader.stop()
        writer.dispose()


class Visible(Scripted):
    """A stream that names an insert into `a` per read, with its transaction's id, and tells which ids are not
    visible yet (`invisible`, as PostgreSQL's `ChangeStream.unsettled` does for a commit awaiting its standby)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[tuple[str, int, str]]] = []  # per read: (xid, id, k) of each insert
        self.invisible: set[str] = set()

    def read(self, fold: Any = None) -> list[Any]:
        done = []
        for xid, id_, k in self.reads.pop(0) if self.reads else []:
            fold(Change("main", "a", "INSERT", new={"id": id_, "k": k}))
            done.append(Transaction(folded=1, xid=xid))
        return done

    def unsettled(self, xids: set[str]) -> set[str]:
        return xids & self.invisible


@contextmanager
def _two_reads_not_yet_visible(monitor: Monitor) -> Iterator[tuple[Visible, LiveReader, sa.Engine, Any]]:
    """A reader of `on_a` (one group counted) that has read two transactions, 1 (key y) then 2 (key z), and
    re-counted each before its commit was visible; and a writer to make their rows appear."""
    stream = Visible()
    reader = LiveReader(monitor, "d", list(monitor.config.checks), stream, Sink())
    writer = sa.create_engine(monitor.database("d").url)
    try:
        stream.open()
        reader._count_all(count_new=False)
        groups = reader.groups["on_a"]
        assert groups.figures == (1, 1)
        stream.invisible = {"1", "2"}
        stream.reads = [[("1", 3, "y")], [("2", 5, "z")]]
        reader._read_and_apply()
        reader._read_and_apply()
        yield stream, reader, writer, groups
    finally:
        writer.dispose()
        stream.close()


def test_a_reads_keys_are_counted_again_once_its_own_transactions_are_visible_though_a_later_reads_are_not(
        monitor: Monitor) -> None:
    """Issue 19: the keys of every read whose transactions were not visible yet waited in one bucket, released only
    once all of them were; under steady writes and a standby slower than the reads it never emptied, and a
    duplicate whose first re-count ran before its commit was visible was never counted."""
    with _two_reads_not_yet_visible(monitor) as (stream, reader, writer, groups):
        with writer.begin() as conn:  # transaction 1 visible now, 2 not yet
            conn.execute(sa.text("INSERT INTO a (id, k) VALUES (3, 'y'), (4, 'y')"))
        stream.invisible = {"2"}
        reader._read_and_apply()
        assert groups.figures == (2, 2)  # y counted again, though z's transaction is not visible
        with writer.begin() as conn:
            conn.execute(sa.text("INSERT INTO a (id, k) VALUES (5, 'z'), (6, 'z')"))
        stream.invisible = set()
        reader._read_and_apply()
        assert groups.figures == (3, 3)
        assert reader._unsettled == []


def test_a_reload_keeps_the_recounts_its_previous_reader_owed_for_the_checks_still_followed(monitor: Monitor) -> None:
    """The previous config's reader read an insert whose transaction was not visible yet and then handed over:
    the new reader's first count ran before it was visible too, and the re-count it was owed went with the
    previous reader (the duplicate never shown)."""
    first = Visible()
    previous = LiveReader(monitor, "d", list(monitor.config.checks), first, Sink(), poll_seconds=0.01)
    second = Visible()
    second.invisible = first.invisible = {"1"}  # one server: one answer
    writer = sa.create_engine(monitor.database("d").url)
    reader = None
    try:
        previous.start()
        assert previous.following.wait(10)
        first.reads.append([("1", 3, "y")])
        await_true(lambda: bool(previous._unsettled), "the insert read before its transaction was visible")
        reader = LiveReader(monitor, "d", list(monitor.config.checks), second, Sink(), poll_seconds=0.01,
                            predecessor=previous)
        reader.start()
        assert reader.took_over.wait(20) and reader.following.wait(10)
        groups = reader.groups["on_a"]
        assert groups.figures == (1, 1)
        with writer.begin() as conn:  # visible now
            conn.execute(sa.text("INSERT INTO a (id, k) VALUES (3, 'y'), (4, 'y')"))
        first.invisible.clear()
        await_true(lambda: groups.figures == (2, 2), "the key the previous reader owed counted again")
    finally:
        writer.dispose()
        previous.stop()
        if reader is not None:
            reader.stop()


def test_past_the_bound_of_waiting_reads_a_read_joins_the_newest_and_is_counted_once_all_are_visible(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "UNSETTLED_READS", 1)
    with _two_reads_not_yet_visible(monitor) as (stream, reader, writer, groups):
        assert [xids for xids, _named in reader._unsettled] == [{"1", "2"}]  # bounded: one bucket
        with writer.begin() as conn:
            conn.execute(sa.text("INSERT INTO a (id, k) VALUES (3, 'y'), (4, 'y'), (5, 'z'), (6, 'z')"))
        stream.invisible = {"2"}
        reader._read_and_apply()
        assert groups.figures == (1, 1)  # waits for the newest read's transaction too
        stream.invisible = set()
        reader._read_and_apply()
        assert groups.figures == (3, 3) and reader._unsettled == []


class Counting(Scripted):
    """A `Scripted` stream that counts its reads (each one turn of the reader's loop)."""

    def __init__(self, on_table: Callable[[int, str], None] = lambda attempt, table: None) -> None:
        super().__init__(on_table=on_table)
        self.reads = 0

    def read(self, fold: Any = None) -> list[Any]:
        self.reads += 1
        return []


class GapSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.gaps: list[str] = []

    def live_gap(self, database: str, reason: str) -> None:
        self.gaps.append(reason)


def _monitor_with(monitor: Monitor, check: dict[str, Any]) -> Monitor:
    return Monitor(config_from_dict({"databases": {"d": {"url": str(monitor.database("d").url)}}, "checks": [
        {"name": "on_a", "database": "d", "table": "a", "key": ["k"]}, check]}))


def test_a_check_whose_where_fails_is_resolved_once_not_looked_for_again_every_turn(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the missing-table look-up: every check that failed to resolve was looked for again every
    `MISSING_SECONDS` for ever (a refused or failing `where` vetted again each time: on PostgreSQL a server dump
    per call), not only one whose table is away."""
    monkeypatch.setattr(reader_module, "MISSING_SECONDS", 0.0)  # a look at every turn of the loop
    made = _monitor_with(monitor, {"name": "bad", "database": "d", "table": "b", "key": ["j"], "where": "nosuch = 1"})
    resolved: list[str] = []
    resolve = made.resolve

    def counted(check: Any, conn: Any = None) -> Any:
        resolved.append(check if isinstance(check, str) else check.name)
        return resolve(check, conn)

    monkeypatch.setattr(made, "resolve", counted)
    stream = Counting()
    reader = LiveReader(made, "d", list(made.config.checks), stream, Sink(), poll_seconds=0.01)
    reader.start()
    try:
        assert reader.following.wait(10)
        await_true(lambda: stream.reads >= 5, "five turns of the reader's loop")
        assert resolved.count("bad") == 1
        assert "bad" not in reader.groups and reader.groups["on_a"].figures == (1, 1)  # the other followed
    finally:
        reader.stop()
        made.close()


def test_a_refusal_when_a_missing_table_is_back_stops_the_reader_visibly(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the missing-table look-up: an error it did not expect (here `LiveRefused`, as PostgreSQL's
    `_print_unidentified` raises when it cannot create the slot of test_decoding) ended the reader's thread with a
    traceback, live mode of the database stopped and nothing said so (no gap, no refusal, still `following`)."""
    monkeypatch.setattr(reader_module, "MISSING_SECONDS", 0.0)
    made = _monitor_with(monitor, {"name": "on_c", "database": "d", "table": "c", "key": ["k"]})

    def on_table(attempt: int, table: str) -> None:
        if table == "c":
            raise LiveRefused("database d: cannot read the table's changes")

    stream = Counting(on_table=on_table)
    sink = GapSink()
    reader = LiveReader(made, "d", list(made.config.checks), stream, sink, poll_seconds=0.01)
    writer = sa.create_engine(made.database("d").url)
    reader.start()
    try:
        assert reader.following.wait(10)
        assert reader._missing == {"on_c"}
        with writer.begin() as conn:  # SQLite commits each DDL statement: indexed first, then given its name,
            conn.execute(sa.text("CREATE TABLE c_new (id integer PRIMARY KEY, k text NOT NULL)"))  # else a look
            conn.execute(sa.text("CREATE INDEX c_k ON c_new (k)"))  # between the two finds it unindexed and
            conn.execute(sa.text("ALTER TABLE c_new RENAME TO c"))  # leaves it to the poll (no refusal)
        await_true(lambda: reader.refused is not None, "the refusal said")
        assert any("LiveRefused" in gap for gap in sink.gaps)
        assert sink.following[-1] is False
        reader._thread.join(10)
        assert not reader._thread.is_alive()
    finally:
        reader.stop()
        writer.dispose()
        made.close()
