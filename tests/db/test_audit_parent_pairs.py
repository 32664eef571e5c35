"""Regressions found from public bug reports of duplicate rows (Linaro/squad#1051: "multiple BuildSummary
.create_or_update calls could happen in parallel, thus causing multiple objects created"): a pair of required
parents that no index names together. On PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dbtest import TestDatabase, run_dupewatch

T0 = datetime(2026, 3, 2, 9, 0, 0, 417_203)
MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def on(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] == table]


def build_summaries(db: TestDatabase) -> sa.Table:
    """Linaro SQUAD's core_buildsummary before its fix (Linaro/squad#1051): one summary per build and environment,
    kept by create_or_update (a get then a create) with no unique key over (build_id, environment_id), only
    Django's index on each foreign key. 100 builds tested in 3 environments each, summaries written as each
    environment's results arrived (hours apart)."""
    md = sa.MetaData()
    builds = sa.Table("core_build", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("version", sa.String(100), nullable=False))
    environments = sa.Table("core_environment", md, sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("slug", sa.String(100), nullable=False))
    summaries = sa.Table("core_buildsummary", md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("build_id", sa.Integer, sa.ForeignKey("core_build.id"), nullable=False, index=True),
                         sa.Column("environment_id", sa.Integer, sa.ForeignKey("core_environment.id"),
                                   nullable=False, index=True),
                         sa.Column("tests_total", sa.Integer, nullable=False),
                         sa.Column("tests_pass", sa.Integer, nullable=False),
                         sa.Column("created_at", MOMENT, nullable=False))
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(builds.insert(), [{"id": b, "version": f"v{b}"} for b in range(1, 101)])
        conn.execute(environments.insert(), [{"id": e, "slug": f"env{e}"} for e in range(1, 4)])
        conn.execute(summaries.insert(), [
            {"build_id": b, "environment_id": e, "tests_total": 100 + b, "tests_pass": 90 + e,
             "created_at": T0 + timedelta(days=b, hours=3 * e)} for b in range(1, 101) for e in range(1, 4)])
    return summaries


def test_a_race_copy_of_a_pair_of_required_parents_nothing_indexes_together_is_found(db: TestDatabase) -> None:
    """Two result uploads of build 42 in environment 2 raced through create_or_update: two summaries alike, written
    30 ms apart. Each parent alone repeats by design (three environments per build, a hundred builds per
    environment), and no index names the pair, so nothing was measured. The pair of required parents is almost one
    row per pair (299 of 300 occur once): the copy is a high finding, keyed by the pair."""
    summaries = build_summaries(db)
    with db.engine.begin() as conn:
        conn.execute(summaries.insert(), [{"build_id": 42, "environment_id": 2, "tests_total": 142, "tests_pass": 92,
                                           "created_at": T0 + timedelta(days=42, hours=6, milliseconds=30)}])
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "core_buildsummary")
    assert finding["columns"] == ["build_id", "environment_id"] and finding["severity"] == "high", finding
    assert (finding["duplicate_groups"], finding["excess_rows"]) == (1, 1), finding
    assert finding["check"] is not None and finding["check"]["key"] == ["build_id", "environment_id"], finding


def test_a_pair_of_parents_whose_rows_repeat_apart_and_differ_is_the_design(db: TestDatabase) -> None:
    """The other side: a build re-tested in environment 2 a week later (another run, other figures) is a second
    summary by design: no finding."""
    summaries = build_summaries(db)
    with db.engine.begin() as conn:
        conn.execute(summaries.insert(), [{"build_id": 42, "environment_id": 2, "tests_total": 150, "tests_pass": 70,
                                           "created_at": T0 + timedelta(days=49)}])
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert on(run.json, "core_buildsummary") == [], run.json


def test_a_copy_one_of_the_pair_s_parents_reports_alone_is_one_finding(db: TestDatabase) -> None:
    """A summary per build (one environment each) raced twice: build_id alone is almost one row per build and
    reports the copy; the pair (build_id, environment_id) holds the same copy: one finding, the parent's."""
    summaries = build_summaries(db)
    with db.engine.begin() as conn:
        conn.execute(summaries.delete().where(summaries.c.environment_id != 1))
        conn.execute(summaries.insert(), [{"build_id": 42, "environment_id": 1, "tests_total": 142, "tests_pass": 91,
                                           "created_at": T0 + timedelta(days=42, hours=3, milliseconds=30)}])
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "core_buildsummary")
    assert finding["columns"] == ["build_id"] and finding["severity"] == "high", finding


