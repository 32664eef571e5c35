"""What a statement the binary log holds as a statement did, read as the server reads it (`adds_rows`): a statement
that may have made groups without logging a row is a gap and a full count; one that only removes rows, or names
none, is not. (On a real server: tests/daemon/test_live.py.)"""

from __future__ import annotations

import pytest

from monitor.live.binlog_decoder import adds_rows


@pytest.mark.parametrize(("statement", "verb"), [
    ("ALTER TABLE t MODIFY k varchar(9) COLLATE utf8mb4_general_ci", "ALTER TABLE"),
    ("ALTER ONLINE IGNORE TABLE t MODIFY k int", "ALTER TABLE"),
    ("RENAME TABLE t TO t_old, t_new TO t", "RENAME TABLE"),
    ("# a comment\n-- another\n/* and another */ INSERT INTO t VALUES (1)", "INSERT"),
    ("LOAD DATA INFILE 'x' INTO TABLE t", "LOAD"),
    # MariaDB logs `SET STATEMENT var = value FOR <statement>` as it was run: the statement is the one after FOR
    ("SET STATEMENT lock_wait_timeout=5 FOR ALTER TABLE t MODIFY k varchar(9) COLLATE utf8mb4_general_ci",
     "ALTER TABLE"),
    ("SET STATEMENT max_statement_time=5, lock_wait_timeout=(2) FOR RENAME TABLE t TO t_old, t_new TO t",
     "RENAME TABLE"),
    ("SET STATEMENT binlog_format='STATEMENT' FOR INSERT INTO t VALUES (1)", "INSERT"),
    ("SET STATEMENT sql_mode='FOR ALTER TABLE' FOR TRUNCATE t", None),  # a FOR in a string is no keyword
    # a comment within the statement is nothing; an executable one is run, so it is the statement's text
    ("ALTER /* why */ TABLE t MODIFY k int", "ALTER TABLE"),
    ("ALTER\n-- why\nTABLE t MODIFY k int", "ALTER TABLE"),
    ("/*M!100100 RENAME TABLE t TO t_old, t_new TO t */", "RENAME TABLE"),
    ("/*!50100 ALTER TABLE t MODIFY k int */", "ALTER TABLE"),
    ("WITH c AS (SELECT 1 FROM (SELECT 2) x) UPDATE t SET k = 1", "UPDATE"),
    ("WITH c AS (SELECT 1) DELETE FROM t", "DELETE"),
    ("/*!40000 ALTER TABLE `s`.`t` DISABLE KEYS */", None),  # a dump's, around rows logged as rows
    ("DELETE FROM t WHERE k = 'INSERT'", "DELETE"),  # its triggers may insert
    ("TRUNCATE t", None),
    ("CREATE TABLE t (k int)", None),
    ("ALTER USER u IDENTIFIED BY 'x'", None),
    (b"INSERT INTO t VALUES ('it''s')", "INSERT"),
    # a statement only removing rows, or changing no table's rows, is not a gap
    ("DROP TABLE t", None),
    ("GRANT SELECT ON *.* TO u", None),
    ("CREATE USER u", None),
    ("RENAME USER a TO b", None),
    ("CREATE OR REPLACE TABLE t LIKE t_new", None),
    ("WITH c AS (SELECT 1) SELECT * FROM c", "SELECT"),
    # a CREATE filling a table, and a statement not known here, may have added rows: a gap, never a silent miss
    ("CREATE TABLE t2 AS SELECT * FROM t", "CREATE TABLE"),
    ("CREATE OR REPLACE TABLE t (SELECT * FROM t_new)", "CREATE TABLE"),
    ("CALL add_rows()", "CALL"),
    ("SELECT `test`.`f`()", "SELECT"),  # a stored function that inserts, logged as its call
    ("RENAME TABLES t TO t_old, t_new TO t", "RENAME TABLE"),
    ("XA START X'31',X'',1", None),
    ("BINLOG 'AbCd'", "BINLOG"),
    ("DO add_rows()", "DO"),
    ("/*!99999 FUTURE */ MERGE INTO t USING s ON (1) WHEN NOT MATCHED THEN INSERT VALUES (1)", "FUTURE"),
])
def test_a_statement_logged_as_a_statement_is_read_as_the_server_runs_it(statement: str | bytes,
                                                                        verb: str | None) -> None:
    assert adds_rows(statement) == verb
