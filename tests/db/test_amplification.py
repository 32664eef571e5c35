"""A custom check cannot take the monitor down or run past its deadline: statements that build a huge value from a
short text through functions the vetting allows (nested replace(), a doubling recursive CTE, string_agg, a big
numeric, MariaDB UNCOMPRESS of a crafted blob or a virtual column calling REPEAT) end within the check's deadline
with one line, and dupewatch's own memory stays bounded, in the check's run and in its rows (the drill-down).

Each spelling runs in a child process (forked from one that imported dupewatch), which measures its own peak resident
memory around the call (`/proc/self/clear_refs`, then `VmHWM`), so that one test's allocations do not hide another's.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_read_only_spellings import make_victim, stop_backends

from dbtest import REPO_ROOT, write_config
from fix_support import run_cli
from monitor.config import DatabaseConfig
from monitor.db import CANCEL_WAIT_SECONDS, DEADLINE_GRACE_SECONDS, Database
from monitor.dialects.sqlite import MAX_HEAP_BYTES

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 2.0  # the check's statement_timeout, seconds
# What dupewatch may take: its deadline, the wait for a cancel the server took, and slack for a loaded machine.
ANSWERED_WITHIN = TIMEOUT + DEADLINE_GRACE_SECONDS + CANCEL_WAIT_SECONDS + 4
MEMORY_MB = 300  # growth of dupewatch's peak resident memory while it runs the check

# One process imports dupewatch once and forks a child for each call: the child measures its own peak resident
# memory around the call (`/proc/self/clear_refs`, then `VmHWM`), so one call's allocations hide no other's, without
# a Python start and dupewatch's imports per call.
FORKER = r"""
import json, os, re, sys, time
from pathlib import Path
from monitor.config import config_from_dict
from monitor.engine import Monitor

def peak_kb():
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1])

def call(url, sql, what, timeout):
    monitor = Monitor(config_from_dict({"databases": {"d": {"url": url, "statement_timeout": timeout}},
                                        "checks": [{"name": "c", "database": "d", "sql": sql}]}, None))
    Path("/proc/self/clear_refs").write_text("5")  # the peak from now on
    before = peak_kb()
    started = time.monotonic()
    if what == "run":
        result = monitor.run("c")
        told = {"status": result.status, "error": result.error}
    else:
        try:
            columns, rows = monitor.custom_rows("c")
            told = {"status": "rows", "error": None, "rows": len(rows)}
        except Exception as exc:
            told = {"status": "error", "error": str(exc), "kind": type(exc).__name__}
    told["took"] = time.monotonic() - started
    told["grown_mb"] = (peak_kb() - before) / 1024
    monitor.close()
    return told

for request in sys.stdin:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            answer = {"told": call(*json.loads(request))}
        except BaseException as exc:
            answer = {"crashed": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(answer))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    print("ANSWER " + text, flush=True)
