"""Copies inside a nullable unique key's design groups (`unique_with_nullable_columns`, `copies_only`): rows alike in
every compared column and written within BURST_SECONDS are a high finding whose check merges them. Only when the
data can tell: rows written all at once (a seeding script, fixtures, an import), values that repeat by design among
rows born apart (anonymous votes), or columns the comparison leaves out (a float, a JSON document) are no evidence
that such rows are copies. Plain SQL, on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dbtest import TestDatabase, run_dupewatch

T0 = datetime(2026, 8, 2, 9, 0)


def on(report: dict[str, Any], table: str, kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] == table and f["kind"] == kind]


def reviews_table(db: TestDatabase, extra: str = "") -> None:
    db.execute("CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE reviews_productreview (id INTEGER PRIMARY KEY, "
               "product_id INTEGER NULL REFERENCES catalogue_product (id), user_id INTEGER NULL, "
               f"score SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, {extra}"
               "date_created TIMESTAMP NULL, UNIQUE (product_id, user_id))")
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 21)])


def insert(db: TestDatabase, table: str, rows: list[dict[str, Any]]) -> None:
    names = list(rows[0])
    db.execute(f"INSERT INTO {table} (id, {', '.join(names)}) VALUES (:id, {', '.join(':' + n for n in names)})",
               params=[{"id": i, **r} for i, r in enumerate(rows, 1)])


def not_live_high(findings: list[dict[str, Any]]) -> None:
    for f in findings:
        assert not (f["severity"] == "high" or (f["check"] is not None and f["duplicate_groups"])), f


def test_rows_all_written_in_one_second_are_no_evidence_of_copies(db: TestDatabase, tmp_path: Path) -> None:
    """A seeding script (or fixtures, an import) wrote every review within one second: guests' reviews per product
    differ, and two guests who both wrote "Great" with score 5 on one product look born together only because
    everything was. The birth timestamps tell nothing (as `_bursts` says of such data): no high finding, no live
    check merging the two guests' reviews."""
    reviews_table(db)
    reviews = [{"product_id": p, "user_id": u, "score": (p + u) % 5 + 1, "title": f"review {p} {u}", "name": "",
                "date_created": T0 + timedelta(milliseconds=10 * (p * 5 + u))}
               for p in range(1, 21) for u in range(1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": f"guest {p} {g}", "name": f"Guest {g}",
                 "date_created": T0 + timedelta(milliseconds=5 * (p * 3 + g))}
                for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "Great", "name": "Guest",
                 "date_created": T0 + timedelta(milliseconds=ms)} for ms in (700, 900)]
    insert(db, "reviews_productreview", reviews)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    not_live_high(on(run.json, "reviews_productreview", "unique_with_nullable_columns"))


