"""Regressions found auditing JavaScript applications' schemas (Sequelize, Prisma, TypeORM name their timestamps
`createdAt` / `updatedAt`): the birth timestamp is found by its camelCase name too. On PostgreSQL, MariaDB and
SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dbtest import TestDatabase, run_dupewatch

MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")  # Sequelize's DATETIME(3)


def test_copies_born_days_apart_by_a_camel_case_created_at_are_no_race(db: TestDatabase) -> None:
    """A Sequelize shop's carts (userId required, indexed, not unique; `createdAt`, `updatedAt`): six customers
    came back three days later and the shop wrote them a second, empty cart alike the first. `createdAt` was not
    taken for a birth timestamp ("no creation timestamp to date them"), so rows alike were judged race copies:
    high. Born days apart and alike: medium, with its figures by createdAt."""
    md = sa.MetaData()
    users = sa.Table("Users", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(50), nullable=False))
    carts = sa.Table("Carts", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("userId", sa.Integer, sa.ForeignKey("Users.id"), nullable=False, index=True),
                     sa.Column("total", sa.Integer, nullable=False),
                     sa.Column("createdAt", MOMENT, nullable=False), sa.Column("updatedAt", MOMENT, nullable=False))
    md.create_all(db.engine)
    t0 = datetime(2026, 3, 2, 9, 0, 0, 417_000)
    rows = [{"userId": u, "total": 0, "createdAt": t0 + timedelta(hours=u)} for u in range(1, 601)]
    rows += [{**rows[u - 1], "createdAt": rows[u - 1]["createdAt"] + timedelta(days=3)} for u in range(100, 601, 100)]
    with db.engine.begin() as conn:
        conn.execute(users.insert(), [{"id": u, "name": f"user {u}"} for u in range(1, 601)])
        conn.execute(carts.insert(), [{**r, "updatedAt": r["createdAt"]} for r in rows])
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = [f for f in run.json["findings"] if f["table"].rsplit(".", 1)[1] == "Carts"]
    assert finding["columns"] == ["userId"] and finding["severity"] == "medium", finding
    assert "0 of 6 written within 2s (by createdAt)" in finding["evidence"], finding