def test_an_order_s_second_line_of_one_product_written_with_its_other_lines_is_no_high(db: TestDatabase) -> None:
    """The pair's other side: a shop whose order lines (order_id, product_id, both required, indexed apart) are
    written by the checkout request, an order's lines within milliseconds. Almost every order holds a product once,
    but a customer may put one product in twice, and a shop that does not merge lines writes two alike lines with
    the order's others. Alike and born together, they were a high finding with a live check, whose fix deletes a
    line the customer paid for; a double submit's copy looks the same, and the order's other lines, written in
    that same burst, show one request writes them together: medium, check drafted."""
    md = sa.MetaData()
    orders = sa.Table("shop_order", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("number", sa.String(20), nullable=False))
    products = sa.Table("shop_product", md, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("name", sa.String(50), nullable=False))
    lines = sa.Table("shop_orderline", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("order_id", sa.Integer, sa.ForeignKey("shop_order.id"), nullable=False, index=True),
                     sa.Column("product_id", sa.Integer, sa.ForeignKey("shop_product.id"), nullable=False,
                               index=True),
                     sa.Column("quantity", sa.Integer, nullable=False),
                     sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
                     sa.Column("created_at", MOMENT, nullable=False))
    md.create_all(db.engine)
    rows = []
    for o in range(1, 301):
        rows += [{"order_id": o, "product_id": (o * 7 + k * 13) % 100 + 1, "quantity": 1, "unit_price": 9.99,
                  "created_at": T0 + timedelta(hours=o, milliseconds=3 * k)} for k in range(3)]
        if o % 60 == 0:  # the last product put in twice: a second line, alike, written with the others
            rows.append({**rows[-1], "created_at": rows[-1]["created_at"] + timedelta(milliseconds=3)})
    with db.engine.begin() as conn:
        conn.execute(orders.insert(), [{"id": o, "number": f"N{o}"} for o in range(1, 301)])
        conn.execute(products.insert(), [{"id": p, "name": f"p{p}"} for p in range(1, 101)])
        conn.execute(lines.insert(), rows)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "shop_orderline")
    assert finding["columns"] == ["order_id", "product_id"] and finding["severity"] == "medium", finding
    assert finding["check"] is None, finding
    assert "300 of 300 order_id with rows of several product_id had all of them written within 2s" \
        in finding["evidence"], finding


def test_a_like_withdrawn_and_given_again_is_no_copy_of_it(db: TestDatabase) -> None:
    """A Rails application soft-deleting with paranoia: reactions (user_id, post_id, both required, indexed apart;
    the one live reaction per user and post kept by the application), withdrawing a like sets deleted_at. A user
    who liked, withdrew and liked again within a second left two rows alike in every compared column, deleted_at
    being a date and time: a high finding with a live check, whose fix may keep the withdrawn like and delete the
    live one. Whether a row holds a deleted_at tells them apart: medium, check drafted, naming deleted_at."""
    md = sa.MetaData()
    users = sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(50), nullable=False))
    posts = sa.Table("posts", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("title", sa.String(50), nullable=False))
    reactions = sa.Table("reactions", md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
                         sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id"), nullable=False, index=True),
                         sa.Column("kind", sa.String(10), nullable=False),
                         sa.Column("weight", sa.Integer, nullable=False),
                         sa.Column("created_at", MOMENT, nullable=False), sa.Column("deleted_at", MOMENT))
    md.create_all(db.engine)
    rows: list[dict[str, Any]] = [
        {"user_id": u, "post_id": (u * 7 + k * 31) % 400 + 1, "kind": "like", "weight": 1,
         "created_at": T0 + timedelta(days=k, minutes=u), "deleted_at": None} for u in range(1, 201) for k in range(3)]
    for toggled in rows[5:600:120]:  # liked, withdrawn 0.5 s later, liked again 0.4 s after that
        toggled["deleted_at"] = toggled["created_at"] + timedelta(milliseconds=500)
        rows.append({**toggled, "created_at": toggled["created_at"] + timedelta(milliseconds=900), "deleted_at": None})
    with db.engine.begin() as conn:
        conn.execute(users.insert(), [{"id": u, "name": f"u{u}"} for u in range(1, 201)])
        conn.execute(posts.insert(), [{"id": p, "title": f"p{p}"} for p in range(1, 401)])
        conn.execute(reactions.insert(), rows)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "reactions")
    assert finding["columns"] == ["user_id", "post_id"] and finding["severity"] == "medium", finding
    assert finding["check"] is None and "0 of them alike" in finding["evidence"], finding
    assert "deleted_at" in finding["evidence"], finding