"""


@pytest.fixture(scope="module")
def run_child() -> Iterator[Callable[[str, str, str], dict[str, Any]]]:
    """`run_child(url, sql, what)`: check `c` of `sql` run (`what` = "run") or its rows read ("rows") in a child
    process of its own, with the check's timeout: what it told (status, error, took, grown_mb)."""
    forker = subprocess.Popen([sys.executable, "-c", FORKER], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert forker.stdin is not None and forker.stdout is not None
    stdin, stdout = forker.stdin, forker.stdout

    def run(url: str, sql: str, what: str) -> dict[str, Any]:
        stdin.write(json.dumps([url, sql, what, f"{TIMEOUT:g}s"]) + "\n")
        stdin.flush()
        for line in stdout:
            if line.startswith("ANSWER "):
                answer = json.loads(line.removeprefix("ANSWER "))
                assert "told" in answer, answer
                told: dict[str, Any] = answer["told"]
                return told
        raise AssertionError(f"the forking process ended ({forker.wait()})")

    try:
        yield run
    finally:
        stdin.close()
        forker.wait(timeout=60)


def assert_bounded(told: dict[str, Any], sql: str) -> None:
    """Answered within the deadline, in bounded memory, and a failure said in one line (naming the check or the
    database)."""
    print(f"{told['status']} in {told['took']:.2f} s, peak RSS +{told['grown_mb']:.0f} MB: {told['error']}")
    assert told["took"] < ANSWERED_WITHIN, (told, sql[:200])
    assert told["grown_mb"] < MEMORY_MB, (told, sql[:200])
    if told["error"] is not None:
        assert "\n" not in told["error"]
        assert told["error"].startswith(("check 'c': ", "database 'd' ")), told["error"]
        assert "Traceback" not in told["error"] and "internal error" not in told["error"], told["error"]


# The outcomes a bounded end can have: refused by the vetting, a value or page beyond what dupewatch reads, the
# server's own limits (its statement timeout, its largest value), or dupewatch's deadline.
REFUSED = "is not allowed in a check"
TOO_BIG = ("dupewatch reads of a value", "dupewatch reads of a page")
COUNT_OVERFLOW = "does not add up to a count"
SERVER_LIMIT = ("exceeded statement_timeout", "invalid memory alloc request size", "out of memory",
                "Cannot enlarge string buffer", "larger than max_allowed_packet", "total size of the result",
                "String too long")
DEADLINE = "no answer within the client-side deadline"
ENDED = (REFUSED, *TOO_BIG, COUNT_OVERFLOW, *SERVER_LIMIT, DEADLINE)
WHOLE = "(a page within the bounds, read whole)"  # a spelling whose value stays under the bounds when fast enough


def nested(call: str, levels: int, start: str) -> str:
    """`call` (with `{}` for its first argument) applied `levels` times to `start`: four times longer each level."""
    text = start
    for _ in range(levels):
        text = call.format(text)
    return text


# Each: (SQL with `{marker}`, what the drill-down of its rows must end with, what the run may end with). A run only
# counts rows (`SELECT COUNT(*) ... FROM (query)`): where the server then never builds the value, it ends with
# figures.
PG_SPELLINGS = {
    # 4^15 characters: planning folds the constant (in the vetting EXPLAIN), each replace() an uninterruptible call
    "nested replace": (f"SELECT {nested('replace({}, $$a$$, $$aaaa$$)', 15, '$$aaaa$$')} AS {{marker}}, "
                       "2 AS dup_count", (*SERVER_LIMIT, DEADLINE), ENDED),
    "nested repeat": ("SELECT repeat(repeat(repeat('a', 1024), 1024), 1024) AS {marker}, 2 AS dup_count",
                      (REFUSED,), (REFUSED,)),
    "lpad to 2^30": ("SELECT lpad('x', 1073741824, 'y') AS {marker}, 2 AS dup_count", (REFUSED,), (REFUSED,)),
    # 131,001 digits a value, three a row, 100 rows a page; the dup_count sum has 100,001 digits
    "power of a numeric": ("SELECT power(10::numeric, 131000) AS {marker}, power(10::numeric, 131000) AS k2, "
                           "power(10::numeric, 100000) AS dup_count FROM generate_series(1, 200)",
                           (TOO_BIG[1],), (COUNT_OVERFLOW,)),
    "recursive CTE doubling a string": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x'::text UNION ALL SELECT n + 1, s || s FROM r WHERE n < 31) "
        "SELECT s AS {marker}, 2 AS dup_count FROM r", (*SERVER_LIMIT, DEADLINE), ENDED),
    "recursive CTE doubling to 8 MiB": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x'::text UNION ALL SELECT n + 1, s || s FROM r WHERE n < 24) "
        "SELECT s AS {marker}, 2 AS dup_count FROM r", (TOO_BIG[0],), ENDED),
    "string_agg over generate_series": (
        "SELECT string_agg('aaaaaaaaaa', '') AS {marker}, 2 AS dup_count FROM generate_series(1, 200000000)",
        (*SERVER_LIMIT, DEADLINE), ENDED),
    "an 8 MB string sent in each of 100 rows": (
        "SELECT s AS {marker}, g AS dup_count FROM (SELECT string_agg('aaaaaaaaaa', '') AS s "
        "FROM generate_series(1, 800000)) AS t, generate_series(1, 100) AS g",
        (TOO_BIG[0], *SERVER_LIMIT, DEADLINE), ENDED),  # the server measures (or spills) 800 MB within its timeout
    "string_agg of 20 MB": (
        "SELECT string_agg('aaaaaaaaaa', '') AS {marker}, 2 AS dup_count FROM generate_series(1, 2000000)",
        (TOO_BIG[0],), ENDED),
}


