"""The fix and its undo on columns of types SQLAlchemy does not reflect (a PostgreSQL composite type, MariaDB's
`INET6` and `POINT`): the plan table declares them as the server's catalog does. The fix refused them after a dry
run that promised it (`a key or identity column ... has a type dupewatch cannot reflect`)."""

from __future__ import annotations

from fix_support import config_file, contents, json_out, run_cli


def _fix_and_undo(db, path, tables: tuple[str, ...], *, deleted: int, repointed: int) -> None:
    before = contents(db, *tables)
    dry = run_cli("fix", "c", "--config", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert (json_out(fixed)["deleted"], json_out(fixed)["archived"], json_out(fixed)["repointed"]) == (
        deleted, deleted, repointed)
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert contents(db, *tables) == before


def test_postgresql_key_of_a_composite_type_is_fixed_repointed_and_undone(pg, tmp_path):
    """A key column of a composite type (`CREATE TYPE money AS (currency, cents)`), which reflection does not
    know: the plan table declares it as the catalog does, and the referencing row is repointed and put back."""
    pg.execute("CREATE TYPE amount AS (currency CHAR(3), cents BIGINT)",
               "CREATE TABLE price (id INTEGER PRIMARY KEY, amount amount NOT NULL)",
               "CREATE TABLE line (id INTEGER PRIMARY KEY, price_id INTEGER REFERENCES price (id))",
               "INSERT INTO price VALUES (1, ROW('EUR', 100)), (2, ROW('EUR', 100)), (3, ROW('USD', 100))",
               "INSERT INTO line VALUES (10, 1), (11, 2), (12, 3)")
    path = config_file(tmp_path, pg, [{"name": "c", "table": "price", "key": ["amount"]}])
    _fix_and_undo(pg, path, ("price", "line"), deleted=1, repointed=1)


def test_mariadb_identical_rows_with_point_and_inet6_columns_without_primary_key(mysql, tmp_path):
    """No primary key: the plan copies every column to match identical rows, a `POINT` and an `INET6` too."""
    mysql.execute("CREATE TABLE visit (ip INET6, spot POINT, note VARCHAR(5))",
                  "INSERT INTO visit VALUES ('::1', POINT(1, 1), 'x'), ('::1', POINT(1, 1), 'x'), "
                  "('::2', NULL, NULL)")
    path = config_file(tmp_path, mysql, [{"name": "c", "table": "visit", "key": ["ip"]}])
    _fix_and_undo(mysql, path, ("visit",), deleted=1, repointed=0)
