"""Regressions found by auditing a Wagtail site with django-simple-history and django-reversion, migrated by their
own code on PostgreSQL and MariaDB and filled through their model APIs: a timestamp copied into several rows is
no evidence that they were written together. On PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

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



def test_copies_one_transaction_wrote_with_the_server_s_now_are_still_found(db: TestDatabase) -> None:
    """The other side: a subscription per user (user_id required, indexed, not unique), created_at filled by the
    server's now(). A signup that ran its get-or-create loop twice in one transaction wrote six users two
    subscriptions each; the application then upgraded the first it found (plan 'pro'), so the copies differ. On
    PostgreSQL now() is the transaction's start, so both copies hold one moment to the microsecond (SQLite's
    strftime('%f', 'now') one millisecond), and they were taken for a copied moment: no finding, where MariaDB
    (a statement's time) found them. A moment the server fills is read when the row is written, never copied:
    the copies are born together and differ, medium with the check drafted, on every database."""
    now = {"postgresql": "now()", "mysql": "CURRENT_TIMESTAMP(6)",
           "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"}[db.dialect]
    md = sa.MetaData()
    users = sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(50), nullable=False))
    subscriptions = sa.Table("billing_subscription", md, sa.Column("id", sa.Integer, primary_key=True),
                             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
                             sa.Column("plan", sa.String(20), nullable=False),
                             sa.Column("created_at", MOMENT, nullable=False, server_default=sa.text(now)))
    md.create_all(db.engine)
    doubled = range(100, 601, 100)
    with db.engine.begin() as conn:
        conn.execute(users.insert(), [{"id": u, "name": f"user {u}"} for u in range(1, 601)])
        conn.execute(subscriptions.insert(), [{"user_id": u, "plan": "free", "created_at": T0 + timedelta(hours=u)}
                                              for u in range(1, 601) if u not in doubled])
    for user in doubled:
        with db.engine.begin() as conn:  # the loop run twice: two statements, one transaction
            conn.execute(subscriptions.insert().values(user_id=user, plan="free"))
            conn.execute(subscriptions.insert().values(user_id=user, plan="free"))
        with db.engine.begin() as conn:
            first = conn.execute(sa.select(sa.func.min(subscriptions.c.id))
                                 .where(subscriptions.c.user_id == user)).scalar_one()
            conn.execute(subscriptions.update().where(subscriptions.c.id == first).values(plan="pro"))
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "billing_subscription")
    assert finding["columns"] == ["user_id"] and finding["severity"] == "medium", finding
    assert (finding["duplicate_groups"], finding["check"]) == (6, None), finding
    assert "6 of 6 written within 2s" in finding["evidence"], finding


def test_copies_dated_by_a_millisecond_clock_are_still_found(db: TestDatabase) -> None:
    """A Prisma application (`DateTime @default(now())` kept to the millisecond, `datetime(3)`, filled by its own
    JavaScript clock): two webhook deliveries raced through an upsert of a customer's cart and wrote two carts
    within the same millisecond; the application has since written the total into the first it finds. Racing
    writers agree to the millisecond on such a clock, so one moment there is no copied one: born together and
    differing, medium with the check drafted (no finding before)."""
    md = sa.MetaData()
    users = sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(50), nullable=False))
    millis = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb") \
        .with_variant(postgresql.TIMESTAMP(precision=3), "postgresql")
    carts = sa.Table("cart", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
                     sa.Column("total", sa.Integer, nullable=False),
                     sa.Column("created_at", millis, nullable=False))
    md.create_all(db.engine)
    at = [datetime(2026, 3, 2, 9, 0, 0, 417_000) + timedelta(hours=u, milliseconds=u) for u in range(1, 601)]
    rows = [{"user_id": u, "total": 0, "created_at": at[u - 1]} for u in range(1, 601)]
    rows += [{"user_id": u, "total": 40 + u, "created_at": at[u - 1]} for u in range(100, 601, 100)]
    with db.engine.begin() as conn:
        conn.execute(users.insert(), [{"id": u, "name": f"user {u}"} for u in range(1, 601)])
        conn.execute(carts.insert(), rows)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "cart")
    assert finding["columns"] == ["user_id"] and finding["severity"] == "medium", finding
    assert (finding["duplicate_groups"], finding["check"]) == (6, None), finding
