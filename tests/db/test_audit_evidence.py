"""Issue 17's regressions, each with the table shape reproduced: the audit judges by evidence (what the schema
declares, the race signature, measured figures) and never writes a check whose fix the evidence does not justify.
On PostgreSQL, MariaDB and SQLite unless a test says why not."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from audit_corpus import CMS, OPEN_BASKETS, RACED_OWNER, SHOP, TICKETING, build
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbtest import TestDatabase, run_dupewatch
from monitor.audit import run_audit
from monitor.audit.catalog import read_catalog
from monitor.audit.generic import generic_pairs
from monitor.audit.report import config_text

T0 = datetime(2026, 11, 2, 9, 0)


def audit_json(db: TestDatabase, *args: str) -> dict[str, Any]:
    run = run_dupewatch("audit", "--url", db.url, "--json", *args)
    assert run.code in (0, 1), run.output
    return run.json  # type: ignore[no-any-return]


def on(report: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["table"].rsplit(".", 1)[1] == table]


def pretix_users(db: TestDatabase, *, email_nullable: bool) -> sa.Table:
    md = sa.MetaData()
    users = sa.Table("pretixbase_user", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("email", sa.String(190), unique=True, nullable=email_nullable),
                     sa.Column("auth_backend", sa.String(50), nullable=False),
                     sa.Column("auth_backend_identifier", sa.String(190), nullable=True),
                     sa.UniqueConstraint("auth_backend", "auth_backend_identifier", name="uq_backend"))
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(users.insert(), [{"email": f"u{i}@x", "auth_backend": "native", "auth_backend_identifier": None}
                                      for i in range(45)])
    return users


# 1. rows the schema declares distinct --------------------------------------------------------------------------

def test_rows_differing_in_another_not_null_unique_key_are_never_a_duplicate_group(db: TestDatabase) -> None:
    pretix_users(db, email_nullable=False)
    report = audit_json(db)
    assert on(report, "pretixbase_user") == []


def test_rows_differing_in_another_nullable_unique_key_are_not_counted(db: TestDatabase, tmp_path: Path) -> None:
    users = pretix_users(db, email_nullable=True)
    with db.engine.begin() as conn:  # two accounts without an email, alike: these are copies
        conn.execute(users.insert(), [{"email": None, "auth_backend": "native", "auth_backend_identifier": None}] * 2)
    report = audit_json(db)
    [finding] = on(report, "pretixbase_user")
    assert finding["kind"] == "unique_with_nullable_columns"
    assert finding["duplicate_groups"] == 1 and finding["excess_rows"] == 1  # not 45 users merged into one
    assert "differ in email" in finding["evidence"]


# 2. link-table keys -------------------------------------------------------------------------------------------

def revoked_secrets(db: TestDatabase, *, raced: bool) -> None:
    md = sa.MetaData()
    sa.Table("event", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("position", md, sa.Column("id", sa.Integer, primary_key=True))
    revoked = sa.Table("revokedticketsecret", md, sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("event_id", sa.Integer, sa.ForeignKey("event.id"), nullable=False),
                       sa.Column("position_id", sa.Integer, sa.ForeignKey("position.id")),
                       sa.Column("secret", sa.String(64), nullable=False), sa.Column("created", sa.DateTime))
    md.create_all(db.engine)
    rows = [{"event_id": 1, "position_id": p, "secret": f"s{p}-{n}", "created": T0 + timedelta(days=p + n)}
            for p in range(1, 31) for n in range(3)]
    if raced:
        rows += [{"event_id": 1, "position_id": 4, "secret": "s4-0", "created": T0 + timedelta(days=4, milliseconds=5)}]
    with db.engine.begin() as conn:
        conn.execute(md.tables["event"].insert(), [{"id": 1}])
        conn.execute(md.tables["position"].insert(), [{"id": p} for p in range(1, 31)])
        conn.execute(revoked.insert(), rows)


def test_link_table_with_many_rows_per_pair_by_design_is_not_a_finding(db: TestDatabase) -> None:
    revoked_secrets(db, raced=False)
    assert on(audit_json(db), "revokedticketsecret") == []


def test_link_table_key_keeps_the_identifying_column_and_finds_a_raced_copy(db: TestDatabase) -> None:
    revoked_secrets(db, raced=True)
    [finding] = on(audit_json(db), "revokedticketsecret")
    assert finding["columns"] == ["event_id", "position_id", "secret"]
    assert finding["check"]["key"] == ["event_id", "position_id", "secret"]
    assert (finding["duplicate_groups"], finding["severity"]) == (1, "high")


# 3. a spent budget --------------------------------------------------------------------------------------------

def test_a_spent_budget_writes_no_live_check_only_commented_drafts(db: TestDatabase) -> None:
    build(SHOP, db.engine)
    report = run_audit(db.url, budget=0.001)
    assert report.findings and all(f.severity == "low" and f.check is None for f in report.findings
                                   if f.duplicate_groups is None)
    text = config_text(report)
    assert text is None or "\n[[checks]]" not in text
    full = run_audit(db.url)
    drafted = config_text(full)
    assert drafted is not None and "\n[[checks]]" in drafted


def test_candidates_are_measured_structural_risks_first() -> None:
    from monitor.audit.candidates import KINDS

    assert KINDS.index("unique_with_nullable_columns") < KINDS.index("one_to_one_suspect")
    assert KINDS.index("link_table_without_unique") < KINDS.index("one_to_one_suspect")
    assert KINDS.index("check_then_insert") < KINDS.index("one_to_one_suspect")


# 4. a unique key whose nullable column is mostly NULL ---------------------------------------------------------

def test_login_source_unique_over_an_always_null_column_is_a_risk_without_duplicates(db: TestDatabase) -> None:
    build(TICKETING, db.engine)
    report = audit_json(db)
    [finding] = on(report, "pretixbase_userknownloginsource")
    assert finding["kind"] == "unique_with_nullable_columns" and finding["severity"] == "medium"
    assert finding["duplicate_groups"] == 0 and "100% of 45 rows have a NULL" in finding["evidence"]
    assert finding["check"] is not None
    assert on(report, "pretixbase_user") == []  # declared distinct by email


def test_redirect_unique_with_a_mostly_null_site_is_a_risk(db: TestDatabase) -> None:
    build(CMS, db.engine)
    [finding] = on(audit_json(db), "django_redirect")
    assert (finding["kind"], finding["severity"]) == ("unique_with_nullable_columns", "medium")
    assert finding["columns"] == ["site_id", "old_path"] or set(finding["columns"]) == {"site_id", "old_path"}


def test_an_empty_table_with_a_nullable_unique_is_low(db: TestDatabase) -> None:
    md = sa.MetaData()
    sa.Table("redirect", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("site_id", sa.Integer),
             sa.Column("old_path", sa.String(200), nullable=False), sa.UniqueConstraint("old_path", "site_id"))
    md.create_all(db.engine)
    [finding] = on(audit_json(db), "redirect")
    assert finding["severity"] == "low" and "table empty" in finding["evidence"]


def test_raced_login_sources_are_high_by_their_burst(db: TestDatabase) -> None:
    build(TICKETING, db.engine)
    db.execute("INSERT INTO pretixbase_userknownloginsource (user_id, agent_type, device_type, os_type, country, "
               "last_seen) SELECT user_id, agent_type, device_type, os_type, country, last_seen "
               "FROM pretixbase_userknownloginsource WHERE user_id <= 3")
    [finding] = on(audit_json(db), "pretixbase_userknownloginsource")
    assert (finding["duplicate_groups"], finding["severity"]) == (3, "high")
    assert "3 of 3 written within 2s (by last_seen)" in finding["evidence"]


def install_data(db: TestDatabase, *, born: list[datetime], required_parent: bool = False) -> None:
    """Tryton's `ir_action_act_window_view` as `trytond-admin` writes it: 125 views, 11 of them shown by two
    window actions (the rows differ in act_window), each row born at `born[action - 1]`. Its `active` is a
    boolean there; a text `state` here, so that MariaDB (where a boolean is a TINYINT) has the same candidate.
    act_window is NOT NULL in Tryton (`required_parent`); nullable, rows differing in it are not told apart by
    a required parent, and only the birth timestamps can judge them."""
    md = sa.MetaData()
    sa.Table("act_window", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("ui_view", md, sa.Column("id", sa.Integer, primary_key=True))
    views = sa.Table("act_window_view", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("act_window", sa.Integer, sa.ForeignKey("act_window.id"), nullable=not required_parent),
                     sa.Column("view", sa.Integer, sa.ForeignKey("ui_view.id"), nullable=False),
                     sa.Column("state", sa.String(10)), sa.Column("sequence", sa.Integer),
                     sa.Column("create_uid", sa.Integer), sa.Column("create_date", sa.DateTime))
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(md.tables["act_window"].insert(), [{"id": a} for a in range(1, 137)])
        conn.execute(md.tables["ui_view"].insert(), [{"id": v} for v in range(1, 126)])
        conn.execute(views.insert(), [{"act_window": a, "view": a if a <= 125 else a - 125, "state": "active",
                                       "sequence": 20, "create_uid": 0, "create_date": born[a - 1]}
                                      for a in range(1, 137)])


def test_rows_all_born_in_one_instant_are_no_race_burst(db: TestDatabase) -> None:
    install_data(db, born=[T0] * 136)  # one install transaction: every row, repeated or not, born at once
    [finding] = [f for f in on(audit_json(db), "act_window_view") if f["kind"] == "key_with_status"]
    assert finding["severity"] != "high" and finding["check"] is None, finding
    assert "written within" not in finding["evidence"], finding


def test_rows_pointing_at_different_required_parents_are_no_duplicate_group(db: TestDatabase) -> None:
    born_apart = [T0 + timedelta(days=a) for a in range(1, 126)] + [T0 + timedelta(days=v) for v in range(1, 12)]
    for born in ([T0] * 136, born_apart):  # an install transaction, or repeats born together among rows born apart
        install_data(db, born=born, required_parent=True)
        assert on(audit_json(db), "act_window_view") == []  # each repeated view is in a different window action
        with db.engine.begin() as conn:
            for name in ("act_window_view", "act_window", "ui_view"):
                conn.execute(sa.text(f"DROP TABLE {name}"))


def test_repeats_born_together_among_rows_born_apart_are_still_a_burst(db: TestDatabase) -> None:
    born = [T0 + timedelta(days=a) for a in range(1, 126)] + [T0 + timedelta(days=v) for v in range(1, 12)]
    install_data(db, born=born)
    [finding] = [f for f in on(audit_json(db), "act_window_view") if f["kind"] == "key_with_status"]
    assert finding["severity"] == "high" and "11 of 11 written within" in finding["evidence"], finding


# 5. a key plus a status ---------------------------------------------------------------------------------------

def test_open_baskets_per_owner_are_found_through_the_status(db: TestDatabase, tmp_path: Path) -> None:
    build(SHOP, db.engine)
    target = tmp_path / "dupewatch.toml"
    run = run_dupewatch("audit", "--url", db.url, "--json", "--write", target)
    assert run.code == 1, run.output
    [finding] = [f for f in on(run.json, "basket_basket") if f["kind"] == "key_with_status"]
    assert finding["severity"] == "high" and finding["duplicate_groups"] == 1
    assert finding["excess_rows"] == OPEN_BASKETS - 1
    assert finding["check"]["key"] == ["owner_id"] and "'Open'" in finding["check"]["where"]
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": db.url})
    result = next(r for r in checked.json["checks"] if r["name"] == finding["check"]["name"])
    assert (result["groups"], result["status"]) == (1, "duplicates"), result
    assert RACED_OWNER


# 7-10. bad input, timestamps, hostile names, init ----------------------------------------------------------------

def test_mysql_url_without_a_database_is_one_line_exit_2(mysql: TestDatabase) -> None:
    url = mysql.url.rsplit("/", 1)[0] + "/"
    run = run_dupewatch("audit", "--url", url)
    assert run.code == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "--schema" in run.stderr


def test_written_checks_carry_a_timestamp_for_last_seen_and_now_defaults(db: TestDatabase) -> None:
    build(TICKETING, db.engine)
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, page VARCHAR(20), "
               "seen_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, UNIQUE (user_id, page))")
    report = run_audit(db.url)
    login = next(f for f in report.findings if f.table.endswith("pretixbase_userknownloginsource"))
    assert login.check is not None and login.check["timestamp"] == "last_seen"
    from monitor.audit.catalog import read_catalog, resolve_schemas
    from monitor.config import DatabaseConfig
    from monitor.db import Database

    database = Database("t", DatabaseConfig(url=db.url))
    try:
        with database.read_only() as conn:
            tables = {t.name: t for t in read_catalog(conn, resolve_schemas(conn, []))}
    finally:
        database.dispose()
    assert tables["visit"].birth_column == "seen_at"


def test_hostile_names_are_written_and_printed_safely(db: TestDatabase, tmp_path: Path) -> None:
    # MariaDB identifiers hold no character outside the BMP (error 1300): a snowman there, an emoji elsewhere
    name = "groups_☃" if db.dialect == "mysql" else "groups_🎟"
    md = sa.MetaData()
    sa.Table(name, md, sa.Column("group_id", sa.Integer, nullable=False),
             sa.Column("user_id", sa.Integer, nullable=False))
    sa.Table("tab\tname", md, sa.Column("a_id", sa.Integer), sa.Column("b_id", sa.Integer))
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(md.tables[name].insert(), [{"group_id": 1, "user_id": u} for u in range(5)])
    run = run_dupewatch("init", "--url", db.url, cwd=tmp_path)
    assert run.code == 0, run.output
    written = (tmp_path / "dupewatch.toml").read_text(encoding="utf-8")
    assert name in written
    tomllib.loads(written)
    valid = run_dupewatch("config", "validate", "--config", tmp_path / "dupewatch.toml",
                          env={"DUPEWATCH_URL": db.url})
    assert valid.code == 0, valid.output
    printed = run_dupewatch("audit", "--url", db.url)
    assert "tab\\tname" in printed.stdout and "tab\tname" not in printed.stdout


def test_a_backtick_column_is_written_as_it_is_named(mysql: TestDatabase, tmp_path: Path) -> None:
    mysql.execute("CREATE TABLE team (id INT PRIMARY KEY)", "CREATE TABLE person (id INT PRIMARY KEY)",
                  "CREATE TABLE team_person (team_id INT NOT NULL, `person``id` INT NOT NULL, "
                  "person_id INT NOT NULL)")
    mysql.execute("INSERT INTO team_person VALUES (1, 1, 1), (1, 1, 1)")
    target = tmp_path / "c.toml"
    run = run_dupewatch("audit", "--url", mysql.url, "--write", target)
    assert run.code == 1, run.output
    config = tomllib.loads(target.read_text())
    keys = [c["key"] for c in config["checks"]]
    assert any("person`id" in k for k in keys), keys
    checked = run_dupewatch("check", "--config", target, "--json", env={"DUPEWATCH_URL": mysql.url})
    assert all(r["status"] != "error" for r in checked.json["checks"]), checked.stdout


def test_a_table_the_role_cannot_read_gets_no_live_check(pg: TestDatabase) -> None:
    role = f"dw_audit_{pg.schema}"
    pg.execute("CREATE TABLE groups_users (group_id INT NOT NULL, user_id INT NOT NULL)",
               "CREATE TABLE readable_users (group_id INT NOT NULL, user_id INT NOT NULL)",
               f"CREATE ROLE {role} LOGIN", f"GRANT USAGE ON SCHEMA {pg.schema} TO {role}",
               f"GRANT SELECT ON readable_users TO {role}")
    try:
        url = sa.make_url(pg.url).set(username=role).render_as_string(hide_password=False)
        report = run_audit(url)
        hidden = next(f for f in report.findings if f.table.endswith(".groups_users") and f.columns)
        assert hidden.check is None and hidden.severity == "low" and "permission denied" in hidden.evidence
        readable = next(f for f in report.findings if f.table.endswith(".readable_users") and f.columns)
        assert readable.check is not None
    finally:
        pg.execute(f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_init_with_nothing_to_watch_says_so_and_exits_2(db: TestDatabase, tmp_path: Path) -> None:
    db.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username VARCHAR(20) NOT NULL UNIQUE)")
    run = run_dupewatch("init", "--url", db.url, cwd=tmp_path)
    assert run.code == 2 and "nothing to watch" in run.stderr
    assert "`dupewatch config example`" in run.stderr  # what an installed copy has; config.example.toml is not
    assert not (tmp_path / "dupewatch.toml").exists()


def test_check_names_are_short_and_evidence_is_whole_in_a_pipe(db: TestDatabase) -> None:
    build(TICKETING, db.engine)
    report = audit_json(db)
    names = [f["check"]["name"] for f in report["findings"] if f["check"]]
    assert names and all(len(n) <= 40 for n in names), names
    piped = run_dupewatch("audit", "--url", db.url)
    assert "…" not in piped.stdout
    assert "rows have a NULL in the key, which it does not protect" in piped.stdout


# 6. the application's code ----------------------------------------------------------------------------------------

def test_a_code_lookup_is_a_risk_without_duplicates_and_drafted_when_its_groups_look_designed(
        db: TestDatabase, tmp_path: Path) -> None:
    md = sa.MetaData()
    rule = sa.Table("shop_rule", md, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("list_id", sa.Integer, nullable=False), sa.Column("note", sa.String(20)),
                    sa.Column("created_at", sa.DateTime))
    sa.Table("shop_tag", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(20), nullable=False))
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(rule.insert(), [{"list_id": 1, "note": "a", "created_at": T0},
                                     {"list_id": 1, "note": "b", "created_at": T0 + timedelta(days=3)}])
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "models.py").write_text(
        "from django.db import models\n\nclass Rule(models.Model):\n    list = models.IntegerField()\n\n"
        "class Tag(models.Model):\n    name = models.CharField(max_length=20)\n")
    (tmp_path / "shop" / "views.py").write_text(
        "from .models import Rule, Tag\n\ndef view(request):\n    Rule.objects.get_or_create(list=1)\n"
        "    Tag.objects.get_or_create(name=request.GET['tag'])\n")
    report = audit_json(db, "--source", str(tmp_path))
    [tag] = [f for f in on(report, "shop_tag") if f["kind"] == "check_then_insert"]
    assert (tag["severity"], tag["duplicate_groups"]) == ("medium", 0) and tag["check"]["key"] == ["name"]
    assert "views.py:5 get_or_create()" in tag["evidence"]
    [designed] = [f for f in on(report, "shop_rule") if f["kind"] == "check_then_insert"]
    assert designed["severity"] == "medium" and designed["duplicate_groups"] == 1
    assert designed["check"] is None and "like the design" in designed["evidence"]


# 7. real schemas' shapes (tests/db/corpus) --------------------------------------------------------------------------

def tryton_like(db: TestDatabase, md: sa.MetaData, *names: str) -> dict[str, sa.Table]:
    """Tables as Tryton makes them: every one has create_uid / write_uid (who wrote the row, no foreign key) and
    create_date; ten filler models make the schema big enough for "every table has it" to mean something."""
    def stamped(name: str, *columns: sa.Column[Any]) -> sa.Table:
        return sa.Table(name, md, sa.Column("id", sa.Integer, primary_key=True), *columns,
                        sa.Column("create_uid", sa.Integer), sa.Column("write_uid", sa.Integer),
                        sa.Column("create_date", sa.DateTime))
    for n in range(10):
        stamped(f"filler_{n}", sa.Column("name", sa.String(20)))
    stamped("party", sa.Column("name", sa.String(20)))
    stamped("company", sa.Column("name", sa.String(20)))
    stamped("lang", sa.Column("code", sa.String(10)))
    tables = {n: stamped(n, *(sa.Column(c, sa.Integer, sa.ForeignKey(f"{c}.id")) for c in ("party", "company", "lang")))
              for n in names}
    md.create_all(db.engine)
    with db.engine.begin() as conn:
        for name in ("party", "company", "lang"):
            conn.execute(md.tables[name].insert(), [{"id": i, "name" if name != "lang" else "code": f"{name}{i}"}
                                                    for i in range(1, 31)])
    return tables


def test_a_multivalue_table_is_a_link_table_once_the_bookkeeping_columns_are_seen(db: TestDatabase) -> None:
    md = sa.MetaData()
    tables = tryton_like(db, md, "party_lang", "party_unused_lang")
    rows = [{"party": p, "company": c, "lang": 1 + p % 3, "create_uid": 1, "create_date": T0 + timedelta(days=p + c)}
            for p in range(1, 31) for c in (1, 2)]
    raced = T0 + timedelta(days=5, milliseconds=5)  # party 4's form saved twice at once
    rows += [{"party": 4, "company": 1, "lang": 2, "create_uid": 1, "create_date": raced}]
    with db.engine.begin() as conn:
        conn.execute(tables["party_lang"].insert(), rows)
    report = audit_json(db)
    [lang] = on(report, "party_lang")
    assert lang["kind"] == "link_table_without_unique" and set(lang["columns"]) == {"party", "company", "lang"}
    assert (lang["severity"], lang["duplicate_groups"]) == ("high", 1), lang
    assert "create_uid" not in lang["check"]["key"]
    [unused] = on(report, "party_unused_lang")  # the same shape, empty: nothing writes it yet
    assert unused["severity"] == "low"
    assert all(f["kind"] != "one_to_one_suspect" or f["columns"] != ["create_uid"] for f in report["findings"])


def test_a_unique_index_over_coalesce_is_a_key_whose_nulls_are_safe(pg: TestDatabase, tmp_path: Path) -> None:
    pg.execute("CREATE TABLE site (id integer PRIMARY KEY)",
               "CREATE TABLE redirect (id integer PRIMARY KEY, site_id integer REFERENCES site, "
               "old_path varchar(200) NOT NULL, new_path varchar(200) NOT NULL)",
               "CREATE UNIQUE INDEX redirect_path ON redirect (old_path, COALESCE(site_id, 0))",
               "INSERT INTO redirect SELECT n, NULL, '/old/' || n, '/new/' || n FROM generate_series(1, 40) n")
    (tmp_path / "redirects").mkdir()
    (tmp_path / "redirects" / "models.py").write_text(
        "from django.db import models\n\nclass Redirect(models.Model):\n    old_path = models.CharField()\n\n"
        "    class Meta:\n        db_table = 'redirect'\n")
    (tmp_path / "redirects" / "views.py").write_text(
        "from .models import Redirect\n\ndef add(path):\n"
        "    Redirect.objects.get_or_create(old_path=path, site=None)\n")
    assert on(audit_json(pg, "--source", str(tmp_path)), "redirect") == []
    pg.execute("DROP INDEX redirect_path", "CREATE UNIQUE INDEX redirect_path ON redirect (old_path, site_id)")
    kinds = {f["kind"] for f in on(audit_json(pg, "--source", str(tmp_path)), "redirect")}
    assert kinds == {"unique_with_nullable_columns", "check_then_insert"}  # the same key without COALESCE


def test_an_equality_exclusion_constraint_is_a_key(pg: TestDatabase, tmp_path: Path) -> None:
    """Tryton's ir_ui_view_tree_width: EXCLUDE USING btree (model WITH =, ..., COALESCE(screen_width, -1) WITH =)."""
    pg.execute('CREATE TABLE tree_width (id integer PRIMARY KEY, model varchar NOT NULL, "user" integer NOT NULL, '
               "screen_width integer, width integer)",
               'ALTER TABLE tree_width ADD CONSTRAINT tree_width_unique EXCLUDE USING btree (model WITH =, '
               '"user" WITH =, COALESCE(screen_width, -1) WITH =)')
    (tmp_path / "ir.py").write_text(
        "from trytond.model import ModelSQL\n\nclass ViewTreeWidth(ModelSQL):\n"
        "    __name__ = 'tree.width'\n\n    @classmethod\n    def set_width(cls, model, user, width):\n"
        "        if not cls.search([('model', '=', model), ('user', '=', user), ('screen_width', '=', None)]):\n"
        "            cls.create([{'model': model, 'user': user, 'width': width}])\n")
    assert [f for f in on(audit_json(pg, "--source", str(tmp_path)), "tree_width") if f["columns"]] == []
    pg.execute("ALTER TABLE tree_width DROP CONSTRAINT tree_width_unique")
    [lookup] = on(audit_json(pg, "--source", str(tmp_path)), "tree_width")
    assert lookup["kind"] == "check_then_insert" and set(lookup["columns"]) == {"model", "user", "screen_width"}