def test_values_repeated_by_design_among_rows_born_apart_are_no_evidence(db: TestDatabase, tmp_path: Path) -> None:
    """Anonymous votes (user_id NULL) under UNIQUE (review_id, user_id): a vote says +1 or -1, so visitors' votes on
    one review are alike in every compared column, born days apart, all the time. Two visitors' upvotes within one
    second on one review are then two votes, not a copy: equality in a column whose values repeat by design among
    rows born apart proves nothing. No high finding, no live check merging them."""
    db.execute("CREATE TABLE reviews_review (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE reviews_vote (id INTEGER PRIMARY KEY, "
               "review_id INTEGER NOT NULL REFERENCES reviews_review (id), user_id INTEGER NULL, "
               "delta SMALLINT NOT NULL, date_created TIMESTAMP NULL, UNIQUE (review_id, user_id))")
    db.execute("INSERT INTO reviews_review (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"r{i}"} for i in range(1, 22)])
    votes = [{"review_id": r, "user_id": u, "delta": 1 if (r + u) % 3 else -1,
              "date_created": T0 + timedelta(days=r, hours=u)} for r in range(1, 21) for u in range(1, 4)]
    # visitors' votes: a few per review, days apart, each +1 or -1
    votes += [{"review_id": r, "user_id": None, "delta": 1 if (r + v) % 4 else -1,
               "date_created": T0 + timedelta(days=r + 3 * v)} for r in range(1, 21) for v in range(4)]
    # a new review: a visitor downvotes it, then two visitors upvote it within the same second
    votes += [{"review_id": 21, "user_id": None, "delta": delta,
               "date_created": T0 + timedelta(days=90, milliseconds=ms)}
              for delta, ms in ((-1, 0), (1, 86_400_000), (1, 86_400_600))]
    insert(db, "reviews_vote", votes)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    not_live_high(on(run.json, "reviews_vote", "unique_with_nullable_columns"))


def test_columns_left_out_of_the_comparison_keep_rows_that_differ_apart(db: TestDatabase, tmp_path: Path) -> None:
    """A guest's two reviews of one product within one second alike in every compared column but a float `rating`
    (left out of the comparison: no portable equality) that differs: they are not shown to be copies, and a check
    keyed by the compared columns would merge them, losing the second rating. No live check merging them."""
    reviews_table(db, "rating REAL NOT NULL, ")
    reviews = [{"product_id": p, "user_id": u, "score": (p + u) % 5 + 1, "title": f"review {p} {u}", "name": "",
                "rating": 1.5, "date_created": T0 + timedelta(days=p, hours=u)}
               for p in range(1, 21) for u in range(1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": f"guest {p} {g}", "name": f"Guest {g}",
                 "rating": 2.5, "date_created": T0 + timedelta(days=p + 10 * g)}
                for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "Great", "name": "Ann", "rating": rating,
                 "date_created": T0 + timedelta(days=50, milliseconds=ms)} for ms, rating in ((0, 4.5), (400, 1.0))]
    insert(db, "reviews_productreview", reviews)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    for f in on(run.json, "reviews_productreview", "unique_with_nullable_columns"):
        assert f["check"] is None or "rating" in f["check"]["key"] or not f["duplicate_groups"], f


def test_a_status_key_per_parent_whose_rows_a_request_writes_together_is_no_race(db: TestDatabase) -> None:
    """Oscar's order_line(order_id NOT NULL, product_id NULL, status): keyed per its required parent, product_id and
    status become (product_id, order_id) per status, one line per product in nearly every order. An order's lines
    are written in one request, so an order's two lines of one product (two options, kept in another table) are
    alike and born together like race copies, and so are all of the order's other lines: bursts there tell a
    request's children, not a race. Without the parent (main) no finding; with it, a high finding whose live
    check merged the two lines. No high finding, no live check."""
    db.execute("CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE order_order (id INTEGER PRIMARY KEY, number VARCHAR(20) NOT NULL)",
               "CREATE TABLE order_line (id INTEGER PRIMARY KEY, "
               "order_id INTEGER NOT NULL REFERENCES order_order (id), "
               "product_id INTEGER NULL REFERENCES catalogue_product (id), title VARCHAR(40) NOT NULL, "
               "quantity INTEGER NOT NULL, status VARCHAR(20) NOT NULL, date_created TIMESTAMP NOT NULL)",
               "CREATE INDEX line_order ON order_line (order_id)",
               "CREATE INDEX line_product ON order_line (product_id)")
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 21)])
    db.execute("INSERT INTO order_order (id, number) VALUES (:id, :number)",
               params=[{"id": o, "number": f"N{o}"} for o in range(1, 41)])
    lines = []
    for order in range(1, 41):
        products = [(order + 3 * k) % 20 + 1 for k in range(1 + order % 3)]
        if order % 10 == 0:
            products.append(products[0])  # the same book twice, with another option
        lines += [{"order_id": order, "product_id": p, "title": f"Book {p}", "quantity": 1,
                   "status": "Pending" if order > 30 else "Complete",
                   "date_created": T0 + timedelta(days=order, milliseconds=3 * i)} for i, p in enumerate(products)]
    insert(db, "order_line", lines)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    not_live_high(on(run.json, "order_line", "key_with_status"))


