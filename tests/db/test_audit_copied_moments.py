"""Regressions found by auditing a Wagtail site with django-simple-history and django-reversion, migrated by their
own code on PostgreSQL and MariaDB and filled through their model APIs: a timestamp copied into several rows is
no evidence that they were written together. On PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dbtest import TestDatabase, run_dupewatch

T0 = datetime(2026, 3, 2, 9, 0, 0, 417_203)
MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")  # Django's datetime(6)


def on(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] == table]


def test_history_rows_carrying_their_object_s_creation_time_are_no_race(db: TestDatabase) -> None:
    """django-simple-history's blog_historicalticket: one row per save of a ticket (history_id its key, the ticket's
    `id` indexed, not unique), each carrying the ticket's own `created`. Most tickets are filed and never edited;
    four were closed four days later. Their rows share `created` to the microsecond, so the audit took them for
    written within 2 s: a high non_unique_natural_key on `id` (0 of 4 groups alike). Two racing writers never read
    one moment to the microsecond: it was copied, and the rows differ and were written days apart (history_date):
    the design, no finding."""
    md = sa.MetaData()
    history = sa.Table("blog_historicalticket", md, sa.Column("id", sa.BigInteger, nullable=False, index=True),
                       sa.Column("title", sa.String(200), nullable=False),
                       sa.Column("status", sa.String(20), nullable=False),
                       sa.Column("created", MOMENT, nullable=False),
                       sa.Column("history_id", sa.Integer, primary_key=True),
                       sa.Column("history_date", MOMENT, nullable=False, index=True),
                       sa.Column("history_type", sa.String(1), nullable=False))
    md.create_all(db.engine)
    filed = [{"id": t, "title": f"ticket {t}", "status": "open", "created": T0 + t * timedelta(hours=3, seconds=7),
              "history_date": T0 + t * timedelta(hours=3, seconds=7), "history_type": "+"} for t in range(1, 201)]
    closed = [{**row, "status": "closed", "history_type": "~", "history_date": row["history_date"] + timedelta(days=4)}
              for row in filed[9:40:10]]
    with db.engine.begin() as conn:
        conn.execute(history.insert(), filed + closed)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    assert on(run.json, "blog_historicalticket") == [], run.json

