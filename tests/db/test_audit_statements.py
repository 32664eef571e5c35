"""`check_then_insert` for real: a throwaway PostgreSQL cluster started with `shared_preload_libraries =
pg_stat_statements`, the application's lookups and inserts run through the driver as an ORM sends them, and the
audit reads them back from the view (the shared test server has no pg_stat_statements preloaded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pgcluster import Cluster, started_cluster

from dbtest import run_dupewatch

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stats_cluster() -> Iterator[Cluster]:
    yield from started_cluster("the pg_stat_statements test", shared_preload_libraries="pg_stat_statements")


def test_check_then_insert_reads_the_applications_lookups_from_pg_stat_statements(stats_cluster: Cluster) -> None:
    engine = sa.create_engine(stats_cluster.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION pg_stat_statements")
        for name in ("accounts_profile", "accounts_note"):
            conn.exec_driver_sql(f"CREATE TABLE {name} (id serial PRIMARY KEY, user_id int NOT NULL, bio text)")
        conn.exec_driver_sql("CREATE TABLE accounts_settings (id serial PRIMARY KEY, user_id int NOT NULL UNIQUE, "
                             "theme text)")
    with engine.connect() as conn:  # Django's get_or_create, as psycopg sends it: bound parameters, $1, $2
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        for user in range(1, 31):
            for name in ("accounts_profile", "accounts_note", "accounts_settings"):
                cursor.execute(f'SELECT "{name}"."id" FROM "{name}" WHERE "{name}"."user_id" = %s LIMIT 21', (user,))
                cursor.execute(f'INSERT INTO "{name}" ("user_id") VALUES (%s) RETURNING "{name}"."id"', (user,))
        cursor.execute('INSERT INTO "accounts_profile" ("user_id") VALUES (%s)', (7,))  # the racing copy
        raw.commit()
    engine.dispose()
    run = run_dupewatch("audit", "--url", stats_cluster.url, "--json")
    assert run.code == 1, run.output
    lookups = {f["table"].rsplit(".", 1)[1]: f for f in run.json["findings"] if f["kind"] == "check_then_insert"}
    assert set(lookups) == {"accounts_profile", "accounts_note"}  # accounts_settings' lookup is unique
    raced = lookups["accounts_profile"]
    assert (raced["columns"], raced["duplicate_groups"], raced["severity"]) == (["user_id"], 1, "high")
    assert "looked up by user_id 30 times" in raced["evidence"]
    waiting = lookups["accounts_note"]
    assert (waiting["duplicate_groups"], waiting["severity"]) == (0, "medium") and waiting["check"] is not None
    assert "pg_stat_statements" not in run.stderr