def test_a_natural_key_index_with_coalesce_finds_its_race(pg: TestDatabase) -> None:
    """Tryton's ir_ui_view_tree_state: INDEX ("user", model, COALESCE(child_name, ''), domain), searched then
    created by ViewTreeState.set."""
    pg.execute("CREATE TABLE res_user (id integer PRIMARY KEY)",
               'CREATE TABLE tree_state (id integer PRIMARY KEY, "user" integer NOT NULL REFERENCES res_user, '
               "model varchar NOT NULL, child_name varchar, domain varchar NOT NULL, nodes text, "
               "create_date timestamp)",
               'CREATE INDEX tree_state_key ON tree_state ("user", model, COALESCE(child_name, \'\'), domain)',
               "INSERT INTO res_user SELECT generate_series(1, 8)",
               "INSERT INTO tree_state SELECT u * 10 + m, u, 'model' || m, 'childs', '[]', '[]', "
               "timestamp '2026-11-02' + u * interval '1 day' FROM generate_series(1, 8) u, generate_series(1, 3) m",
               "INSERT INTO tree_state VALUES (1000, 2, 'model1', 'childs', '[]', '[[1]]', "
               "timestamp '2026-11-04' + interval '5 milliseconds')")
    [state] = on(audit_json(pg), "tree_state")
    assert state["kind"] == "non_unique_natural_key" and state["columns"] == ["user", "model", "child_name", "domain"]
    assert (state["severity"], state["duplicate_groups"]) == ("high", 1), state


