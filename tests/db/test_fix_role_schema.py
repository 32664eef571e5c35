"""Issue 16, item 6: a schema named after the role (`search_path = "$user", public`).

`current_schema()` is then the role's schema although the table lives further down the search path: the fix,
its archive, the guard and undo must all act on the table where the server resolves it (`to_regclass`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import PG_URL, TestDatabase, server_login, write_config
from fix_support import json_out, run_cli


@pytest.fixture
def role_db(pg: TestDatabase) -> Iterator[tuple[TestDatabase, str, str]]:
    """(the test database, a role whose search_path is `"$user", <test schema>`, its URL); a schema named after
    the role exists, and the role owns the table it fixes (the guard must own it)."""
    with server_login("postgresql", f'GRANT USAGE, CREATE ON SCHEMA "{pg.schema}" TO {{user}}',
                      "CREATE SCHEMA {user} AUTHORIZATION {user}", prefix="dw_role") as role:
        url = make_url(PG_URL).set(username=role).update_query_dict(
            {"options": f'-csearch_path="$user",{pg.schema}'}).render_as_string(hide_password=False)
        yield pg, role, url


def _seed(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar() != schema  # the role's own schema
            conn.execute(sa.text(f'CREATE TABLE "{schema}".login (id INTEGER PRIMARY KEY, name TEXT NOT NULL)'))
            conn.execute(sa.text(f'INSERT INTO "{schema}".login VALUES (1, \'ann\'), (2, \'ann\'), (3, \'bob\')'))
    finally:
        engine.dispose()


def _tables(db: TestDatabase, schema: str) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names(schema=schema))


def test_fix_and_guard_act_where_the_server_resolves_the_table(role_db, tmp_path):
    db, role, url = role_db
    _seed(url, db.schema)
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": url}},
                        [{"name": "logins", "database": "app", "table": "login", "key": ["name"]}])
    result = run_cli("fix", "logins", "--config", str(path), "--yes", "--add-constraint", "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert report["deleted"] == 1 and report["constraint"] == "uq_dupewatch_logins"
    assert db.rows(f'SELECT id FROM "{db.schema}".login ORDER BY id') == [(1,), (3,)]
    assert "dupewatch_archive_login" in _tables(db, db.schema)  # beside the table, as the README says
    assert "dupewatch_archive_login" not in _tables(db, role)
    assert db.scalar(f"SELECT count(*) FROM pg_indexes WHERE schemaname = '{db.schema}' "
                     "AND indexname = 'uq_dupewatch_logins'") == 1
    again = run_cli("guard", "logins", "--config", str(path))
    assert again.exit_code == 0 and "already present" in again.stdout
    undone = run_cli("undo", report["fix_id"], "--config", str(path), "--yes", "--drop-constraint")
    assert undone.exit_code == 0, undone.output
    assert db.rows(f'SELECT id FROM "{db.schema}".login ORDER BY id') == [(1,), (2,), (3,)]


def test_a_failed_guard_after_a_committed_fix_says_the_fix_stands(pg, tmp_path, monkeypatch):
    pg.execute("CREATE TABLE login (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
               "INSERT INTO login VALUES (1, 'ann'), (2, 'ann')")
    path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": pg.url}},
                        [{"name": "logins", "database": "app", "table": "login", "key": ["name"]}])

    def broken(*_args, **_kwargs):
        raise LookupError("no row")

    monkeypatch.setattr("monitor.fix.guard.rounds.secure_guard", broken)
    result = run_cli("fix", "logins", "--config", str(path), "--yes", "--add-constraint")
    assert result.exit_code == 2
    assert "is done and committed (1 row deleted" in result.stderr and "rolled back" not in result.stderr
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "done"
