"""Live mode's shape of a watched table (`monitor.live.postgresql._SHAPE`: its storage, columns and partitions,
read at each change-stream read) named each column by md5(), which a FIPS-mode PostgreSQL build refuses: live mode
stopped at its first read there. Here md5() is refused the role as FIPS refuses it everyone (EXECUTE revoked, in
a database of the test's own); the shape is read, and a renamed column still changes it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import server_login
from monitor.live.postgresql import _SHAPE


def test_a_tables_shape_is_read_without_md5_and_changes_with_a_rename(own_pg):
    own_pg.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, \"k:;,\" TEXT)",
                   "REVOKE EXECUTE ON FUNCTION pg_catalog.md5(text), pg_catalog.md5(bytea) FROM PUBLIC")
    with server_login("postgresql", "ALTER ROLE {user} NOSUPERUSER", prefix="dw_fips", password="pw") as role:
        engine = sa.create_engine(make_url(own_pg.url).set(username=role, password="pw"))
        shape = sa.text(f"SELECT {_SHAPE} FROM pg_class c WHERE c.oid = 'visit'::regclass")
        try:
            with engine.connect() as conn:
                before = conn.execute(shape).scalar_one()
            own_pg.execute("ALTER TABLE visit RENAME COLUMN \"k:;,\" TO k")
            with engine.connect() as conn:
                after = conn.execute(shape).scalar_one()
        finally:
            engine.dispose()
    assert before.count(":") == 2 and after.count(":") == 2, (before, after)  # no name splits the text
    assert before != after and b"k:;,".hex() in before, (before, after)