def placeholders(db: TestDatabase, *, object_ids: list[int], raced: bool) -> None:
    """django-cms's cms_placeholder: (content_type_id, object_id) names the page content a slot belongs to."""
    md = sa.MetaData()
    types = sa.Table("django_content_type", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("app_label", sa.String(100), nullable=False),
                     sa.Column("model", sa.String(100), nullable=False), sa.UniqueConstraint("app_label", "model"))
    contents = sa.Table("cms_pagecontent", md, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("title", sa.String(50)))
    holders = sa.Table("cms_placeholder", md, sa.Column("id", sa.Integer, primary_key=True),
                       sa.Column("slot", sa.String(255), nullable=False), sa.Column("default_width", sa.SmallInteger),
                       sa.Column("content_type_id", sa.Integer, sa.ForeignKey("django_content_type.id")),
                       sa.Column("object_id", sa.Integer))
    md.create_all(db.engine)
    rows = [{"slot": slot, "content_type_id": 2, "object_id": o} for o in object_ids
            for slot in ("content", "sidebar", "footer")]
    with db.engine.begin() as conn:
        conn.execute(types.insert(), [{"id": 1, "app_label": "cms", "model": "page"},
                                      {"id": 2, "app_label": "cms", "model": "pagecontent"}])
        conn.execute(contents.insert(), [{"id": i, "title": f"t{i}"} for i in range(1, 31)])
        conn.execute(holders.insert(), rows + ([{"slot": "content", "content_type_id": 2, "object_id": 5}]
                                               if raced else []))


