"""Where a binary log stream opens for a saved position, by the kind of position and what the server offers
(no server: MySQL 8 with GTIDs has none in the tests; MariaDB's positions are tested on a real server in
tests/daemon/test_live.py)."""

from __future__ import annotations

import sqlalchemy as sa

from monitor.dialects.mysql import MySQL
from monitor.live.mysql import BinlogStream

CURRENT = ("binlog.000007", 1234)
SET = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6,4c9e3dfc-9d25-11e9-8d2e-0242ac1cfd7e:1-3"


def stream() -> BinlogStream:
    return BinlogStream("app", sa.make_url("mysql+pymysql://u@db/app"), MySQL())


def test_a_saved_gtid_set_resumes_on_a_mysql_server_with_gtids() -> None:
    opened = stream()
    assert opened._resumed(f"gtidset:{SET}", CURRENT, None, SET + ":7-9") == (CURRENT, None)
    assert opened.gtid_set == SET


def test_a_saved_file_position_resumes_only_where_the_server_has_no_gtids() -> None:
    assert stream()._resumed("file:binlog.000003:4", CURRENT, None, None) == (("binlog.000003", 4), None)
    where, gap = stream()._resumed("file:binlog.000003:4", CURRENT, None, SET)
    assert where == CURRENT and gap is not None and "cannot resume from the saved position" in gap


def test_a_position_of_another_kind_of_server_is_a_gap() -> None:
    where, gap = stream()._resumed("gtid:0-1-12", CURRENT, None, SET)  # MariaDB's, on MySQL
    assert where == CURRENT and gap is not None
    where, gap = stream()._resumed(f"gtidset:{SET}", CURRENT, "0-1-12", None)  # MySQL's, on MariaDB
    assert where == CURRENT and gap is not None


def test_an_empty_gtid_position_resumes_only_while_the_server_has_logged_none() -> None:
    assert stream()._resumed("gtid:", CURRENT, "", None) == (CURRENT, None)
    assert stream()._resumed("gtid:", CURRENT, "0-1-3", None)[1] is not None
    assert stream()._resumed("gtidset:", CURRENT, None, "")[1] is None
    assert stream()._resumed("gtidset:", CURRENT, None, SET)[1] is not None