def crafted_blob(size: int) -> str:
    """A MariaDB COMPRESS() value written as a literal: the length, then zlib's stream of `size` bytes of 'a'
    (about 4 KB for 4 MB; MariaDB reads up to `max_allowed_packet`, 16 MiB by default)."""
    return "0x" + (struct.pack("<I", size) + zlib.compress(b"a" * size, 9)).hex()


# 4^9 characters: MariaDB's REPLACE() takes time quadratic in its result and looks at no KILL meanwhile (measured:
# 0.3 s at 4^8, about 16 times more per level), so the server runs each call to its end; 4^12 would run for hours.
# Its 256 KiB value is within what dupewatch reads: on an idle server the page comes back whole before the deadline.
NESTED_REPLACE = nested("REPLACE({}, 'a', 'aaaa')", 9, "'a'")
MYSQL_SPELLINGS = {
    "REPEAT": ("SELECT REPEAT('a', 16000000) AS {marker}, 2 AS dup_count", (REFUSED,), (REFUSED,)),
    "LPAD": ("SELECT LPAD('x', 16000000, 'y') AS {marker}, 2 AS dup_count", (REFUSED,), (REFUSED,)),
    "UNCOMPRESS(COMPRESS(REPEAT()))": ("SELECT UNCOMPRESS(COMPRESS(REPEAT('a', 16000000))) AS {marker}, "
                                       "2 AS dup_count", (REFUSED,), (REFUSED,)),
    "UNCOMPRESS of a crafted blob": (f"SELECT UNCOMPRESS({crafted_blob(4_000_000)}) AS {{marker}}, seq AS dup_count "
                                     "FROM seq_1_to_3", (TOO_BIG[0],), ENDED),
    "nested REPLACE": (f"SELECT {NESTED_REPLACE} AS {{marker}}, "
                       "2 AS dup_count", (*SERVER_LIMIT, DEADLINE, WHOLE), ENDED),
    "recursive CTE doubling a string": (
        "WITH RECURSIVE r AS (SELECT 1 AS n, CAST('x' AS CHAR(10000000)) AS s UNION ALL "
        "SELECT n + 1, CONCAT(s, s) FROM r WHERE n < 22) SELECT s AS {marker}, 2 AS dup_count FROM r",
        (TOO_BIG[0],), ENDED),
}


# SQLite runs in dupewatch's own process: its strings stop at 32 MiB (SQLITE_LIMIT_LENGTH), and a page is bounded
# as on the servers.
SQLITE_SPELLINGS = {
    "recursive CTE doubling to 8 MiB": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r WHERE n < 24) "
        "SELECT s AS {marker}, 2 AS dup_count FROM r", (TOO_BIG[0],), ENDED),
    "recursive CTE doubling past 32 MiB": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r WHERE n < 31) "
        "SELECT s AS {marker}, 2 AS dup_count FROM r", ("string or blob too big",), ("string or blob too big",)),
}


@pytest.fixture
def marker() -> str:
    """A name for the statements of this test (`stop_backends` ends those still running after it)."""
    return f"dw_amplified_{uuid.uuid4().hex[:8]}"