def test_a_generic_relation_confirmed_by_the_data_is_the_parent_of_a_natural_key(db: TestDatabase) -> None:
    placeholders(db, object_ids=list(range(1, 31)), raced=True)
    [holder] = on(audit_json(db), "cms_placeholder")
    assert set(holder["columns"]) == {"content_type_id", "object_id", "slot", "default_width"}
    assert (holder["kind"], holder["severity"], holder["duplicate_groups"]) == ("non_unique_natural_key", "high", 1)
    assert "cms.pagecontent (cms_pagecontent)" in holder["evidence"]


def test_a_generic_relation_is_no_finding_without_duplicates_or_without_the_data_s_confirmation(
        db: TestDatabase) -> None:
    placeholders(db, object_ids=list(range(1, 31)), raced=False)
    assert on(audit_json(db), "cms_placeholder") == []  # three slots per page content: the design
    db.execute("DROP TABLE cms_placeholder", "DROP TABLE cms_pagecontent", "DROP TABLE django_content_type")
    placeholders(db, object_ids=[*range(1, 31), 31], raced=True)  # object 31 is in no table: no generic relation
    assert on(audit_json(db), "cms_placeholder") == []
    db.execute("DELETE FROM cms_placeholder WHERE object_id = 31",  # a type naming no table (cms_page): neither
               "UPDATE cms_placeholder SET content_type_id = 1 WHERE object_id = 7")
    assert on(audit_json(db), "cms_placeholder") == []


