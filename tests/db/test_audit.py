"""`dupewatch audit` / `init` against realistic application schemas on PostgreSQL, MariaDB and SQLite.

Each schema plants one problem of every kind the database can have, next to clean look-alikes that a
careless heuristic would flag; the tests assert both what is found and what is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbtest import TestDatabase, run_dupewatch
from monitor.audit import run_audit

USERS = 200
EXTRA_PROFILES = (7, 42)  # users whose profile a racing get_or_create created twice
LOGIN_DUPES = 3  # users whose NULL-device login source was inserted twice
CHECKIN_DUPES = 4  # users who checked in twice on one day (a double click)
MEMBERSHIP_DUPES = [(1 + u % 10, u) for u in (3, 5)]  # (group, user) pairs in groups_users twice
CUSTOMERS, ORDERS_PER_CUSTOMER = 40, 6


def build_application(db: TestDatabase) -> None:
    """A Django app (auth, profiles, Pretix login sources, a shop, M2M tags), a Rails app (no declared foreign
    keys, a HABTM join table) and SQLAlchemy-style tables (singular names, composite-key associations)."""
    md = sa.MetaData()
    _django_tables(md, db)
    _rails_tables(md)
    _sqlalchemy_tables(md, db)
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        _django_rows(conn, md)
        _rails_rows(conn, md)
        _sqlalchemy_rows(conn, md, db)


def _django_tables(md: sa.MetaData, db: TestDatabase) -> None:
    sa.Table("auth_user", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("username", sa.String(150), nullable=False, unique=True))
    # ForeignKey(db_index=True) gives Django's plain index on user_id: the get_or_create profile case
    sa.Table("accounts_profile", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), nullable=False, index=True),
             sa.Column("bio", sa.String(200)))
    # OneToOneField: unique, the clean look-alike of the profile
    sa.Table("accounts_settings", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), nullable=False, unique=True),
             sa.Column("theme", sa.String(20)))
    def login_columns() -> list[sa.Column[Any]]:
        return [sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), nullable=False),
                sa.Column("agent_type", sa.String(50), nullable=False),
                sa.Column("device_type", sa.String(50), nullable=True),
                sa.Column("os_type", sa.String(50), nullable=False),
                sa.Column("last_seen", sa.DateTime)]

    # The Pretix table: unique_together with a nullable device_type
    sa.Table("pretix_userknownloginsource", md, *login_columns(),
             sa.UniqueConstraint("user_id", "agent_type", "device_type", "os_type", name="uq_pretix_login"))
    # Same shape, no NULL duplicates in it: clean
    sa.Table("pretix_staffloginsource", md, *login_columns(),
             sa.UniqueConstraint("user_id", "agent_type", "device_type", "os_type", name="uq_pretix_staff"))
    sa.Table("shop_customer", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    # Many orders per customer and status by design, with the same index shape as a natural key
    sa.Table("shop_order", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("customer_id", sa.Integer, sa.ForeignKey("shop_customer.id"), nullable=False),
             sa.Column("status", sa.String(20), nullable=False), sa.Column("total", sa.Integer),
             sa.Column("created_at", sa.DateTime),
             sa.Index("shop_order_customer_status_idx", "customer_id", "status"))
    sa.Table("blog_tag", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    sa.Table("blog_post", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(50)))
    # ManyToManyField: surrogate id plus unique_together, clean
    sa.Table("blog_post_tags", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("post_id", sa.Integer, sa.ForeignKey("blog_post.id"), nullable=False),
             sa.Column("tag_id", sa.Integer, sa.ForeignKey("blog_tag.id"), nullable=False),
             sa.UniqueConstraint("post_id", "tag_id", name="blog_post_tags_uniq"))


def _rails_tables(md: sa.MetaData) -> None:
    # Rails: plural names, bigint ids, no foreign key constraints, index_<table>_on_<columns>
    sa.Table("users", md, sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
             sa.Column("email", sa.String(100)))
    sa.Table("groups", md, sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
             sa.Column("name", sa.String(100)))
    # has_and_belongs_to_many without a unique index: the Aleph role_membership case
    sa.Table("groups_users", md, sa.Column("group_id", sa.BigInteger, nullable=False),
             sa.Column("user_id", sa.BigInteger, nullable=False))
    # has_many :through with its unique index: clean
    sa.Table("memberships", md, sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
             sa.Column("user_id", sa.BigInteger, nullable=False), sa.Column("group_id", sa.BigInteger, nullable=False),
             sa.Column("created_at", sa.DateTime),
             sa.Index("index_memberships_on_user_id_and_group_id", "user_id", "group_id", unique=True))
    # find_or_create_by(user_id:, day:): the Flask/Rails double-click check-in
    sa.Table("checkins", md, sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
             sa.Column("user_id", sa.BigInteger, nullable=False), sa.Column("day", sa.Date, nullable=False),
             sa.Column("created_at", sa.DateTime),
             sa.Index("index_checkins_on_user_id_and_day", "user_id", "day"))
    # Many comments per user: an index on user_id that is not one-to-one
    sa.Table("comments", md, sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
             sa.Column("user_id", sa.BigInteger, nullable=False), sa.Column("body", sa.String(200)),
             sa.Index("index_comments_on_user_id", "user_id"))


def _sqlalchemy_tables(md: sa.MetaData, db: TestDatabase) -> None:
    sa.Table("keyword", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("keyword", sa.String(64)))
    # association table with a composite primary key: clean
    sa.Table("user_keyword", md, sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), primary_key=True),
             sa.Column("keyword_id", sa.Integer, sa.ForeignKey("keyword.id"), primary_key=True))
    # an append-only log without a primary key (not a link table)
    sa.Table("event_log", md, sa.Column("logged_at", sa.DateTime), sa.Column("message", sa.String(200)))
    if db.dialect != "postgresql":
        # MySQL/MariaDB (InnoDB) and SQLite accept a foreign key to a column that is merely indexed
        sa.Table("currency", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("code", sa.String(3), nullable=False), sa.Index("ix_currency_code", "code"))
        sa.Table("price", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("currency_code", sa.String(3), nullable=False), sa.Column("amount", sa.Integer),
                 sa.ForeignKeyConstraint(["currency_code"], ["currency.code"]))


def _django_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["auth_user"].insert(), [{"id": i, "username": f"user{i}"} for i in range(1, USERS + 1)])
    profiles = [{"user_id": i, "bio": "hi"} for i in range(1, USERS + 1)]
    raced = [{"user_id": u, "bio": "hi"} for u in EXTRA_PROFILES]  # racing copies are alike
    conn.execute(t["accounts_profile"].insert(), profiles + raced)
    conn.execute(t["accounts_settings"].insert(), [{"user_id": i, "theme": "dark"} for i in range(1, USERS + 1)])
    now = datetime(2026, 11, 1, 12, 0)
    logins = [{"user_id": i, "agent_type": "Firefox", "device_type": None, "os_type": "Linux", "last_seen": now}
              for i in range(1, 51)]
    logins += [{"user_id": i, "agent_type": "Safari", "device_type": "iPhone", "os_type": "iOS", "last_seen": now}
               for i in range(1, 51)]
    raced = [dict(row, last_seen=now + timedelta(milliseconds=5)) for row in logins[:LOGIN_DUPES]]
    conn.execute(t["pretix_userknownloginsource"].insert(), logins + raced)
    conn.execute(t["pretix_staffloginsource"].insert(), logins)
    conn.execute(t["shop_customer"].insert(), [{"id": i, "name": f"c{i}"} for i in range(1, CUSTOMERS + 1)])
    conn.execute(t["shop_order"].insert(), [
        {"customer_id": c, "status": "paid" if n % 3 else "pending", "total": n, "created_at": now}
        for c in range(1, CUSTOMERS + 1) for n in range(ORDERS_PER_CUSTOMER)])
    conn.execute(t["blog_post"].insert(), [{"id": i, "title": "p"} for i in range(1, 21)])
    conn.execute(t["blog_tag"].insert(), [{"id": i, "name": "t"} for i in range(1, 6)])
    conn.execute(t["blog_post_tags"].insert(), [{"post_id": p, "tag_id": g} for p in range(1, 21) for g in (1, 2)])


def _rails_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["users"].insert(), [{"id": i, "email": f"u{i}@x"} for i in range(1, USERS + 1)])
    conn.execute(t["groups"].insert(), [{"id": i, "name": f"g{i}"} for i in range(1, 11)])
    pairs = [{"group_id": 1 + u % 10, "user_id": u} for u in range(1, USERS + 1)]
    conn.execute(t["groups_users"].insert(), pairs + [{"group_id": g, "user_id": u} for g, u in MEMBERSHIP_DUPES])
    conn.execute(t["memberships"].insert(), [{"user_id": u, "group_id": 1 + u % 10} for u in range(1, USERS + 1)])
    day = date(2026, 11, 30)
    checkins = [{"user_id": u, "day": day - timedelta(days=d)} for u in range(1, 101) for d in range(3)]
    conn.execute(t["checkins"].insert(), checkins + [{"user_id": u, "day": day} for u in range(1, CHECKIN_DUPES + 1)])
    conn.execute(t["comments"].insert(), [{"user_id": 1 + n % 20, "body": "x"} for n in range(300)])


def _sqlalchemy_rows(conn: sa.Connection, md: sa.MetaData, db: TestDatabase) -> None:
    t = md.tables
    conn.execute(t["keyword"].insert(), [{"id": i, "keyword": f"k{i}"} for i in range(1, 11)])
    conn.execute(t["user_keyword"].insert(), [{"user_id": u, "keyword_id": 1 + u % 10} for u in range(1, 51)])
    conn.execute(t["event_log"].insert(), [{"logged_at": datetime(2026, 1, 1), "message": "m"}] * 3)
    if db.dialect != "postgresql":
        conn.execute(t["currency"].insert(), [{"code": c} for c in ("EUR", "USD", "GBP", "EUR")])
        conn.execute(t["price"].insert(), [{"currency_code": "EUR", "amount": 5},
                                           {"currency_code": "USD", "amount": 7}])


@pytest.fixture
def app_db(db: TestDatabase) -> Iterator[TestDatabase]:
    build_application(db)
    yield db


def found(report: dict[str, Any], kind: str, table: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind and f["table"].rsplit(".", 1)[1] == table]


def only(report: dict[str, Any], kind: str, table: str) -> dict[str, Any]:
    matches = found(report, kind, table)
    assert len(matches) == 1, f"{kind} on {table}: {matches}"
    return matches[0]


def audit_json(db: TestDatabase, *args: str) -> tuple[int, dict[str, Any]]:
    run = run_dupewatch("audit", "--url", db.url, "--json", *args)
    assert run.code in (0, 1), run.output
    return run.code, run.json


def test_audit_finds_every_planted_problem_with_measured_duplicates(app_db: TestDatabase) -> None:
    code, report = audit_json(app_db)
    assert code == 1

    profile = only(report, "one_to_one_suspect", "accounts_profile")
    assert profile["columns"] == ["user_id"]
    assert (profile["duplicate_groups"], profile["excess_rows"]) == (len(EXTRA_PROFILES), len(EXTRA_PROFILES))
    assert profile["severity"] == "high" and profile["estimated"] is False

    login = only(report, "unique_with_nullable_columns", "pretix_userknownloginsource")
    assert login["columns"] == ["user_id", "agent_type", "device_type", "os_type"]
    assert (login["duplicate_groups"], login["excess_rows"]) == (LOGIN_DUPES, LOGIN_DUPES)
    assert login["severity"] == "high"

    link = only(report, "link_table_without_unique", "groups_users")
    assert link["columns"] == ["group_id", "user_id"]
    assert (link["duplicate_groups"], link["excess_rows"]) == (len(MEMBERSHIP_DUPES), len(MEMBERSHIP_DUPES))
    assert link["severity"] == "high"

    checkin = only(report, "non_unique_natural_key", "checkins")
    assert checkin["columns"] == ["user_id", "day"]
    assert (checkin["duplicate_groups"], checkin["excess_rows"]) == (CHECKIN_DUPES, CHECKIN_DUPES)
    assert checkin["severity"] == "high"

    for table in ("groups_users", "event_log"):
        assert only(report, "no_primary_key", table)["severity"] == "low"
    assert {f["table"].rsplit(".", 1)[1] for f in report["findings"] if f["kind"] == "no_primary_key"} \
        == {"groups_users", "event_log"}


def test_audit_leaves_clean_look_alikes_alone(app_db: TestDatabase) -> None:
    _code, report = audit_json(app_db)
    reported = {f["table"].rsplit(".", 1)[1] for f in report["findings"]}
    clean = {"accounts_settings", "blog_post_tags", "memberships", "user_keyword", "comments", "auth_user", "users",
             "keyword"}
    assert reported.isdisjoint(clean), [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] in clean]
    # many orders per customer (and per customer and status) is the design, never a finding, never high
    assert found(report, "one_to_one_suspect", "shop_order") == []
    assert found(report, "non_unique_natural_key", "shop_order") == []
    assert all(f["severity"] != "high" or f["duplicate_groups"] or f["kind"] == "invalid_unique_index"
               for f in report["findings"])


def test_audit_reports_foreign_keys_to_non_unique_columns(app_db: TestDatabase) -> None:
    _code, report = audit_json(app_db)
    if app_db.dialect == "postgresql":
        assert [f for f in report["findings"] if f["kind"] == "foreign_key_to_non_unique"] == []
        return
    finding = only(report, "foreign_key_to_non_unique", "currency")
    assert finding["columns"] == ["code"]
    assert (finding["duplicate_groups"], finding["severity"]) == (1, "high")
    assert "price(currency_code)" in finding["evidence"]


def test_json_document_has_the_contract_shape(app_db: TestDatabase) -> None:
    _code, report = audit_json(app_db)
    assert set(report) == {"findings", "tables", "candidates", "duration_ms"}
    assert report["tables"] == len(sa.inspect(app_db.engine).get_table_names())
    assert report["candidates"] >= len(report["findings"])
    keys = {"kind", "table", "columns", "severity", "duplicate_groups", "excess_rows", "estimated", "evidence",
            "check"}
    for finding in report["findings"]:
        assert set(finding) == keys
        assert "\n" not in finding["evidence"]
        assert finding["table"].count(".") == 1
    ranks = [{"high": 0, "medium": 1, "low": 2}[f["severity"]] for f in report["findings"]]
    assert ranks == sorted(ranks)
    link = only(report, "link_table_without_unique", "groups_users")
    assert link["check"]["key"] == ["group_id", "user_id"] and link["check"]["table"].endswith(".groups_users")
    assert only(report, "no_primary_key", "event_log")["check"] is None


def test_human_table_lists_worst_first(app_db: TestDatabase) -> None:
    run = run_dupewatch("audit", "--url", app_db.url)
    assert run.code == 1, run.output
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["SEVERITY", "KIND", "TABLE"]
    body = [line.split()[0] for line in lines[1:] if line and line.split()[0] in ("high", "medium", "low")]
    assert body[0] == "high" and body == sorted(body, key=["high", "medium", "low"].index)
    assert "groups_users" in run.stdout and "audited" in lines[-1]


def test_written_config_runs_with_check_and_finds_the_same_duplicates(app_db: TestDatabase, tmp_path: Path) -> None:
    target = tmp_path / "dupewatch.toml"
    run = run_dupewatch("audit", "--url", app_db.url, "--write", target)
    assert run.code == 1, run.output
    text = target.read_text()
    assert "url_env = \"DUPEWATCH_URL\"" in text and "url = " not in text
    checks = text.count("[[checks]]")
    assert checks >= 4 and text.count("\n# ") >= checks  # a comment per check
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": app_db.url})
    assert checked.code == 1, checked.output
    by_table = {r["name"]: r for r in checked.json["checks"]}
    assert all(r["status"] != "error" for r in by_table.values()), checked.stdout
    assert by_table["groups_users-group_id-user_id"]["groups"] == len(MEMBERSHIP_DUPES)
    assert by_table["accounts_profile-user_id"]["groups"] == len(EXTRA_PROFILES)
    assert by_table["pretix_userknownloginsource"]["groups"] == LOGIN_DUPES


def test_write_refuses_to_overwrite(app_db: TestDatabase, tmp_path: Path) -> None:
    target = tmp_path / "existing.toml"
    target.write_text("# mine\n")
    run = run_dupewatch("audit", "--url", app_db.url, "--write", target)
    assert run.code == 2
    assert "refusing to overwrite" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert target.read_text() == "# mine\n"


def test_init_writes_dupewatch_toml_in_the_current_directory(app_db: TestDatabase, tmp_path: Path) -> None:
    run = run_dupewatch("init", "--url", app_db.url, cwd=tmp_path)
    assert run.code == 0, run.output  # so that `dupewatch init --url ... && dupewatch` goes on to the dashboard
    assert "high" in run.stdout and "groups_users" in run.stdout
    written = tmp_path / "dupewatch.toml"
    assert "[[checks]]" in written.read_text()
    again = run_dupewatch("init", "--url", app_db.url, cwd=tmp_path)
    assert again.code == 2 and "refusing to overwrite" in again.stderr


def test_clean_schema_exits_zero(db: TestDatabase) -> None:
    md = sa.MetaData()
    sa.Table("auth_user", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("username", sa.String(50)))
    sa.Table("accounts_settings", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("auth_user.id"), unique=True))
    md.create_all(db.engine)
    code, report = audit_json(db)
    assert code == 0 and report["findings"] == []


def test_unreachable_database_is_one_line_with_the_password_masked() -> None:
    run = run_dupewatch("audit", "--url", "postgresql://auditor:s3cr3t-pw@127.0.0.1:1/app")
    assert run.code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "s3cr3t-pw" not in run.output and "***" in run.stderr


def test_bad_budget_and_unknown_schema_are_one_line_errors(db: TestDatabase) -> None:
    db.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY)")
    run = run_dupewatch("audit", "--url", db.url, "--budget", "soon")
    assert run.code == 2 and run.stderr.startswith("dupewatch: error: --budget")
    missing = run_dupewatch("audit", "--url", db.url, "--schema", "no_such_schema_here")
    assert missing.code == 2 and "no_such_schema_here" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_audit_is_read_only(app_db: TestDatabase) -> None:
    before = {t: app_db.scalar(f"SELECT count(*) FROM {app_db.q(t)}")
              for t in sa.inspect(app_db.engine).get_table_names()}
    audit_json(app_db)
    after = {t: app_db.scalar(f"SELECT count(*) FROM {app_db.q(t)}")
             for t in sa.inspect(app_db.engine).get_table_names()}
    assert after == before


def test_a_spent_budget_leaves_candidates_unmeasured_and_never_high(app_db: TestDatabase) -> None:
    report = run_audit(app_db.url, budget=0.001)
    assert report.findings
    for finding in report.findings:
        assert finding.duplicate_groups is None
        assert finding.severity != "high"
    assert any("budget was spent" in f.evidence for f in report.findings)


def test_big_tables_are_estimated_from_a_sample(db: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.audit import measure

    md = sa.MetaData()
    sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("groups", md, sa.Column("id", sa.Integer, primary_key=True))
    link = sa.Table("groups_users", md, sa.Column("group_id", sa.Integer), sa.Column("user_id", sa.Integer))
    md.create_all(db.engine)
    rows = [{"group_id": n % 50, "user_id": n // 50} for n in range(20_000)]
    with db.engine.begin() as conn:
        conn.execute(md.tables["users"].insert(), [{"id": i} for i in range(1, 401)])
        conn.execute(md.tables["groups"].insert(), [{"id": i} for i in range(1, 51)])
        for start in range(0, len(rows), 2_000):  # every 10th pair twice, inserted together as a race would
            chunk = rows[start:start + 2_000]
            conn.execute(link.insert(), [r for i, r in enumerate(chunk) for _ in range(2 if i % 10 == 0 else 1)])
    if db.dialect == "postgresql":
        db.execute("ANALYZE groups_users")
    monkeypatch.setattr(measure, "EXACT_ROW_LIMIT", 1_000)
    monkeypatch.setattr(measure, "SAMPLE_ROWS", 5_000)
    report = run_audit(db.url)
    finding = next(f for f in report.findings if f.kind == "link_table_without_unique")
    assert finding.estimated is True and finding.severity == "high"
    assert finding.duplicate_groups and finding.duplicate_groups > 0
    assert "sample" in finding.evidence


def test_check_then_insert_says_when_pg_stat_statements_is_unavailable(pg: TestDatabase) -> None:
    preloaded = "pg_stat_statements" in str(pg.scalar("SHOW shared_preload_libraries"))
    if preloaded:
        pytest.skip("pg_stat_statements is preloaded on this server; the unavailable path cannot be shown")
    run = run_dupewatch("audit", "--url", pg.url)
    assert "note: pg_stat_statements is not" in run.stdout
    as_json = run_dupewatch("audit", "--url", pg.url, "--json")
    assert "pg_stat_statements is not" in as_json.stderr and as_json.json["findings"] == []


def test_invalid_unique_index_is_reported_with_its_rebuild(pg: TestDatabase) -> None:
    pg.execute("CREATE TABLE invoice (id serial PRIMARY KEY, number text NOT NULL)",
               "INSERT INTO invoice (number) SELECT 'INV-' || n FROM generate_series(1, 50) n",
               "INSERT INTO invoice (number) VALUES ('INV-7'), ('INV-9')")
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("CREATE UNIQUE INDEX CONCURRENTLY uq_invoice_number ON invoice (number)"))
    admin.dispose()
    _code, report = audit_json(pg)
    finding = only(report, "invalid_unique_index", "invoice")
    assert finding["severity"] == "high" and finding["columns"] == ["number"]
    assert finding["duplicate_groups"] == 2
    assert "DROP INDEX CONCURRENTLY" in finding["evidence"]
    assert "CREATE UNIQUE INDEX CONCURRENTLY uq_invoice_number ON" in finding["evidence"]


def test_nulls_not_distinct_unique_is_clean(pg: TestDatabase) -> None:
    pg.execute("CREATE TABLE auth_user (id serial PRIMARY KEY)",
               "CREATE TABLE login_source (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES auth_user, "
               "agent text NOT NULL, device text, UNIQUE NULLS NOT DISTINCT (user_id, agent, device))",
               "INSERT INTO auth_user SELECT FROM generate_series(1, 5)",
               "INSERT INTO login_source (user_id, agent, device) SELECT n, 'ff', NULL FROM generate_series(1, 5) n")
    _code, report = audit_json(pg)
    assert found(report, "unique_with_nullable_columns", "login_source") == []


def test_a_query_over_its_timeout_is_reported_unmeasured(db: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.audit import measure

    db.execute("CREATE TABLE groups_users (group_id INTEGER, user_id INTEGER)",
               "CREATE TABLE users (id INTEGER PRIMARY KEY)", "CREATE TABLE groups (id INTEGER PRIMARY KEY)")
    with db.engine.begin() as conn:  # 20,000 rows sent, then copied 9 times on the server: 200,000 rows
        conn.execute(sa.text("INSERT INTO groups_users (group_id, user_id) VALUES (:g, :u)"),
                     [{"g": n % 97, "u": n} for n in range(20_000)])
        for start in range(20_000, 200_000, 20_000):
            conn.execute(sa.text("INSERT INTO groups_users (group_id, user_id) SELECT (user_id + :s) % 97, "
                                 "user_id + :s FROM groups_users WHERE user_id < 20000"), {"s": start})
    monkeypatch.setattr(measure, "QUERY_SHARE", 0.001 / 60)  # 1 ms per query out of the 60 s budget
    report = run_audit(db.url)
    link = next(f for f in report.findings if f.kind == "link_table_without_unique")
    assert link.duplicate_groups is None and link.severity == "low"
    assert "timed out" in link.evidence and link.check is None and link.draft is not None


def test_schema_option_names_what_is_audited(db: TestDatabase) -> None:
    db.execute("CREATE TABLE event_log (message VARCHAR(20))")
    schema = db.schema or "main"
    code, report = audit_json(db, "--schema", schema)
    assert code == 0
    assert [f["table"] for f in report["findings"]] == [f"{schema}.event_log"]


def test_check_then_insert_lookups_are_measured_on_the_real_table(db: TestDatabase) -> None:
    """pg_stat_statements is not preloaded on the test server: feed the statements it would hold (Django's
    get_or_create on a profile) and measure the lookup's columns on a real table."""
    from monitor.audit import open_database
    from monitor.audit.catalog import read_catalog, resolve_schemas
    from monitor.audit.findings import decide
    from monitor.audit.lookups import check_then_insert
    from monitor.audit.measure import Budget, Measurer

    md = sa.MetaData()
    for name in ("accounts_profile", "accounts_note"):
        sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("user_id", sa.Integer, nullable=False), sa.Column("bio", sa.String(20)))
    md.create_all(db.engine)
    rows = [{"u": u} for u in range(1, 101)]
    db.execute("INSERT INTO accounts_profile (user_id, bio) VALUES (:u, 'b')", params=[*rows, {"u": 9}, {"u": 9}])
    db.execute("INSERT INTO accounts_note (user_id, bio) VALUES (:u, 'b')", params=rows)
    statements = []
    for name in ("accounts_profile", "accounts_note"):
        statements += [(f'SELECT "{name}"."id", "{name}"."user_id" FROM "{name}" WHERE "{name}"."user_id" = $1 '
                        "LIMIT $2", 500),
                       (f'INSERT INTO "{name}" ("user_id", "bio") VALUES ($1, $2) RETURNING "{name}"."id"', 30)]
    database = open_database(db.url, 60)
    try:
        with database.read_only() as conn:
            tables = read_catalog(conn, resolve_schemas(conn, []))
            candidates = check_then_insert(statements, tables)
            measurer = Measurer(database, conn, Budget(60))
            findings = {c.table.name: decide(c, measurer.measure(c)) for c in candidates}
    finally:
        database.dispose()
    raced = findings["accounts_profile"]
    assert (raced.kind, raced.columns, raced.severity) == ("check_then_insert", ["user_id"], "high")
    assert (raced.duplicate_groups, raced.excess_rows) == (1, 2)
    clean = findings["accounts_note"]  # the same race waiting to happen: no duplicates yet, still worth a check
    assert (clean.severity, clean.duplicate_groups) == ("medium", 0) and clean.check is not None