def check_spelling(run_child: Any, db: Any, sql: str, rows_end: tuple[str, ...], run_end: tuple[str, ...],
                   marker: str) -> None:
    sql = sql.format(marker=marker)
    try:
        for what, ends in (("rows", rows_end), ("run", run_end)):
            told = run_child(db.url, sql, what)
            assert_bounded(told, sql)
            if what == "rows" and told["status"] == "rows":
                assert WHOLE in ends, (what, told)
            elif what == "rows" or told["status"] == "error":
                assert told["error"] is not None and any(end in told["error"] for end in ends), (what, told)
            if db.dialect != "sqlite":  # a server may still run a call that looks for no cancel
                stop_backends(db, marker)
    finally:
        if db.dialect != "sqlite":
            stop_backends(db, marker)


@pytest.mark.parametrize("spelling", PG_SPELLINGS)
def test_postgresql_an_amplified_value_ends_in_one_line_within_the_deadline_in_bounded_memory(pg, spelling,
                                                                                                marker, run_child):
    check_spelling(run_child, make_victim(pg), *PG_SPELLINGS[spelling], marker)


@pytest.mark.parametrize("spelling", MYSQL_SPELLINGS)
def test_mysql_an_amplified_value_ends_in_one_line_within_the_deadline_in_bounded_memory(mysql, spelling, marker,
                                                                                           run_child):
    check_spelling(run_child, make_victim(mysql), *MYSQL_SPELLINGS[spelling], marker)


@pytest.mark.parametrize("spelling", SQLITE_SPELLINGS)
def test_sqlite_an_amplified_value_ends_in_one_line_within_the_deadline_in_bounded_memory(sqlite_db, spelling,
                                                                                            marker, run_child):
    check_spelling(run_child, make_victim(sqlite_db), *SQLITE_SPELLINGS[spelling], marker)


MANY_VALUES = ("WITH RECURSIVE b(n, s) AS (SELECT 0, 'x' UNION ALL SELECT n + 1, s || s FROM b WHERE n < 20), "
               "r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 40) "
               "SELECT 1 AS k, 2 AS dup_count, "
               + ", ".join(f"length(group_concat(s || '{i}')) AS c{i}" for i in range(40))
               + " FROM (SELECT s FROM b WHERE n = 20), r")


def test_sqlite_many_values_each_within_the_string_limit_stop_at_the_heap_limit(sqlite_db, run_child):
    """SQLite's string limit bounds each value (32 MiB), not how many a statement builds at once: 40 group_concat()s
    of 1 MiB rows took dupewatch's process past 1.3 GB before. SQLite's heap limit (`MAX_HEAP_BYTES`) stops it, in
    one line."""
    told = run_child(make_victim(sqlite_db).url, MANY_VALUES, "run")
    print(told)
    assert told["status"] == "error" and "out of memory" in told["error"], told
    assert told["grown_mb"] < (MAX_HEAP_BYTES >> 20) + 150, told
    assert_bounded({**told, "grown_mb": 0}, MANY_VALUES)  # one line, in time


def test_mysql_a_virtual_column_calling_repeat_is_read_in_bounded_memory(mysql, marker, run_child):
    """A VIRTUAL column's expression is not in the server's expansion of a statement reading it: its REPEAT runs;
    what reaches dupewatch is bounded all the same."""
    make_victim(mysql, "CREATE TABLE made (id INT PRIMARY KEY, c LONGTEXT AS (REPEAT('a', 4000000)) VIRTUAL)",
                "INSERT INTO made (id) VALUES (1), (2), (3)")
    check_spelling(run_child, mysql, "SELECT c AS {marker}, 2 AS dup_count FROM made", (TOO_BIG[0],), ENDED, marker)


def test_a_page_of_rows_within_the_bounds_is_read_whole(db, monitor_for):
    """The bounds leave keys and counts alone: text, NULLs and counts come back as they were."""
    make_victim(db)
    sql = "SELECT k, k AS k2, NULL AS empty, count(*) AS dup_count FROM victim GROUP BY k"
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "sql": sql}])
    columns, rows = monitor.custom_rows("c")
    assert [c.lower() for c in columns] == ["k", "k2", "empty", "dup_count"]
    assert sorted((r[0], r[1], r[2], int(r[3])) for r in rows) == [("a", "a", None, 2), ("b", "b", None, 1)]


