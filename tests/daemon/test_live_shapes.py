"""Live mode against table shapes the stream names differently from the check: a partitioned table (PostgreSQL
names each change by its partition) and a table whose columns moved while it was followed (MariaDB's binary log
names no columns: they are read from information_schema by position)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from mariadbserver import MariaDBServer
from pgcluster import Cluster
from test_live import Recorded, await_true, execute, following_reader

# The servers and their fixtures are those of the live tests (one throwaway PostgreSQL and MariaDB per module).
from test_live import admin, cluster, mariadb, mariadb_table  # noqa: F401

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def partitioned(admin: sa.Engine) -> Iterator[str]:  # noqa: F811
    name = f"signup_{uuid.uuid4().hex[:8]}"
    execute(admin, f"CREATE TABLE {name} (id serial, email text NOT NULL, region int NOT NULL,"
                   f" PRIMARY KEY (id, region)) PARTITION BY LIST (region)")
    execute(admin, f"CREATE INDEX ON {name} (email)")
    execute(admin, f"CREATE TABLE {name}_1 PARTITION OF {name} FOR VALUES IN (1)")
    execute(admin, f"CREATE TABLE {name}_2 PARTITION OF {name} FOR VALUES IN (2)")
    yield name
    execute(admin, f"DROP TABLE {name}")


def test_a_duplicate_inserted_into_partitions_is_found_from_the_stream(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:  # noqa: F811
    """Logical decoding names each change by the partition that holds the row, not by the partitioned table the
    check counts: the changes of its partitions are its changes."""
    monitor = monitor_for({"live": {"url": cluster.url}}, [
        {"name": "signups", "database": "live", "table": partitioned, "key": ["email"]}])
    recorded = Recorded()
    with following_reader(monitor, recorded) as reader:
        groups = reader.groups["signups"]
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('p@example.com', 1)")
        execute(admin, f"INSERT INTO {partitioned} (email, region) VALUES ('p@example.com', 2)")
        await_true(lambda: groups.figures == (1, 1), "the group formed across two partitions")
        execute(admin, f"DELETE FROM {partitioned} WHERE region = 2")
        await_true(lambda: groups.figures == (0, 0), "the group a delete in a partition dissolved")
    assert recorded.gaps == []


def test_attaching_a_partition_that_holds_a_duplicate_is_a_gap_and_its_group_is_counted(
        cluster: Cluster, admin: sa.Engine, partitioned: str, monitor_for: Any) -> None:  # noqa: F811
    """ATTACH PARTITION puts rows under the check's table without logging any of them."""
    execute(admin, f"CREATE TABLE {partitioned}_3 (LIKE {partitioned})")
    execute(admin, f"INSERT INTO {partitioned}_3 (id, email, region) VALUES (101, 'a@example.com', 3),"
                   " (102, 'a@example.com', 3)")
    monitor = monitor_for({"live": {"url": cluster.url}}, [
        {"name": "signups", "database": "live", "table": partitioned, "key": ["email"]}])
    recorded = Recorded()
    with following_reader(monitor, recorded) as reader:
        groups = reader.groups["signups"]
        assert groups.figures == (0, 0)
        execute(admin, f"ALTER TABLE {partitioned} ATTACH PARTITION {partitioned}_3 FOR VALUES IN (3)")
        await_true(lambda: groups.figures == (1, 1), "the group the attached partition brought")
        await_true(lambda: len(recorded.gaps) == 1, "the gap reported")
    assert "partition" in recorded.gaps[0]


def test_mariadb_a_column_added_before_the_key_while_followed_keeps_the_keys_read_from_the_log(
        mariadb: MariaDBServer, mariadb_table: tuple[sa.Engine, str], monitor_for: Any) -> None:  # noqa: F811
    """Without binlog_row_metadata = FULL the log's rows carry values by position and the reader names them from
    information_schema: after an ALTER TABLE that moves the key column, the names must be read again."""
    engine, table = mariadb_table
    monitor = monitor_for({"live": {"url": mariadb.url}}, [
        {"name": "signups", "database": "live", "table": table, "key": ["email"]}])
    recorded = Recorded()
    with following_reader(monitor, recorded) as reader:
        groups = reader.groups["signups"]
        execute(engine, f"INSERT INTO {table} (email) VALUES ('before@example.com')")  # names read and kept
        await_true(lambda: recorded.events >= 1, "the first insert read")
        execute(engine, f"ALTER TABLE {table} ADD COLUMN note varchar(20) AFTER id")
        await_true(lambda: len(recorded.gaps) == 1, "the ALTER reported as a gap")
        execute(engine, f"INSERT INTO {table} (note, email) VALUES ('x', 'm@example.com'), ('y', 'm@example.com')")
        await_true(lambda: groups.figures == (1, 1), "the duplicate inserted after the ALTER")
