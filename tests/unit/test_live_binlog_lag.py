"""The binary log dates a row event to the second its statement began, its transaction's commit (the XID event)
to the commit: a read that ends between the two must not date the rows it hands out by their statement, or a
transaction held open 4 s reads as a stream 4 s behind (`dupewatch_live_lag_seconds`; seen once on a real server
by tests/daemon/test_live.py, where the decoder's thread queued the commit just after a read took the rows)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from monitor.dialects.mysql import MySQL
from monitor.live.changes import Change
from monitor.live.mysql import BinlogStream, _Commit

STATEMENT = datetime(2026, 12, 7, 7, 0, 0, tzinfo=UTC)  # the INSERT began
COMMIT = datetime(2026, 12, 7, 7, 0, 4, tzinfo=UTC)  # 4 s later, its transaction committed


def stream() -> BinlogStream:
    opened = BinlogStream("app", sa.make_url("mysql+pymysql://u@db/app"), MySQL())
    opened._columns = ({("app", "signup"): frozenset({"email"})}, frozenset())
    return opened


def insert(opened: BinlogStream, table: str = "signup") -> None:
    opened._queue_rows(opened._generation, int(STATEMENT.timestamp()),
                       [Change("app", table, "INSERT", new={"email": "a@example.com"})])


def commit(opened: BinlogStream) -> None:
    opened._queue_commit(opened._generation, _Commit("file:binlog.000001:400", COMMIT))


def test_rows_read_with_their_commit_are_dated_by_the_commit() -> None:
    opened = stream()
    insert(opened)
    commit(opened)
    assert [t.committed_at for t in opened.read()] == [COMMIT]


def test_rows_read_before_their_commit_are_dated_by_the_commit_read_next() -> None:
    opened = stream()
    insert(opened)
    first = opened.read()
    assert [(t.events, t.committed_at) for t in first] == [(1, None)]  # not by the statement's start
    commit(opened)
    assert [(t.events, t.committed_at) for t in opened.read()] == [(0, COMMIT)]
    commit(opened)  # the next transaction's commit, with no watched rows: nothing to date
    assert opened.read() == []


def test_a_commit_of_rows_no_check_watches_dates_nothing() -> None:
    opened = stream()
    insert(opened, "other")
    commit(opened)
    assert [t.committed_at for t in opened.read()] == [None]  # the dropped row, counted as an event