def test_the_copies_check_leaves_out_the_rows_the_key_gave_no_value(db: TestDatabase, tmp_path: Path) -> None:
    """UNIQUE (product_id, user_id), both nullable (a deleted product's reviews keep product_id NULL): the copies are
    measured among rows with some but not every key column NULL. Keyed by every compared column too, `nulls =
    "skip_all_null"` no longer leaves out a row NULL in both (its title is not NULL), so the check grouped two
    guests' alike reviews of deleted products, written days apart, which the audit never measured, and its fix
    would merge them. The check finds the copy, and only it."""
    reviews_table(db)
    reviews = [{"product_id": p, "user_id": u, "score": (p + u) % 5 + 1, "title": f"review {p} {u}", "name": "",
                "date_created": T0 + timedelta(days=p, hours=u)} for p in range(1, 21) for u in range(1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": f"guest {p} {g}", "name": f"Guest {g}",
                 "date_created": T0 + timedelta(days=p + 10 * g)} for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "Great", "name": "Ann",
                 "date_created": T0 + timedelta(days=50, milliseconds=ms)} for ms in (0, 400)]
    # two guests' reviews of products deleted since: alike, written weeks apart
    reviews += [{"product_id": None, "user_id": None, "score": 5, "title": "Great", "name": "Guest",
                 "date_created": T0 + timedelta(days=d)} for d in (3, 40)]
    insert(db, "reviews_productreview", reviews)
    target = tmp_path / "dupewatch.toml"
    run = run_dupewatch("audit", "--url", db.url, "--json", "--write", target)
    assert run.code == 1, run.output
    [finding] = on(run.json, "reviews_productreview", "unique_with_nullable_columns")
    assert finding["severity"] == "high" and finding["duplicate_groups"] == 1, finding
    check = finding["check"]
    assert check is not None, finding
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": db.url})
    result = next(r for r in checked.json["checks"] if r["name"] == check["name"])
    assert (result["groups"], result["excess_rows"]) == (1, 1), (result, check)


def test_alike_rows_a_request_writes_with_their_siblings_are_no_copies(db: TestDatabase) -> None:
    """An order's ledger lines, UNIQUE (order_id, external_ref), external_ref NULL for a line entered by hand: an
    order's manual lines are added days apart (the design), but one checkout wrote three lines at once, two of them
    the same gift wrap. Alike and born together, like copies, but so was their different sibling: one request's
    children (a bulk_create), not a race. No high finding, no live check merging the two gift wraps."""
    db.execute("CREATE TABLE shop_order (id INTEGER PRIMARY KEY, number VARCHAR(20) NOT NULL)",
               "CREATE TABLE ledger_line (id INTEGER PRIMARY KEY, "
               "order_id INTEGER NOT NULL REFERENCES shop_order (id), external_ref VARCHAR(40) NULL, "
               "description VARCHAR(80) NOT NULL, amount_cents INTEGER NOT NULL, date_created TIMESTAMP NOT NULL, "
               "UNIQUE (order_id, external_ref))")
    db.execute("INSERT INTO shop_order (id, number) VALUES (:id, :number)",
               params=[{"id": o, "number": f"N{o}"} for o in range(1, 22)])
    lines = [{"order_id": o, "external_ref": f"psp-{o}", "description": "card payment", "amount_cents": 1000 + o,
              "date_created": T0 + timedelta(days=o)} for o in range(1, 21)]
    lines += [{"order_id": o, "external_ref": None, "description": f"adjustment {k}", "amount_cents": 100 * k + o,
               "date_created": T0 + timedelta(days=o + 2 * k)} for o in range(1, 21) for k in range(2)]
    lines += [{"order_id": 21, "external_ref": None, "description": description, "amount_cents": cents,
               "date_created": T0 + timedelta(days=60, milliseconds=ms)}
              for description, cents, ms in (("gift wrap", 300, 0), ("gift wrap", 300, 4), ("shipping", 500, 8))]
    insert(db, "ledger_line", lines)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    not_live_high(on(run.json, "ledger_line", "unique_with_nullable_columns"))