def test_postgresql_rows_of_no_column_are_listed(pg, monitor_for):
    make_victim(pg)
    monitor = monitor_for({"d": {"url": pg.url}}, [{"name": "c", "database": "d", "sql": "SELECT FROM victim"}])
    assert monitor.custom_rows("c") == ([], [(), (), ()])


def test_postgresql_columns_sharing_a_name_are_read_by_position(pg, monitor_for):
    make_victim(pg)
    monitor = monitor_for({"d": {"url": pg.url}},
                          [{"name": "c", "database": "d", "sql": "SELECT id, k, id * 10 AS id FROM victim"}])
    columns, rows = monitor.custom_rows("c")
    assert columns == ["id", "k", "id"] and sorted(rows) == [(1, "a", 10), (2, "a", 20), (3, "b", 30)]


# -- the server's own statement timeout, on every connection a check's SQL runs on -----------------------------

SLEEPING_WHERE = {"postgresql": "pg_sleep(3) IS NOT NULL", "mysql": "SLEEP(3) = 0"}


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_the_statement_timeout_bounds_a_where_on_the_fix_connection_too(server, request, tmp_path):
    """The fix runs a table check's `where` on its writable connection (`fix_url`), whose client-side deadline
    (`test_fix_client_deadline`) comes after the server's timeout (a startup option on PostgreSQL,
    `max_statement_time` on MariaDB, set on every connection dupewatch opens): that ends it, one line, nothing
    changed."""
    db = make_victim(request.getfixturevalue(server))
    path = write_config(tmp_path / "dw.toml", {"d": {"url": db.url, "statement_timeout": "1s"}},
                        [{"name": "w", "database": "d", "table": "victim", "key": ["k"],
                          "where": SLEEPING_WHERE[db.dialect]}])
    before = db.rows("SELECT id, k FROM victim ORDER BY id")
    started = time.monotonic()
    result = run_cli("fix", "w", "--yes", "--config", str(path))
    took = time.monotonic() - started
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "statement_timeout (1s)" in result.stderr, result.stderr
    assert took < 1 + 3, took  # one sleep of 3 s a row would take 9
    assert db.rows("SELECT id, k FROM victim ORDER BY id") == before


@pytest.mark.parametrize("server", ["pg", "mysql"])
def test_the_detection_and_the_fix_connections_carry_the_server_timeout(server, request):
    db = request.getfixturevalue(server)
    database = Database("d", DatabaseConfig(url=db.url, statement_timeout="1500ms"))
    ask = {"postgresql": "SELECT current_setting('statement_timeout')",
           "mysql": "SELECT @@SESSION.max_statement_time"}[db.dialect]
    try:
        with database.read_only() as conn:
            detection = conn.exec_driver_sql(ask).scalar()
        with database.writer.connect() as conn:
            writing = conn.exec_driver_sql(ask).scalar()
    finally:
        database.dispose()
    assert detection == writing
    assert float(str(detection).removesuffix("ms")) == {"postgresql": 1500, "mysql": 1.5}[db.dialect], detection


def test_the_rows_of_a_query_whose_columns_changed_since_they_were_probed_are_read(db, monitor_for):
    """A custom query's columns are probed once per check; `SELECT *` over a table that gains a column has one more
    since: the drill-down probes them again instead of failing until a restart."""
    make_victim(db)
    db.execute("CREATE TABLE dupes (k VARCHAR(10), dup_count INTEGER)", "INSERT INTO dupes VALUES ('a', 2)")
    monitor = monitor_for({"d": {"url": db.url}}, [{"name": "c", "database": "d", "sql": "SELECT * FROM dupes"}])
    assert monitor.custom_rows("c") == (["k", "dup_count"], [("a", 2)])
    db.execute("ALTER TABLE dupes ADD COLUMN note VARCHAR(10)", "UPDATE dupes SET note = 'x'")
    assert monitor.custom_rows("c") == (["k", "dup_count", "note"], [("a", 2, "x")])
