"""Regressions found by auditing a Django shop built from reusable applications (django-oscar, django-allauth,
django-taggit, django-celery-beat/results), migrated by their own code on PostgreSQL and MariaDB, with data written
through their model APIs and races injected through the same code paths. Each table shape is reproduced in plain
SQL. On PostgreSQL, MariaDB and SQLite unless a test says why not."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dbtest import TestDatabase, run_dupewatch

T0 = datetime(2026, 8, 2, 9, 0)


def on(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] == table]


def test_a_status_key_is_measured_and_checked_per_its_other_required_parent(db: TestDatabase, tmp_path: Path) -> None:
    """Oscar's customer_productalert(user_id, product_id NOT NULL, status): a user keeps one active alert per
    product, many users have active alerts on several products, and a visitor's alerts have no user (an email).
    Measured by (user_id, status) alone, most users repeat and the visitors' alerts were one group, so the
    double-submitted alert (one user, one product, twice in one second) was no finding; with one alert per user in
    the data, its check was keyed by user_id alone, whose fix would merge a user's alerts on two products. Rows of
    two products are two relationships, and a row with no user is keyed by nothing: measured and checked per
    product_id, NULL users left out."""
    db.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username VARCHAR(40) NOT NULL)",
               "CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE customer_productalert (id INTEGER PRIMARY KEY, "
               "user_id INTEGER NULL REFERENCES auth_user (id), "
               "product_id INTEGER NOT NULL REFERENCES catalogue_product (id), email VARCHAR(254) NOT NULL, "
               "status VARCHAR(20) NOT NULL, date_created TIMESTAMP NULL)",
               "CREATE INDEX alert_user ON customer_productalert (user_id)",
               "CREATE INDEX alert_product ON customer_productalert (product_id)")
    db.execute("INSERT INTO auth_user (id, username) VALUES (:id, :name)",
               params=[{"id": i, "name": f"user{i}"} for i in range(1, 41)])
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 11)])
    alerts = []
    for user in range(1, 41):
        for k in range(1 + user % 3):
            alerts.append({"user_id": user, "product_id": (user + 3 * k) % 10 + 1, "email": "",
                           "status": "Cancelled" if (user + k) % 5 == 0 else "Active",
                           "date_created": T0 + timedelta(days=user, hours=k)})
    alerts += [{"user_id": None, "product_id": k % 3 + 1, "email": f"visitor{k}@example.com", "status": "Active",
                "date_created": T0 + timedelta(days=k, hours=5)} for k in range(12)]
    # the race: the alert form submitted twice for one user and product
    alerts += [{"user_id": 7, "product_id": 3, "email": "", "status": "Active",
                "date_created": T0 + timedelta(days=60, milliseconds=ms)} for ms in (0, 300)]
    db.execute("INSERT INTO customer_productalert (id, user_id, product_id, email, status, date_created) "
               "VALUES (:id, :user_id, :product_id, :email, :status, :date_created)",
               params=[{"id": i, **a} for i, a in enumerate(alerts, 1)])
    target = tmp_path / "dupewatch.toml"
    run = run_dupewatch("audit", "--url", db.url, "--json", "--write", target)
    assert run.code == 1, run.output
    serious = [f for f in on(run.json, "customer_productalert") if f["severity"] != "low"]
    assert len(serious) == 1, [(f["kind"], f["columns"], f["severity"], f["evidence"]) for f in serious]
    [finding] = serious
    assert finding["kind"] == "key_with_status" and finding["severity"] == "high", finding
    assert finding["duplicate_groups"] == 1 and finding["excess_rows"] == 1, finding
    check = finding["check"]
    assert check is not None and check["key"] == ["user_id", "product_id"], finding
    assert check["where"] == "status = 'Active'", finding
    # the check as written finds the copy, and only it: not a user's two products, not the visitors' alerts
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": db.url})
    result = next(r for r in checked.json["checks"] if r["name"] == check["name"])
    assert (result["groups"], result["status"]) == (1, "duplicates"), result


def test_copies_inside_a_nullable_key_group_the_design_repeats_are_found(db: TestDatabase, tmp_path: Path) -> None:
    """Oscar's reviews_productreview UNIQUE(product_id, user_id), user_id NULL for a guest's review: a product's
    guest reviews are one group of rows differing only by NULLs, which differ and were born apart (the design), so a
    guest's review posted twice in one second, among them, was no finding. The copies inside it (alike in every
    compared column, born together) are a high finding, checked by every compared column too: its check finds the
    copy and never groups two guests' reviews."""
    db.execute("CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE reviews_productreview (id INTEGER PRIMARY KEY, "
               "product_id INTEGER NULL REFERENCES catalogue_product (id), user_id INTEGER NULL, "
               "score SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, body TEXT NOT NULL, "
               "name VARCHAR(255) NOT NULL, email VARCHAR(254) NOT NULL, date_created TIMESTAMP NULL, "
               "UNIQUE (product_id, user_id))")
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 21)])
    reviews = [{"product_id": p, "user_id": u, "score": (p + u) % 5 + 1, "title": "ok", "body": f"review {p} {u}",
                "name": "", "email": "", "date_created": T0 + timedelta(days=p, hours=u)}
               for p in range(1, 21) for u in range(1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": "guest", "body": f"guest {p} {g}",
                 "name": f"Guest {g}", "email": f"g{g}@example.com", "date_created": T0 + timedelta(days=p + 10 * g)}
                for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "great", "body": "loved it", "name": "Ann",
                 "email": "ann@example.com", "date_created": T0 + timedelta(days=50, milliseconds=ms)}
                for ms in (0, 400)]
    db.execute("INSERT INTO reviews_productreview (id, product_id, user_id, score, title, body, name, email, "
               "date_created) VALUES (:id, :product_id, :user_id, :score, :title, :body, :name, :email, "
               ":date_created)", params=[{"id": i, **r} for i, r in enumerate(reviews, 1)])
    target = tmp_path / "dupewatch.toml"
    run = run_dupewatch("audit", "--url", db.url, "--json", "--write", target)
    assert run.code == 1, run.output
    [finding] = [f for f in on(run.json, "reviews_productreview") if f["kind"] == "unique_with_nullable_columns"]
    assert finding["severity"] == "high" and (finding["duplicate_groups"], finding["excess_rows"]) == (1, 1), finding
    check = finding["check"]
    assert check is not None and {"score", "title", "body", "name", "email"} <= set(check["key"]), finding
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": db.url})
    result = next(r for r in checked.json["checks"] if r["name"] == check["name"])
    assert (result["groups"], result["status"]) == (1, "duplicates"), result