def test_copies_are_dated_by_a_creation_time_only(db: TestDatabase) -> None:
    """The reviews' only timestamp is `updated_at`: a moderator approving two guests' alike reviews (five stars,
    "Great", no name) in one pass writes them within one second, reviews posted weeks apart. Rows alike and
    *updated* together were not shown written together: no high finding, no live check merging them."""
    db.execute("CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE reviews_productreview (id INTEGER PRIMARY KEY, "
               "product_id INTEGER NOT NULL REFERENCES catalogue_product (id), user_id INTEGER NULL, "
               "score SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, "
               "updated_at TIMESTAMP NULL, UNIQUE (product_id, user_id))")
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 21)])
    reviews = [{"product_id": p, "user_id": None, "score": 3, "title": f"guest {p} {g}", "name": f"Guest {g}",
                "updated_at": T0 + timedelta(days=p + 10 * g)} for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "Great", "name": "",
                 "updated_at": T0 + timedelta(days=50, milliseconds=ms)} for ms in (0, 400)]
    insert(db, "reviews_productreview", reviews)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code in (0, 1), run.output
    not_live_high(on(run.json, "reviews_productreview", "unique_with_nullable_columns"))


def test_a_copies_check_does_not_hide_findings_it_does_not_watch(db: TestDatabase) -> None:
    """A finding counted beside a nullable unique key is folded into that key's finding when the key's check
    watches its groups. The copies check of the key's design groups is keyed by every compared column too: it does
    not watch a guest's two reviews of one product titled alike, posted 300 ms apart with another body, which the
    lookup index (product_id, title) finds. That finding stays."""
    db.execute("CREATE TABLE catalogue_product (id INTEGER PRIMARY KEY, title VARCHAR(40) NOT NULL)",
               "CREATE TABLE reviews_productreview (id INTEGER PRIMARY KEY, "
               "product_id INTEGER NOT NULL REFERENCES catalogue_product (id), user_id INTEGER NULL, "
               "score SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, body VARCHAR(255) NOT NULL, "
               "date_created TIMESTAMP NULL, UNIQUE (product_id, user_id))",
               "CREATE INDEX review_title ON reviews_productreview (product_id, title)")
    db.execute("INSERT INTO catalogue_product (id, title) VALUES (:id, :title)",
               params=[{"id": i, "title": f"Book {i}"} for i in range(1, 21)])
    reviews = [{"product_id": p, "user_id": u, "score": (p + u) % 5 + 1, "title": f"review {p} {u}",
                "body": f"body {p} {u}", "date_created": T0 + timedelta(days=p, hours=u)}
               for p in range(1, 21) for u in range(1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": f"guest {p} {g}", "body": f"guest {p} {g}",
                 "date_created": T0 + timedelta(days=p + 10 * g)} for p in range(1, 21) for g in range(2)]
    reviews += [{"product_id": 5, "user_id": None, "score": 5, "title": "Great", "body": "loved it",
                 "date_created": T0 + timedelta(days=50, milliseconds=ms)} for ms in (0, 400)]
    reviews += [{"product_id": 8, "user_id": None, "score": 5, "title": "Great", "body": body,
                 "date_created": T0 + timedelta(days=52, milliseconds=ms)}
                for body, ms in (("loved it", 0), ("loved it, fast delivery", 300))]
    insert(db, "reviews_productreview", reviews)
    run = run_dupewatch("audit", "--url", db.url, "--json")
    assert run.code == 1, run.output
    [copies] = on(run.json, "reviews_productreview", "unique_with_nullable_columns")
    assert copies["severity"] == "high" and copies["check"] is not None, copies
    titled = on(run.json, "reviews_productreview", "non_unique_natural_key")
    assert [f["duplicate_groups"] for f in titled] == [2], run.json["findings"]