@settings(max_examples=40, deadline=None)
@example([(2, 5), (2, 5), (None, None)]).via("confirmed")
@example([(2, 5), (2, 31)]).via("an id in no table")
@example([(2, 5), (1, 5)]).via("a type naming no table")
@given(st.lists(st.tuples(st.sampled_from([None, 1, 2, 3]), st.one_of(st.none(), st.integers(1, 35))),
                min_size=1, max_size=40))
def test_a_generic_pair_is_confirmed_exactly_when_every_stored_id_is_in_the_table_its_type_names(
        stored: list[tuple[int | None, int | None]]) -> None:
    """Types 1 (cms.page) and 3 (auth.user) name no table here, type 2 names cms_pagecontent (ids 1-30): the pair
    is a generic relation when no row uses an unnamed type, some id is stored with type 2, and every one is 1-30."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE django_content_type (id INTEGER PRIMARY KEY, app_label VARCHAR(100) "
                             "NOT NULL, model VARCHAR(100) NOT NULL, UNIQUE (app_label, model))")
        conn.exec_driver_sql("INSERT INTO django_content_type VALUES (1, 'cms', 'page'), (2, 'cms', 'pagecontent'), "
                             "(3, 'auth', 'user')")
        conn.exec_driver_sql("CREATE TABLE cms_pagecontent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO cms_pagecontent WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                             "FROM n WHERE i < 30) SELECT i FROM n")
        conn.exec_driver_sql("CREATE TABLE cms_placeholder (id INTEGER PRIMARY KEY, slot VARCHAR(20) NOT NULL, "
                             "content_type_id INTEGER REFERENCES django_content_type (id), object_id INTEGER)")
        for n, (type_id, object_id) in enumerate(stored):
            conn.execute(sa.text("INSERT INTO cms_placeholder VALUES (:n, 'content', :t, :o)"),
                         {"n": n, "t": type_id, "o": object_id})
    with engine.connect() as conn:
        tables = read_catalog(conn, ["main"])
        pairs = [(p.type_column, p.id_column) for p in generic_pairs(conn, tables, 5.0)]
    expected = (all(t in (None, 2) for t, _ in stored)
                and any(t == 2 and o is not None for t, o in stored)
                and all(o is None or 1 <= o <= 30 for t, o in stored if t == 2))
    assert pairs == ([("content_type_id", "object_id")] if expected else []), stored