def test_sqlite_audit_reports_a_foreign_key_naming_the_referred_column_in_another_case(sqlite_db) -> None:
    """`REFERENCES currency(CODE)` to the column `code`: SQLite matches column names case-insensitively. The
    catalog kept the name as the child wrote it, found no column `CODE` in currency, and left the reference to a
    non-unique column unreported."""
    sqlite_db.execute("CREATE TABLE currency (id INTEGER PRIMARY KEY, code TEXT NOT NULL)",
                      "CREATE TABLE price (id INTEGER PRIMARY KEY, currency_code TEXT REFERENCES currency(CODE))",
                      "INSERT INTO currency VALUES (1, 'EUR'), (2, 'EUR'), (3, 'USD')",
                      "INSERT INTO price VALUES (10, 'EUR')")
    _code, report = audit_json(sqlite_db)
    finding = only(report, "foreign_key_to_non_unique", "currency")
    assert finding["columns"] == ["code"]
    assert finding["duplicate_groups"] == 1
    assert "price(currency_code) references currency(code)" in finding["evidence"]


def test_a_table_the_role_may_not_read_is_not_blamed_on_the_budget(pg):
    """A candidate whose measurement failed (permission denied) was drafted with "run `dupewatch audit` with a
    larger --budget", which cannot help: the draft says what failed instead."""
    from sqlalchemy.engine import make_url

    from dbtest import server_login

    pg.execute("CREATE TABLE checkins (id SERIAL PRIMARY KEY, user_id INTEGER, day DATE)",
               "CREATE INDEX checkins_user_day ON checkins (user_id, day)",
               "INSERT INTO checkins (user_id, day) VALUES (1, '2024-01-01'), (1, '2024-01-01'), (2, '2024-01-01')")
    with server_login("postgresql", f'GRANT USAGE ON SCHEMA "{pg.schema}" TO {{user}}') as role:
        url = make_url(pg.url).set(username=role).render_as_string(hide_password=False)
        run = run_dupewatch("audit", "--json", "--url", url, "--schema", pg.schema)
    [finding] = [f for f in run.json["findings"] if f["table"].endswith(".checkins") and f["columns"]]
    assert "permission denied for table checkins" in finding["evidence"]
    assert "--budget" not in finding["evidence"], finding["evidence"]