def test_a_pair_unique_among_live_rows_by_a_partial_index_is_no_suspect(db: TestDatabase) -> None:
    """The same reactions where the schema keeps one live reaction per user and post (PostgreSQL's and SQLite's
    partial unique index WHERE deleted_at IS NULL; MariaDB has none): no two live rows can repeat the pair, and the
    withdrawn ones repeat it by design. The audit said "no unique key covers them together" and reported the
    toggles: no candidate, no finding."""
    if db.dialect == "mysql":
        pytest.skip("MariaDB has no partial index")
    md = sa.MetaData()
    sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("posts", md, sa.Column("id", sa.Integer, primary_key=True))
    reactions = sa.Table("reactions", md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
                         sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id"), nullable=False, index=True),
                         sa.Column("kind", sa.String(10), nullable=False),
                         sa.Column("weight", sa.Integer, nullable=False),
                         sa.Column("created_at", MOMENT, nullable=False), sa.Column("deleted_at", MOMENT))
    live = reactions.c.deleted_at.is_(None)
    sa.Index("one_live_reaction", reactions.c.user_id, reactions.c.post_id, unique=True, postgresql_where=live,
             sqlite_where=live)
    md.create_all(db.engine)
    rows: list[dict[str, Any]] = [
        {"user_id": u, "post_id": (u * 7 + k * 31) % 400 + 1, "kind": "like", "weight": 1,
         "created_at": T0 + timedelta(days=k, minutes=u), "deleted_at": None} for u in range(1, 201) for k in range(3)]
    for toggled in rows[5:600:120]:  # liked, withdrawn, liked again: the same row twice, alike but deleted_at
        toggled["deleted_at"] = toggled["created_at"] + timedelta(milliseconds=500)
        rows.append({**toggled, "created_at": toggled["created_at"] + timedelta(milliseconds=900), "deleted_at": None})
    with db.engine.begin() as conn:
        conn.execute(md.tables["users"].insert(), [{"id": u} for u in range(1, 201)])
        conn.execute(md.tables["posts"].insert(), [{"id": p} for p in range(1, 401)])
        conn.execute(reactions.insert(), rows)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert on(run.json, "reactions") == [], run.json


def test_entries_alike_but_in_a_column_never_compared_get_no_live_check(db: TestDatabase) -> None:
    """An audit log (django-auditlog's shape: each entry its object, required, its action and its diff as JSON):
    most objects are edited once; an editor's autosave wrote four objects' second entry a second later, with its
    own diff. JSON is not compared (no portable equality), so the entries were "alike in every other column" and
    born together: a high finding with a live check, whose fix deletes an entry of the log (PostgreSQL, SQLite;
    MariaDB's JSON is text, compared). The check is drafted, and the evidence names the column not compared."""
    md = sa.MetaData()
    sa.Table("posts", md, sa.Column("id", sa.Integer, primary_key=True))
    log = sa.Table("auditlog_entry", md, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id"), nullable=False, index=True),
                   sa.Column("action", sa.String(10), nullable=False), sa.Column("changes", sa.JSON, nullable=False),
                   sa.Column("timestamp", MOMENT, nullable=False))
    md.create_all(db.engine)
    rows: list[dict[str, Any]] = [{"post_id": p, "action": "update", "changes": {"title": [f"a{p}", f"b{p}"]},
                                   "timestamp": T0 + timedelta(minutes=37 * p)} for p in range(1, 401)]
    rows += [{**rows[p - 1], "changes": {"body": ["x", "y"]},
              "timestamp": rows[p - 1]["timestamp"] + timedelta(seconds=1)} for p in range(10, 400, 100)]
    with db.engine.begin() as conn:
        conn.execute(md.tables["posts"].insert(), [{"id": p} for p in range(1, 401)])
        conn.execute(log.insert(), rows)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    [finding] = on(run.json, "auditlog_entry")
    assert finding["columns"] == ["post_id"] and finding["check"] is None, finding
    # where JSON is not compared, the evidence says so; where it is (MariaDB), the entries differ
    assert "4 of them alike in every other column (changes not compared)" in finding["evidence"] \
        or "0 of them alike" in finding["evidence"], finding
