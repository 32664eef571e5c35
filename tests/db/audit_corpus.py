"""A corpus of application schemas for judging `dupewatch audit`: each application is its tables (the shapes of
real applications' own migrations, reduced to the columns, keys and indexes that matter), a small data
generator (by-design repetition next to reproduced races) and a written ground truth with the evidence for it.

Shapes, from the applications' models:
- ticketing (Pretix): `pretixbase_user` (email UNIQUE, UNIQUE(auth_backend, auth_backend_identifier) with the
  identifier NULL for every password user), `pretixbase_userknownloginsource` (unique_together with
  `device_type` and `country` nullable; NULL in every row without GeoIP), `pretixbase_revokedticketsecret`
  (event, position, secret: many secrets per position by design), `pretixbase_seatcategorymapping`,
  `pretixbase_cachedfile`-style uploads, `pretixbase_logentry` (many per user), `pretixbase_questionanswer`-style
  replies, and the code's `get_or_create(rule=..., subevent=None)` on a check-in rule table.
- cms (django-cms / django.contrib.redirects): `django_redirect` UNIQUE(old_path, site_id) with `site_id`
  nullable, `cms_usersettings` (OneToOne: clean), `cms_pageuser` (many per user by design), `cms_staticplaceholder`.
- shop (django-oscar): `basket_basket(owner_id, status)` with one open basket per owner kept by a
  `get_or_create` in a middleware and no index on it, `basket_line` UNIQUE(basket, line_reference),
  `order_communicationevent` / `order_shippingevent` (many per order by design), `order_orderdiscount`,
  `customer_productalert` (one active alert per customer and product; many products per customer, visitors'
  alerts with no user), open baskets of visitors (no owner), `reviews_productreview` UNIQUE(product_id, user_id)
  (a guest's reviews have no user: many per product by design).
- forum (misago): `misago_threads_subscription(user_id, thread_id, category_id)` without a unique key (a
  pure link table), `misago_users_online` (OneToOne: clean), `misago_threads_post` (many per thread),
  `misago_users_usernamechange` (many per user), the code's `update_or_create` on a poll vote.
- squad (Linaro SQUAD before Linaro/squad#1051): `core_buildsummary(build_id, environment_id)`, one per pair by
  create_or_update, only Django's index on each foreign key; `core_testrun` (many per build and environment).
- rails (a Rails app, no declared foreign keys): `groups_users` (has_and_belongs_to_many, no unique index),
  `checkins(user_id, day)` with `find_or_create_by`, `comments` (many per user), `memberships` (unique: clean).

A true risk is `(table, columns)`: a column set where the application's code can race two rows in that no
unique key stops. A finding of medium or high severity on anything else is a false positive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

BASE = datetime(2026, 11, 2, 9, 0)
DAY = timedelta(days=1)
BURST = timedelta(milliseconds=5)


def bigint() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer, "sqlite")


def pk() -> sa.Column[int]:
    return sa.Column("id", bigint(), primary_key=True)


@dataclass
class App:
    name: str
    build: Callable[[sa.MetaData], None] | None  # None: the tables come from `dump`
    rows: Callable[[sa.Connection, sa.MetaData], None]
    truth: dict[str, set[frozenset[str]]]  # table -> the column sets that are true risks
    evidence: dict[str, str]  # table -> why it is a true risk
    sources: dict[str, str] = field(default_factory=dict)  # path -> code, for --source
    dump: str | None = None  # tests/db/corpus/<dump>: the schema the application's own migrations made (PostgreSQL)
    dumps: dict[str, str] = field(default_factory=dict)  # the same made on another database: dialect -> file
    dialects: tuple[str, ...] = ("postgresql", "mysql", "sqlite")  # where the application's schema can be built


# -- ticketing (Pretix) ------------------------------------------------------------------------------------------

def ticketing_tables(md: sa.MetaData) -> None:
    sa.Table("pretixbase_user", md, pk(), sa.Column("email", sa.String(190), unique=True),
             sa.Column("auth_backend", sa.String(190), nullable=False),
             sa.Column("auth_backend_identifier", sa.String(190), nullable=True),
             sa.Column("date_joined", sa.DateTime, nullable=False),
             sa.UniqueConstraint("auth_backend", "auth_backend_identifier", name="pretix_user_backend_uniq"))
    sa.Table("pretixbase_userknownloginsource", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("pretixbase_user.id"), nullable=False),
             sa.Column("agent_type", sa.String(190), nullable=False),
             sa.Column("device_type", sa.String(190), nullable=True),
             sa.Column("os_type", sa.String(190), nullable=False),
             sa.Column("country", sa.String(2), nullable=True),
             sa.Column("last_seen", sa.DateTime, nullable=False),
             sa.UniqueConstraint("user_id", "agent_type", "os_type", "device_type", "country", name="pretix_uks_uniq"))
    sa.Table("pretixbase_event", md, pk(), sa.Column("slug", sa.String(50), nullable=False, unique=True))
    sa.Table("pretixbase_orderposition", md, pk(),
             sa.Column("event_id", bigint(), sa.ForeignKey("pretixbase_event.id"), nullable=False),
             sa.Column("secret", sa.String(190), nullable=False, index=True))
    # many revoked secrets per position by design: a key of (event, position) would make revoked tickets valid
    sa.Table("pretixbase_revokedticketsecret", md, pk(),
             sa.Column("event_id", bigint(), sa.ForeignKey("pretixbase_event.id"), nullable=False),
             sa.Column("position_id", bigint(), sa.ForeignKey("pretixbase_orderposition.id"), nullable=True),
             sa.Column("secret", sa.String(190), nullable=False, index=True),
             sa.Column("created", sa.DateTime, nullable=False))
    sa.Table("pretixbase_seatcategorymapping", md, pk(),
             sa.Column("event_id", bigint(), sa.ForeignKey("pretixbase_event.id"), nullable=False),
             sa.Column("product_id", bigint(), sa.ForeignKey("pretixbase_orderposition.id"), nullable=False),
             sa.Column("layout_category", sa.String(190), nullable=False))
    sa.Table("pretixbase_logentry", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("pretixbase_user.id"), nullable=True, index=True),
             sa.Column("action_type", sa.String(255), nullable=False),
             sa.Column("datetime", sa.DateTime, nullable=False))
    # an async task's states: one row per state change, many per task and state over time
    sa.Table("pretixbase_taskstate", md, pk(),
             sa.Column("event_id", bigint(), sa.ForeignKey("pretixbase_event.id"), nullable=False),
             sa.Column("user_id", bigint(), sa.ForeignKey("pretixbase_user.id"), nullable=False),
             sa.Column("state", sa.String(20), nullable=False), sa.Column("created", sa.DateTime, nullable=False))
    sa.Table("pretixbase_checkinlist", md, pk(),
             sa.Column("event_id", bigint(), sa.ForeignKey("pretixbase_event.id"), nullable=False),
             sa.Column("name", sa.String(190), nullable=False))
    # get_or_create(list=..., subevent=None) in the check-in code; no unique index
    sa.Table("pretixbase_checkinrule", md, pk(),
             sa.Column("list_id", bigint(), sa.ForeignKey("pretixbase_checkinlist.id"), nullable=False),
             sa.Column("subevent_id", bigint(), nullable=True),
             sa.Column("rules", sa.String(200), nullable=False))


def ticketing_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["pretixbase_user"].insert(), [
        {"id": i, "email": f"u{i}@example.org", "auth_backend": "native", "auth_backend_identifier": None,
         "date_joined": BASE + i * DAY} for i in range(1, 46)])
    sources = [{"user_id": i, "agent_type": "Firefox", "device_type": None, "os_type": "Linux", "country": None,
                "last_seen": BASE + i * DAY} for i in range(1, 46)]
    conn.execute(t["pretixbase_userknownloginsource"].insert(), sources)
    conn.execute(t["pretixbase_event"].insert(), [{"id": i, "slug": f"e{i}"} for i in range(1, 4)])
    conn.execute(t["pretixbase_orderposition"].insert(), [
        {"id": i, "event_id": 1 + i % 3, "secret": f"s{i}"} for i in range(1, 61)])
    conn.execute(t["pretixbase_revokedticketsecret"].insert(), [
        {"event_id": 1 + p % 3, "position_id": p, "secret": f"old{p}-{n}", "created": BASE + (p + n) * DAY}
        for p in range(1, 61) for n in range(3)])
    conn.execute(t["pretixbase_seatcategorymapping"].insert(), [
        {"event_id": 1, "product_id": p, "layout_category": c} for p in range(1, 11) for c in ("Stalls", "Balcony")])
    conn.execute(t["pretixbase_logentry"].insert(), [
        {"user_id": 1 + n % 45, "action_type": "pretix.user.login", "datetime": BASE + n * DAY / 7}
        for n in range(400)])
    conn.execute(t["pretixbase_taskstate"].insert(), [
        {"event_id": 1 + n % 3, "user_id": 1 + n % 45, "state": ("PENDING", "STARTED", "SUCCESS")[n % 3],
         "created": BASE + n * DAY / 2} for n in range(300)])
    conn.execute(t["pretixbase_checkinlist"].insert(), [{"id": i, "event_id": 1, "name": f"l{i}"}
                                                        for i in range(1, 21)])
    conn.execute(t["pretixbase_checkinrule"].insert(), [
        {"list_id": i, "subevent_id": None, "rules": "{}"} for i in range(1, 21)])


TICKETING = App(
    "ticketing", ticketing_tables, ticketing_rows,
    truth={"pretixbase_userknownloginsource": {frozenset({"user_id", "agent_type", "os_type", "device_type",
                                                          "country"})},
           "pretixbase_checkinrule": {frozenset({"list_id", "subevent_id"})}},
    evidence={"pretixbase_userknownloginsource": "update_or_create at login; device_type and country NULL in every "
                                                 "row, so the unique key protects nothing (the seed incident)",
              "pretixbase_checkinrule": "get_or_create(list=..., subevent=None) with no unique index"},
    sources={"pretix/base/services/checkin.py": (
        "from pretix.base.models import CheckinRule\n\n"
        "def ensure_rule(clist):\n"
        "    rule, created = CheckinRule.objects.get_or_create(list=clist, subevent=None, defaults={'rules': '{}'})\n"
        "    return rule\n"),
        "pretix/base/models/checkin.py": (
        "from django.db import models\n\n"
        "class CheckinRule(models.Model):\n"
        "    list = models.ForeignKey('CheckinList', on_delete=models.CASCADE)\n"
        "    subevent = models.ForeignKey('SubEvent', null=True, on_delete=models.CASCADE)\n"
        "    rules = models.TextField()\n\n"
        "    class Meta:\n"
        "        app_label = 'pretixbase'\n")},
)


# -- cms (django-cms, django.contrib.redirects) --------------------------------------------------------------------

def cms_tables(md: sa.MetaData) -> None:
    sa.Table("django_site", md, pk(), sa.Column("domain", sa.String(100), nullable=False, unique=True))
    sa.Table("django_redirect", md, pk(),
             sa.Column("site_id", bigint(), sa.ForeignKey("django_site.id"), nullable=True),
             sa.Column("old_path", sa.String(200), nullable=False),
             sa.Column("new_path", sa.String(200), nullable=False),
             sa.UniqueConstraint("old_path", "site_id", name="django_redirect_uniq"))
    sa.Table("auth_user", md, pk(), sa.Column("username", sa.String(150), nullable=False, unique=True))
    sa.Table("cms_usersettings", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=False, unique=True),
             sa.Column("language", sa.String(10), nullable=False))
    sa.Table("cms_page", md, pk(), sa.Column("path", sa.String(255), nullable=False),
             sa.Column("created_by_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=True, index=True),
             sa.Column("creation_date", sa.DateTime, nullable=False))
    sa.Table("cms_pageuser", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=False),
             sa.Column("page_id", bigint(), sa.ForeignKey("cms_page.id"), nullable=False),
             sa.Column("grant_on", sa.String(20), nullable=False))


def cms_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["django_site"].insert(), [{"id": 1, "domain": "example.org"}])
    conn.execute(t["django_redirect"].insert(), [
        {"site_id": None, "old_path": f"/old/{n}", "new_path": f"/new/{n}"} for n in range(40)])
    conn.execute(t["auth_user"].insert(), [{"id": i, "username": f"u{i}"} for i in range(1, 31)])
    conn.execute(t["cms_usersettings"].insert(), [{"user_id": i, "language": "en"} for i in range(1, 31)])
    conn.execute(t["cms_page"].insert(), [
        {"id": n, "path": f"000{n}", "created_by_id": 1 + n % 5, "creation_date": BASE + n * DAY}
        for n in range(1, 61)])
    conn.execute(t["cms_pageuser"].insert(), [
        {"user_id": 1 + n % 3, "page_id": n, "grant_on": g} for n in range(1, 41) for g in ("page", "descendants")])


CMS = App(
    "cms", cms_tables, cms_rows,
    truth={"django_redirect": {frozenset({"old_path", "site_id"})}},
    evidence={"django_redirect": "a redirect form submitted by several editors at once; site_id NULL in every row, "
                                 "so UNIQUE(old_path, site_id) protects nothing"},
)


# -- shop (django-oscar) ------------------------------------------------------------------------------------------

def shop_tables(md: sa.MetaData) -> None:
    sa.Table("auth_user", md, pk(), sa.Column("email", sa.String(150), nullable=False, unique=True))
    sa.Table("basket_basket", md, pk(),
             sa.Column("owner_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=True, index=True),
             sa.Column("status", sa.String(128), nullable=False),
             sa.Column("date_created", sa.DateTime, nullable=False),
             sa.Column("date_submitted", sa.DateTime, nullable=True))
    sa.Table("catalogue_product", md, pk(), sa.Column("title", sa.String(255), nullable=False))
    sa.Table("basket_line", md, pk(),
             sa.Column("basket_id", bigint(), sa.ForeignKey("basket_basket.id"), nullable=False),
             sa.Column("product_id", bigint(), sa.ForeignKey("catalogue_product.id"), nullable=True),
             sa.Column("line_reference", sa.String(128), nullable=False),
             sa.Column("quantity", sa.Integer, nullable=False),
             sa.UniqueConstraint("basket_id", "line_reference", name="basket_line_uniq"))
    sa.Table("order_order", md, pk(), sa.Column("number", sa.String(128), nullable=False, unique=True),
             sa.Column("basket_id", bigint(), sa.ForeignKey("basket_basket.id"), nullable=True))
    sa.Table("order_communicationeventtype", md, pk(), sa.Column("code", sa.String(128), unique=True))
    sa.Table("order_communicationevent", md, pk(),
             sa.Column("order_id", bigint(), sa.ForeignKey("order_order.id"), nullable=False),
             sa.Column("event_type_id", bigint(), sa.ForeignKey("order_communicationeventtype.id"), nullable=False),
             sa.Column("date_created", sa.DateTime, nullable=False))
    sa.Table("order_shippingevent", md, pk(),
             sa.Column("order_id", bigint(), sa.ForeignKey("order_order.id"), nullable=False),
             sa.Column("event_type_id", bigint(), sa.ForeignKey("order_communicationeventtype.id"), nullable=False),
             sa.Column("notes", sa.String(200), nullable=False),
             sa.Column("date_created", sa.DateTime, nullable=False))
    # a stock alert: a customer's (user_id) or a visitor's (user_id NULL, an email), one active per product
    sa.Table("customer_productalert", md, pk(),
             sa.Column("product_id", bigint(), sa.ForeignKey("catalogue_product.id"), nullable=False, index=True),
             sa.Column("user_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=True, index=True),
             sa.Column("email", sa.String(254), nullable=False, index=True),
             sa.Column("status", sa.String(20), nullable=False),
             sa.Column("date_created", sa.DateTime, nullable=False))
    # a review: a customer's one per product (UNIQUE), or a guest's (user_id NULL, a name and an email), many
    sa.Table("reviews_productreview", md, pk(),
             sa.Column("product_id", bigint(), sa.ForeignKey("catalogue_product.id"), nullable=True),
             sa.Column("user_id", bigint(), sa.ForeignKey("auth_user.id"), nullable=True),
             sa.Column("score", sa.SmallInteger, nullable=False), sa.Column("title", sa.String(255), nullable=False),
             sa.Column("body", sa.Text, nullable=False), sa.Column("name", sa.String(255), nullable=False),
             sa.Column("email", sa.String(254), nullable=False), sa.Column("date_created", sa.DateTime, nullable=False),
             sa.UniqueConstraint("product_id", "user_id", name="reviews_product_user_uniq"))


SHOP_CUSTOMERS = 30
ALERTED_CUSTOMER, ALERTED_PRODUCT = 11, 4
RACED_OWNER, OPEN_BASKETS = 7, 6


def shop_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["auth_user"].insert(), [{"id": i, "email": f"c{i}@x"} for i in range(1, SHOP_CUSTOMERS + 1)])
    submitted = [{"owner_id": c, "status": "Submitted", "date_created": BASE + (c + n) * DAY,
                  "date_submitted": BASE + (c + n) * DAY} for c in range(1, SHOP_CUSTOMERS + 1) for n in range(3)]
    open_ = [{"owner_id": c, "status": "Open", "date_created": BASE + c * DAY, "date_submitted": None}
             for c in range(1, SHOP_CUSTOMERS + 1) if c != RACED_OWNER]
    raced = [{"owner_id": RACED_OWNER, "status": "Open", "date_created": BASE + n * BURST, "date_submitted": None}
             for n in range(OPEN_BASKETS)]
    visitors = [{"owner_id": None, "status": "Open", "date_created": BASE + v * DAY / 3, "date_submitted": None}
                for v in range(20)]  # a visitor's basket is the cookie's: no owner
    conn.execute(t["basket_basket"].insert(), submitted + open_ + raced + visitors)
    conn.execute(t["catalogue_product"].insert(), [{"id": i, "title": f"p{i}"} for i in range(1, 11)])
    # customers watch one to three products each, some alerts cancelled; visitors' alerts have no user
    alerts = [{"product_id": (c + 3 * k) % 10 + 1, "user_id": c, "email": "",
               "status": "Cancelled" if (c + k) % 5 == 0 else "Active", "date_created": BASE + c * DAY + k * DAY / 4}
              for c in range(1, SHOP_CUSTOMERS + 1) for k in range(1 + c % 3)]
    alerts += [{"product_id": v % 3 + 1, "user_id": None, "email": f"v{v}@x", "status": "Active",
                "date_created": BASE + v * DAY / 2} for v in range(15)]
    alerts += [{"product_id": ALERTED_PRODUCT, "user_id": ALERTED_CUSTOMER, "email": "", "status": "Active",
                "date_created": BASE + 40 * DAY + n * BURST} for n in range(2)]
    conn.execute(t["customer_productalert"].insert(), alerts)
    reviews = [{"product_id": p, "user_id": c, "score": (p + c) % 5 + 1, "title": "ok", "body": f"{p}/{c}",
                "name": "", "email": "", "date_created": BASE + (p + c) * DAY}
               for p in range(1, 11) for c in range(1, SHOP_CUSTOMERS + 1, 4)]
    reviews += [{"product_id": p, "user_id": None, "score": 3, "title": "guest", "body": f"guest {p}/{g}",
                 "name": f"guest {g}", "email": f"g{g}@x", "date_created": BASE + (p + 7 * g) * DAY}
                for p in range(1, 11) for g in range(3)]
    # a guest's review posted twice, 5 ms apart, among the product's other guest reviews
    reviews += [{"product_id": 6, "user_id": None, "score": 5, "title": "great", "body": "loved it", "name": "ann",
                 "email": "ann@x", "date_created": BASE + 45 * DAY + n * BURST} for n in range(2)]
    conn.execute(t["reviews_productreview"].insert(), reviews)
    conn.execute(t["basket_line"].insert(), [
        {"basket_id": b, "product_id": 1 + b % 10, "line_reference": f"{1 + b % 10}_x", "quantity": 1}
        for b in range(1, 41)])
    conn.execute(t["order_order"].insert(), [{"id": i, "number": f"{100000 + i}", "basket_id": i}
                                             for i in range(1, 41)])
    conn.execute(t["order_communicationeventtype"].insert(), [{"id": 1, "code": "ORDER_PLACED"},
                                                              {"id": 2, "code": "SHIPPED"}])
    conn.execute(t["order_communicationevent"].insert(), [
        {"order_id": o, "event_type_id": 1 + n % 2, "date_created": BASE + (o + n) * DAY}
        for o in range(1, 41) for n in range(4)])
    conn.execute(t["order_shippingevent"].insert(), [
        {"order_id": o, "event_type_id": 2, "notes": "parcel", "date_created": BASE + (o + n) * DAY}
        for o in range(1, 41) for n in range(2)])


SHOP = App(
    "shop", shop_tables, shop_rows,
    truth={"basket_basket": {frozenset({"owner_id", "status"})},
           "customer_productalert": {frozenset({"user_id", "status"})},
           "reviews_productreview": {frozenset({"product_id", "user_id"})}},
    evidence={"basket_basket": "Basket.open.get_or_create(owner=user) in a middleware: 6 open baskets for one "
                               "customer, created 5 ms apart",
              "customer_productalert": "ProductAlertForm checks for the customer's active alert on the product, "
                                       "then creates one: submitted twice, two active alerts 5 ms apart",
              "reviews_productreview": "a guest's review form posted twice: UNIQUE(product_id, user_id) lets a NULL "
                                       "user through, two copies 5 ms apart among the product's guest reviews"},
    # Not risks: a visitor's open baskets and alerts (no owner: the cookie's basket, an email per alert); a
    # customer's alerts on several products; a product's several guest reviews.
)


# -- forum (misago) -----------------------------------------------------------------------------------------------

def forum_tables(md: sa.MetaData) -> None:
    sa.Table("misago_users_user", md, pk(), sa.Column("slug", sa.String(255), nullable=False, unique=True))
    sa.Table("misago_categories_category", md, pk(), sa.Column("name", sa.String(255), nullable=False))
    sa.Table("misago_threads_thread", md, pk(),
             sa.Column("category_id", bigint(), sa.ForeignKey("misago_categories_category.id"), nullable=False),
             sa.Column("title", sa.String(255), nullable=False), sa.Column("started_on", sa.DateTime))
    sa.Table("misago_threads_subscription", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=False),
             sa.Column("thread_id", bigint(), sa.ForeignKey("misago_threads_thread.id"), nullable=False),
             sa.Column("category_id", bigint(), sa.ForeignKey("misago_categories_category.id"), nullable=False),
             sa.Column("last_read_on", sa.DateTime))
    sa.Table("misago_users_online", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=False, unique=True),
             sa.Column("last_click", sa.DateTime))
    sa.Table("misago_threads_post", md, pk(),
             sa.Column("thread_id", bigint(), sa.ForeignKey("misago_threads_thread.id"), nullable=False, index=True),
             sa.Column("poster_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=True, index=True),
             sa.Column("original", sa.String(200), nullable=False), sa.Column("posted_on", sa.DateTime))
    sa.Table("misago_users_usernamechange", md, pk(),
             sa.Column("user_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=False, index=True),
             sa.Column("new_username", sa.String(255), nullable=False),
             sa.Column("changed_on", sa.DateTime))
    # replies: many per (comment, user) by design, the text tells them apart
    sa.Table("misago_threads_reply", md, pk(),
             sa.Column("comment_id", bigint(), sa.ForeignKey("misago_threads_post.id"), nullable=False),
             sa.Column("user_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=False),
             sa.Column("text", sa.String(200), nullable=False), sa.Column("posted_on", sa.DateTime))
    sa.Table("misago_threads_attachment", md, pk(),
             sa.Column("post_id", bigint(), sa.ForeignKey("misago_threads_post.id"), nullable=True),
             sa.Column("uploader_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=True),
             sa.Column("filename", sa.String(255), nullable=False), sa.Column("uploaded_on", sa.DateTime))
    sa.Table("misago_threads_pollvote", md, pk(),
             sa.Column("thread_id", bigint(), sa.ForeignKey("misago_threads_thread.id"), nullable=False),
             sa.Column("voter_id", bigint(), sa.ForeignKey("misago_users_user.id"), nullable=True),
             sa.Column("choice_hash", sa.String(12), nullable=False),
             sa.Column("voted_on", sa.DateTime))


def forum_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["misago_users_user"].insert(), [{"id": i, "slug": f"u{i}"} for i in range(1, 41)])
    conn.execute(t["misago_categories_category"].insert(), [{"id": i, "name": f"c{i}"} for i in range(1, 4)])
    conn.execute(t["misago_threads_thread"].insert(), [
        {"id": i, "category_id": 1 + i % 3, "title": f"t{i}", "started_on": BASE + i * DAY} for i in range(1, 31)])
    conn.execute(t["misago_threads_subscription"].insert(), [
        {"user_id": u, "thread_id": 1 + u % 30, "category_id": 1 + (1 + u % 30) % 3, "last_read_on": BASE}
        for u in range(1, 41)])
    conn.execute(t["misago_users_online"].insert(), [{"user_id": i, "last_click": BASE} for i in range(1, 21)])
    conn.execute(t["misago_threads_post"].insert(), [
        {"thread_id": 1 + n % 30, "poster_id": 1 + n % 40, "original": f"p{n}", "posted_on": BASE + n * DAY / 5}
        for n in range(300)])
    conn.execute(t["misago_users_usernamechange"].insert(), [
        {"user_id": 1 + n % 10, "new_username": f"n{n}", "changed_on": BASE + n * DAY} for n in range(50)])
    conn.execute(t["misago_threads_reply"].insert(), [
        {"comment_id": 1 + n % 10, "user_id": 1 + n % 4, "text": f"reply {n}", "posted_on": BASE + n * DAY / 3}
        for n in range(120)])
    conn.execute(t["misago_threads_attachment"].insert(), [
        {"post_id": 1 + n % 20, "uploader_id": 1 + n % 20, "filename": "image.png", "uploaded_on": BASE + n * DAY}
        for n in range(80)])
    conn.execute(t["misago_threads_pollvote"].insert(), [
        {"thread_id": 1 + n % 5, "voter_id": 1 + n // 5, "choice_hash": "abc", "voted_on": BASE + n * DAY}
        for n in range(60)])


FORUM = App(
    "forum", forum_tables, forum_rows,
    truth={"misago_threads_subscription": {frozenset({"user_id", "thread_id", "category_id"})},
           "misago_threads_pollvote": {frozenset({"thread_id", "voter_id"}),
                                       frozenset({"thread_id", "voter_id", "choice_hash"})}},
    evidence={"misago_threads_subscription": "subscribe on first reply: a link of references with no unique key",
              "misago_threads_pollvote": "PollVote.objects.update_or_create(thread=..., voter=...) with no unique "
                                         "index"},
    sources={"misago/threads/api/threadendpoints/poll.py": (
        "from misago.threads.models import PollVote\n\n"
        "def vote(request, thread, choice):\n"
        "    PollVote.objects.update_or_create(thread=thread, voter=request.user, defaults={'choice_hash': choice})\n"),
        "misago/threads/models/poll.py": (
        "from django.db import models\n\n"
        "class PollVote(models.Model):\n"
        "    thread = models.ForeignKey('Thread', on_delete=models.CASCADE)\n"
        "    voter = models.ForeignKey('User', null=True, on_delete=models.SET_NULL)\n\n"
        "    class Meta:\n"
        "        db_table = 'misago_threads_pollvote'\n")},
)


# -- a Rails application --------------------------------------------------------------------------------------------

def rails_tables(md: sa.MetaData) -> None:
    sa.Table("users", md, pk(), sa.Column("email", sa.String(100)))
    sa.Table("groups", md, pk(), sa.Column("name", sa.String(100)))
    sa.Table("groups_users", md, sa.Column("group_id", sa.BigInteger, nullable=False),
             sa.Column("user_id", sa.BigInteger, nullable=False))
    sa.Table("memberships", md, pk(), sa.Column("user_id", sa.BigInteger, nullable=False),
             sa.Column("group_id", sa.BigInteger, nullable=False), sa.Column("created_at", sa.DateTime),
             sa.Index("index_memberships_on_user_id_and_group_id", "user_id", "group_id", unique=True))
    sa.Table("checkins", md, pk(), sa.Column("user_id", sa.BigInteger, nullable=False),
             sa.Column("day", sa.Date, nullable=False), sa.Column("created_at", sa.DateTime),
             sa.Index("index_checkins_on_user_id_and_day", "user_id", "day"))
    sa.Table("comments", md, pk(), sa.Column("user_id", sa.BigInteger, nullable=False),
             sa.Column("body", sa.String(200)), sa.Column("created_at", sa.DateTime),
             sa.Index("index_comments_on_user_id", "user_id"))
    sa.Table("bundle_files", md, pk(), sa.Column("bundle_name", sa.String(100), nullable=False),
             sa.Column("filename", sa.String(200), nullable=False), sa.Column("created_at", sa.DateTime))


def rails_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["users"].insert(), [{"id": i, "email": f"u{i}@x"} for i in range(1, 101)])
    conn.execute(t["groups"].insert(), [{"id": i, "name": f"g{i}"} for i in range(1, 11)])
    conn.execute(t["groups_users"].insert(), [{"group_id": 1 + u % 10, "user_id": u} for u in range(1, 101)]
                 + [{"group_id": 4, "user_id": 3}])
    conn.execute(t["memberships"].insert(), [{"user_id": u, "group_id": 1 + u % 10, "created_at": BASE}
                                             for u in range(1, 101)])
    day = BASE.date()
    conn.execute(t["checkins"].insert(), [
        {"user_id": u, "day": day - d * DAY, "created_at": BASE - d * DAY} for u in range(1, 51) for d in range(3)]
        + [{"user_id": u, "day": day, "created_at": BASE + BURST} for u in (1, 2)])
    conn.execute(t["comments"].insert(), [{"user_id": 1 + n % 20, "body": "x", "created_at": BASE + n * DAY}
                                          for n in range(200)])
    conn.execute(t["bundle_files"].insert(), [{"bundle_name": f"b{n % 5}", "filename": f"f{n}.js",
                                              "created_at": BASE + n * DAY} for n in range(30)])


RAILS = App(
    "rails", rails_tables, rails_rows,
    truth={"groups_users": {frozenset({"group_id", "user_id"})}, "checkins": {frozenset({"user_id", "day"})},
           "bundle_files": {frozenset({"bundle_name", "filename"})}},
    evidence={"groups_users": "has_and_belongs_to_many without a unique index; one pair twice",
              "checkins": "find_or_create_by(user_id:, day:) on a double click; 2 pairs twice, 5 ms apart",
              "bundle_files": "a select then session.add on (bundle_name, filename) (SQLAlchemy code in the repo)"},
    sources={"app/models/checkin.rb": "class Checkin < ApplicationRecord\n  belongs_to :user\nend\n",
             "app/controllers/checkins_controller.rb": (
                 "class CheckinsController < ApplicationController\n"
                 "  def create\n"
                 "    Checkin.find_or_create_by(user_id: current_user.id, day: Date.today)\n"
                 "  end\nend\n"),
             "tools/bundles.py": (
                 "from sqlalchemy import select\n\n"
                 "class BundleFile(Base):\n"
                 "    __tablename__ = 'bundle_files'\n\n"
                 "def remember(session, bundle_name, filename):\n"
                 "    found = session.execute(select(BundleFile).where(BundleFile.bundle_name == bundle_name,\n"
                 "                                                     BundleFile.filename == filename)).first()\n"
                 "    if found is None:\n"
                 "        session.add(BundleFile(bundle_name=bundle_name, filename=filename))\n")},
)

# -- ci results (Linaro SQUAD, before Linaro/squad#1051) ---------------------------------------------------------

def squad_tables(md: sa.MetaData) -> None:
    sa.Table("core_project", md, pk(), sa.Column("slug", sa.String(100), nullable=False, unique=True))
    sa.Table("core_build", md, pk(),
             sa.Column("project_id", bigint(), sa.ForeignKey("core_project.id"), nullable=False, index=True),
             sa.Column("version", sa.String(100), nullable=False),
             sa.Column("created_at", sa.DateTime, nullable=False),
             sa.UniqueConstraint("project_id", "version", name="core_build_uniq"))
    sa.Table("core_environment", md, pk(),
             sa.Column("project_id", bigint(), sa.ForeignKey("core_project.id"), nullable=False, index=True),
             sa.Column("slug", sa.String(100), nullable=False),
             sa.UniqueConstraint("project_id", "slug", name="core_environment_uniq"))
    # one summary per build and environment, kept by create_or_update (a get then a create); Django's indexes only
    sa.Table("core_buildsummary", md, pk(),
             sa.Column("build_id", bigint(), sa.ForeignKey("core_build.id"), nullable=False, index=True),
             sa.Column("environment_id", bigint(), sa.ForeignKey("core_environment.id"), nullable=False, index=True),
             sa.Column("tests_total", sa.Integer, nullable=False), sa.Column("tests_fail", sa.Integer, nullable=False),
             sa.Column("created_at", sa.DateTime, nullable=False))
    # a test run per job submitted: many per build and environment by design (re-runs, several jobs)
    sa.Table("core_testrun", md, pk(),
             sa.Column("build_id", bigint(), sa.ForeignKey("core_build.id"), nullable=False, index=True),
             sa.Column("environment_id", bigint(), sa.ForeignKey("core_environment.id"), nullable=False, index=True),
             sa.Column("job_id", sa.String(128), nullable=False),
             sa.Column("created_at", sa.DateTime, nullable=False))


SQUAD_BUILDS, SQUAD_ENVIRONMENTS = 60, 3


def squad_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    conn.execute(t["core_project"].insert(), [{"id": 1, "slug": "linux"}])
    conn.execute(t["core_build"].insert(), [{"id": b, "project_id": 1, "version": f"v6.{b}",
                                             "created_at": BASE + b * DAY} for b in range(1, SQUAD_BUILDS + 1)])
    conn.execute(t["core_environment"].insert(), [{"id": e, "project_id": 1, "slug": f"env{e}"}
                                                  for e in range(1, SQUAD_ENVIRONMENTS + 1)])
    pairs = [(b, e) for b in range(1, SQUAD_BUILDS + 1) for e in range(1, SQUAD_ENVIRONMENTS + 1)]
    summaries = [{"build_id": b, "environment_id": e, "tests_total": 100 + b, "tests_fail": e,
                  "created_at": BASE + b * DAY + e * DAY / 8} for b, e in pairs]
    # two results of build 42 in environment 2 arrived at once: both create_or_update calls created
    summaries.append({**summaries[(42 - 1) * SQUAD_ENVIRONMENTS + 1], "created_at":
                      summaries[(42 - 1) * SQUAD_ENVIRONMENTS + 1]["created_at"] + 6 * BURST})
    conn.execute(t["core_buildsummary"].insert(), summaries)
    conn.execute(t["core_testrun"].insert(), [
        {"build_id": b, "environment_id": e, "job_id": f"{b}-{e}-{j}", "created_at": BASE + b * DAY + j * DAY / 20}
        for b, e in pairs for j in range(1 + (b + e) % 3)])


SQUAD = App(
    "squad", squad_tables, squad_rows,
    truth={"core_buildsummary": {frozenset({"build_id", "environment_id"})}},
    evidence={"core_buildsummary": "squad/core/models.py BuildSummary.create_or_update: a get then a create per "
                                   "(build, environment), called by parallel result submissions; fixed by a unique "
                                   "constraint in Linaro/squad#1051"},
)


# -- real schemas: the applications' own migrations, dumped (tests/db/corpus/) ------------------------------------

def filled(table: sa.Table, n: int, **values: Any) -> dict[str, Any]:
    """A row for `table`: `values`, and for every other NOT NULL column without a default a value of its type
    that differs per `n` (so that only the columns the generator sets can make rows alike)."""
    row = dict(values)
    for col in table.columns:
        if col.name in row or col.nullable or col.server_default is not None or col.primary_key:
            continue
        if isinstance(col.type, sa.Boolean):
            row[col.name] = False
        elif isinstance(col.type, sa.DateTime):
            row[col.name] = BASE + n * DAY
        elif isinstance(col.type, sa.Date):
            row[col.name] = (BASE + n * DAY).date()
        elif isinstance(col.type, (sa.Integer, sa.Numeric)):
            row[col.name] = n
        else:
            length = getattr(col.type, "length", None) or 40
            row[col.name] = f"{col.name}-{n}"[:length]
    return row


def insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(table.insert(), rows)


DJANGO_CMS_PAGES = 30
SLOTS = ("content", "sidebar", "footer")


def django_cms_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    insert(conn, t["django_site"], [{"id": 1, "domain": "example.org", "name": "example"}])
    insert(conn, t["django_content_type"], [
        filled(t["django_content_type"], i, id=i, app_label=app, model=model)
        for i, (app, model) in enumerate([("cms", "page"), ("cms", "pagecontent"), ("cms", "placeholder"),
                                          ("auth", "user")], start=1)])
    insert(conn, t["auth_user"], [filled(t["auth_user"], i, id=i, username=f"editor{i}", email="",
                                         first_name="", last_name="") for i in range(1, 11)])
    insert(conn, t["cms_usersettings"], [{"user_id": i, "language": "en"} for i in range(1, 11)])
    pages = range(1, DJANGO_CMS_PAGES + 1)
    insert(conn, t["cms_page"], [filled(t["cms_page"], p, id=p, path=f"0001{p:04}", depth=2, numchild=0,
                                        site_id=1, is_home=p == 1) for p in pages])
    insert(conn, t["cms_pagecontent"], [filled(t["cms_pagecontent"], p, id=p, page_id=p, language="en",
                                               template="base.html") for p in pages])
    # one URL per page and language; the home page's path is "" (never NULL: unique_site_language_path holds)
    insert(conn, t["cms_pageurl"], [filled(t["cms_pageurl"], p, page_id=p, language="en", site_id=1,
                                           slug=f"page-{p}", path="" if p == 1 else f"page-{p}", managed=True)
                                    for p in pages])
    # three placeholders per page content (by design: they differ in slot) ...
    holders = [{"slot": slot, "default_width": None, "content_type_id": 2, "object_id": p}
               for p in pages for slot in SLOTS]
    # ... and the race: two editors open page 5 at once, rescan_placeholders_for_obj creates "content" twice
    holders += [{"slot": "content", "default_width": None, "content_type_id": 2, "object_id": 5}]
    insert(conn, t["cms_placeholder"], holders)
    # many plugins per placeholder and language by design (position tells them apart)
    insert(conn, t["cms_cmsplugin"], [
        filled(t["cms_cmsplugin"], n, placeholder_id=1 + n // 4, language="en", position=n % 4,
               plugin_type="TextPlugin", parent_id=None) for n in range(200)])
    # the admin's log: many entries per user, content type and object by design
    insert(conn, t["django_admin_log"], [
        filled(t["django_admin_log"], n, user_id=1 + n % 10, content_type_id=1, object_id=str(1 + n % 30),
               object_repr=f"page {1 + n % 30}", action_flag=2, change_message="[]") for n in range(300)])
    insert(conn, t["django_session"], [filled(t["django_session"], n, session_key=f"k{n:038}",
                                              session_data="e30") for n in range(40)])


DJANGO_CMS = App(
    "django-cms", None, django_cms_rows, dump="django_cms.sql", dumps={"mysql": "django_cms_mariadb.sql"},
    dialects=("postgresql", "mysql"),
    truth={"cms_placeholder": {frozenset({"content_type_id", "object_id", "slot"}),
                               frozenset({"content_type_id", "object_id", "slot", "default_width"})}},
    evidence={"cms_placeholder": (
        "cms/utils/placeholder.py:366-387 (django-cms 5.1.3): rescan_placeholders_for_obj reads the object's "
        "placeholders (Placeholder.objects.get_for_obj) then bulk_creates the declared slots it did not find, on "
        "every render of a page whose placeholders are missing; cms/utils/placeholder.py:442: "
        "placeholder_relation.get_or_create(slot=slot, default_width=default_width). No unique key on "
        "(content_type_id, object_id, slot).")},
    # Not risks, with their evidence: cms/api.py:418 page.urls.update_or_create(page=, language=) is covered by
    # UNIQUE(page_id, language); cms/models/apphooks_reload.py:26,35 get_or_create(pk=1) by the primary key;
    # django/contrib/contenttypes/models.py:56 get_or_create(app_label=, model=) by UNIQUE(app_label, model);
    # django/contrib/auth/backends.py:284 get_or_create(username=) by UNIQUE(username).
)

TRYTON_USERS, TRYTON_PARTIES, TRYTON_TEMPLATES = 8, 30, 30
TRYTON_VIEWS, TRYTON_SHARED_VIEWS = 125, 11
INSTALL = BASE - 30 * DAY


def tryton_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    insert(conn, t["res_user"], [filled(t["res_user"], u, id=u, login=f"user{u}", name=f"User {u}", active=True)
                                 for u in range(1, TRYTON_USERS + 1)])
    insert(conn, t["ir_lang"], [filled(t["ir_lang"], i, id=i, code=code, name=code, direction="ltr",
                                       translatable=True, active=True)
                                for i, code in enumerate(("en", "fr", "de"), start=1)])
    models = ("ir.ui.menu", "party.category", "product.category", "party.party")
    insert(conn, t["ir_model"], [filled(t["ir_model"], i, id=i, name=m) for i, m in enumerate(models, start=1)])
    insert(conn, t["ir_model_field"], [filled(t["ir_model_field"], i, id=i, model=m, name="childs")
                                       for i, m in enumerate(models[:3], start=1)])
    insert(conn, t["currency_currency"], [filled(t["currency_currency"], 1, id=1, code="EUR", name="Euro", digits=2,
                                                 rounding=0.01, active=True)])
    insert(conn, t["party_party"], [filled(t["party_party"], p, id=p, code=str(p), name=f"Party {p}", active=True)
                                    for p in range(1, TRYTON_PARTIES + 1)])
    insert(conn, t["company_company"], [filled(t["company_company"], c, id=c, party=c, currency=1)
                                        for c in (1, 2)])
    # the party's language per company (a MultiValue): one row per party and company ...
    langs = [{"party": p, "company": c, "lang": 1 + p % 3, "create_date": BASE + (p + 40 * c) * DAY, "create_uid": 1}
             for p in range(1, TRYTON_PARTIES + 1) for c in (1, 2)]
    # ... and the race: two saves of party 4's form at once, each found no row for company 1 and made one
    langs += [{"party": 4, "company": 1, "lang": 2, "create_date": BASE + 44 * DAY + BURST, "create_uid": 1}]
    insert(conn, t["party_party_lang"], langs)
    insert(conn, t["product_uom_category"], [filled(t["product_uom_category"], 1, id=1, name="Units")])
    insert(conn, t["product_uom"], [filled(t["product_uom"], 1, id=1, category=1, name="Unit", symbol="u", rate=1.0,
                                           factor=1.0, rounding=1.0, digits=0, active=True)])
    insert(conn, t["product_template"], [
        filled(t["product_template"], n, id=n, name=f"Product {n}", type="goods", default_uom=1, active=True)
        for n in range(1, TRYTON_TEMPLATES + 1)])
    insert(conn, t["product_product"], [filled(t["product_product"], n, id=n, template=n, active=True)
                                        for n in range(1, TRYTON_TEMPLATES + 1)])
    # the list price per template and company (a MultiValue), and one template's price saved twice at once
    prices = [{"template": n, "company": c, "product": None, "list_price": 10 + n,
               "create_date": BASE + (n + 40 * c) * DAY, "create_uid": 1}
              for n in range(1, TRYTON_TEMPLATES + 1) for c in (1, 2)]
    prices += [{"template": 3, "company": 2, "product": None, "list_price": 13, "create_date": BASE + 83 * DAY + BURST,
                "create_uid": 1}]
    insert(conn, t["product_list_price"], prices)
    # a tree's expanded nodes per user, model, domain and child field: set() searches, deletes, creates
    states = [{"user": u, "model": model, "domain": "[]", "child_name": "childs", "nodes": "[]",
               "selected_nodes": "[]", "create_date": BASE + u * DAY, "create_uid": u}
              for u in range(1, TRYTON_USERS + 1) for model in ("ir.ui.menu", "party.category", "product.category")]
    states += [{"user": 2, "model": "ir.ui.menu", "domain": "[]", "child_name": "childs", "nodes": "[[1]]",
                "selected_nodes": "[]", "create_date": BASE + 2 * DAY + BURST, "create_uid": 2}]
    insert(conn, t["ir_ui_view_tree_state"], states)
    # the modules' XML data, written by `trytond-admin` in one transaction (one create_date for every row, by root):
    # 125 views, 11 of them shown by two window actions (a fresh install of these modules has exactly this)
    insert(conn, t["ir_ui_view"], [filled(t["ir_ui_view"], v, id=v, model="party.party", priority=16, type="tree")
                                   for v in range(1, TRYTON_VIEWS + 1)])
    actions = range(1, TRYTON_VIEWS + TRYTON_SHARED_VIEWS + 1)
    insert(conn, t["ir_action"], [filled(t["ir_action"], a, id=a, name=f"Action {a}", type="ir.action.act_window",
                                         active=True, create_date=INSTALL, create_uid=0) for a in actions])
    insert(conn, t["ir_action_act_window"], [filled(t["ir_action_act_window"], a, id=a, action=a,
                                                    res_model="party.party", create_date=INSTALL, create_uid=0)
                                             for a in actions])
    insert(conn, t["ir_action_act_window_view"], [
        {"act_window": a, "view": a if a <= TRYTON_VIEWS else a - TRYTON_VIEWS, "active": True, "sequence": 20,
         "create_date": INSTALL, "create_uid": 0} for a in actions])


TRYTON = App(
    "tryton", None, tryton_rows, dump="tryton.sql", dialects=("postgresql",),
    truth={"party_party_lang": {frozenset({"party", "company"}), frozenset({"party", "company", "lang"})},
           "product_list_price": {frozenset({"template", "company"}), frozenset({"template", "company", "product"}),
                                  frozenset({"template", "company", "product", "list_price"})},
           "ir_ui_view_tree_state": {frozenset({"user", "model", "domain", "child_name"})}},
    evidence={
        "party_party_lang": (
            "trytond/modules/party/party.py:59 lang = fields.MultiValue(...); trytond/model/multivalue.py:80-96 "
            "set_multivalue reads the party's values for the pattern (company) and, when none matches, saves a new "
            "one: no unique key over (party, company), only an index on party"),
        "product_list_price": (
            "trytond/modules/product/product.py:153 list_price = fields.MultiValue(...) per company; "
            "trytond/model/multivalue.py:80-96 (read, then save a new value when none matches); no unique key over "
            "(template, company)"),
        "ir_ui_view_tree_state": (
            "trytond/ir/ui/view.py:861-880 ViewTreeState.set: search(user, model, domain, child_name), delete, "
            "create; two requests at once both create. A non-unique index over (user, model, "
            "COALESCE(child_name, ''), domain)")},
    # --source: ViewTreeState.set reduced from trytond/ir/ui/view.py (develop 3df41d95: lines 506-561; 8.2's own
    # ViewTreeState.set has the same search, delete, create); MultiValue's generic set_multivalue is not readable
    # as a lookup of one table, so the value tables are found from the catalog and the data alone.
    sources={"trytond/ir/ui/view.py": (
        "import json\n\n"
        "from trytond.model import ModelSQL, ModelView, fields\n"
        "from trytond.transaction import Transaction\n\n\n"
        "class ViewTreeState(ModelSQL, ModelView):\n"
        "    'View Tree State'\n"
        "    __name__ = 'ir.ui.view_tree_state'\n"
        "    model = fields.Char('Model', required=True)\n"
        "    domain = fields.Char('Domain', required=True)\n"
        "    user = fields.Many2One('res.user', 'User', required=True, ondelete='CASCADE')\n"
        "    child_name = fields.Char('Child Name')\n"
        "    nodes = fields.Text('Expanded Nodes')\n"
        "    selected_nodes = fields.Text('Selected Nodes')\n\n"
        "    @classmethod\n"
        "    def set(cls, model, domain, child_name, nodes, selected_nodes):\n"
        "        domain = json.dumps(json.loads(domain), separators=(',', ':'))\n"
        "        current_user = Transaction().user\n"
        "        records = cls.search([\n"
        "                ('user', '=', current_user),\n"
        "                ('model', '=', model),\n"
        "                ('domain', '=', domain),\n"
        "                ('child_name', '=', child_name),\n"
        "                ])\n"
        "        cls.delete(records)\n"
        "        cls.create([{'user': current_user, 'model': model, 'domain': domain, 'child_name': child_name,\n"
        "                     'nodes': nodes, 'selected_nodes': selected_nodes}])\n")},
    # Not risks: ir_action_act_window_view(view, active): one view in several actions is the modules' own XML data
    # (a fresh install has 30 such views); ir_ui_view_tree_width is protected by an EXCLUDE constraint over
    # (model, field, occurrence, user, COALESCE(screen_width, -1)); currency_currency_rate by UNIQUE(date, currency).
)

def mediawiki_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    users = range(1, 121)
    # MediaWiki lets accounts share an email address (a bot account and its owner's): Editor12 and Editor19,
    # registered a week apart, share one
    insert(conn, t["user"], [filled(t["user"], u, user_id=u, user_name=f"Editor{u}",
                                    user_email=f"e{12 if u == 19 else u}@example.org",
                                    user_registration=BASE + u * DAY) for u in users])
    # the users' actors, and one actor per IP that edited (actor_user NULL): most actors of a public wiki
    actors = [{"actor_id": u, "actor_user": u, "actor_name": f"Editor{u}"} for u in users]
    actors += [{"actor_id": 1000 + n, "actor_user": None, "actor_name": f"192.0.2.{n}"} for n in range(1, 41)]
    insert(conn, t["actor"], actors)
    pages = range(1, 41)
    insert(conn, t["page"], [filled(t["page"], p, page_id=p, page_namespace=p % 3, page_title=f"Title_{p}",
                                    page_random=p / 41, page_latest=p * 10) for p in pages])
    # many revisions per page and per actor by design
    insert(conn, t["revision"], [filled(t["revision"], n, rev_id=n, rev_page=1 + n % 40, rev_comment_id=n,
                                        rev_actor=1 + n % 20, rev_timestamp=BASE + n * DAY / 10, rev_sha1=f"s{n}")
                                 for n in range(1, 301)])
    insert(conn, t["watchlist"], [{"wl_user": u, "wl_namespace": p % 3, "wl_title": f"Title_{p}"}
                                  for u in users for p in range(u, u + 5)])
    insert(conn, t["user_properties"], [{"up_user": u, "up_property": prop, "up_value": "1"}
                                        for u in users for prop in ("skin", "language", "gender")])
    # the "you have new messages" flag: one row per user or IP whose talk page changed ...
    newtalk = [{"user_id": u, "user_ip": "", "user_last_timestamp": BASE + u * DAY} for u in range(1, 9)]
    newtalk += [{"user_id": 0, "user_ip": f"192.0.2.{n}", "user_last_timestamp": BASE + n * DAY} for n in range(1, 6)]
    # ... and two messages left on Editor3's talk page at once: two rows for one user
    newtalk += [{"user_id": 3, "user_ip": "", "user_last_timestamp": BASE + 3 * DAY}]
    insert(conn, t["user_newtalk"], newtalk)
    # special pages' cached results: the whole list per type, rewritten by updateSpecialPages
    insert(conn, t["querycache"], [{"qc_type": qt, "qc_value": n % 4, "qc_namespace": 0, "qc_title": f"Title_{n}"}
                                   for qt in ("Lonelypages", "Uncategorizedpages", "Wantedpages")
                                   for n in range(1, 26)])
    insert(conn, t["change_tag_def"], [{"ctd_id": i, "ctd_name": name, "ctd_user_defined": 0, "ctd_count": 50}
                                       for i, name in enumerate(("mw-reverted", "mw-undo", "visualeditor"), start=1)])
    # tags on edits (rc and rev set, log NULL) and on log entries (rc and log set, rev NULL)
    tags = [{"ct_rc_id": n, "ct_rev_id": n, "ct_log_id": None, "ct_tag_id": 1 + n % 3} for n in range(1, 121)]
    tags += [{"ct_rc_id": 1000 + n, "ct_rev_id": None, "ct_log_id": n, "ct_tag_id": 1 + n % 3} for n in range(1, 11)]
    insert(conn, t["change_tag"], tags)
    # the same URL linked from many pages, many URLs per page
    insert(conn, t["externallinks"], [{"el_from": p, "el_to_domain_index": f"https://org.example{d}.",
                                       "el_to_path": f"/doc/{d}"} for p in pages for d in range(p % 5, p % 5 + 4)])
    # refreshLinks jobs: one per page edit, several per title waiting at once; job_sha1 '' (not deduplicated)
    insert(conn, t["job"], [filled(t["job"], n, job_cmd="refreshLinks", job_namespace=0,
                                   job_title=f"Title_{1 + n % 10}", job_params="a:0:{}",
                                   job_timestamp=BASE + n * DAY / 24, job_sha1="") for n in range(60)])
    insert(conn, t["categorylinks"], [filled(t["categorylinks"], n, cl_from=p, cl_to=f"Cat{c}",
                                             cl_timestamp=BASE + p * DAY) for n, (p, c) in
                                      enumerate((p, c) for p in pages for c in range(p % 3, p % 3 + 2))])
    insert(conn, t["logging"], [filled(t["logging"], n, log_type="patrol", log_action="patrol",
                                       log_timestamp=BASE + n * DAY / 5, log_actor=1 + n % 20, log_namespace=0,
                                       log_title=f"Title_{1 + n % 40}", log_page=1 + n % 40, log_comment_id=n,
                                       log_params="a:0:{}") for n in range(200)])
    # several blocks of one target (multiblocks: a sitewide and a partial block)
    insert(conn, t["block"], [filled(t["block"], n, bl_target=1 + n // 2, bl_by_actor=1, bl_reason_id=n,
                                     bl_timestamp=BASE + n * DAY, bl_expiry=BASE + (n + 30) * DAY,
                                     bl_sitewide=n % 2) for n in range(20)])


MEDIAWIKI = App(
    "mediawiki", None, mediawiki_rows, dump="mediawiki.sql", dialects=("postgresql",),
    truth={"user_newtalk": {frozenset({"user_id", "user_ip", "user_last_timestamp"})}},
    evidence={"user_newtalk": (
        "includes/user/TalkPageNotificationManager.php (dbUpdateNewtalk): INSERT IGNORE INTO user_newtalk "
        "(user_id or user_ip, user_last_timestamp) on every edit of a user's talk page; the table has no primary "
        "or unique key, so IGNORE ignores nothing and two edits at once leave two identical rows")},
    # Not risks: change_tag's three unique keys each hold a nullable column (ct_log_id is NULL on every edit's tag)
    # but the other two keys cover those rows (UNIQUE(ct_rc_id, ct_tag_id)); actor(actor_user) is NULL for every IP
    # actor, covered by UNIQUE(actor_name); querycache is the special pages' cached lists (the whole list per type,
    # rewritten); job rows repeat per title (refreshLinks for each edit, job_sha1 '' when not deduplicated);
    # block repeats per target (a sitewide and a partial block); externallinks repeats a URL across pages.
)


def wordpress_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    users = range(1, 151)
    people = [filled(t["wp_users"], u, ID=u, user_login=f"reader{u}", user_nicename=f"reader{u}",
                     user_email=f"reader{u}@example.org", user_registered=BASE + u * DAY) for u in users]
    # accounts imported with WP_IMPORTING set may share an email: reader140 and reader139, registered apart
    people[139]["user_email"] = "reader139@example.org"
    # the race: one registration form submitted twice at once; both passed username_exists()
    people += [filled(t["wp_users"], 151, ID=151, user_login="reader7", user_nicename="reader7",
                      user_email="reader7@example.org", user_registered=BASE + 7 * DAY)]
    insert(conn, t["wp_users"], people)
    # many meta keys per user; wp_capabilities and wp_user_level once per user
    insert(conn, t["wp_usermeta"], [{"user_id": u, "meta_key": k, "meta_value": "x"}
                                    for u in users for k in ("nickname", "wp_capabilities", "wp_user_level",
                                                             "session_tokens")])
    posts = range(1, 61)
    insert(conn, t["wp_posts"], [filled(t["wp_posts"], p, ID=p, post_author=1 + p % 5, post_date=BASE + p * DAY,
                                        post_date_gmt=BASE + p * DAY, post_name=f"post-{p}" if p % 10 else "",
                                        post_status="publish" if p % 10 else "auto-draft", post_type="post",
                                        post_parent=0, post_modified=BASE + p * DAY,
                                        post_modified_gmt=BASE + p * DAY) for p in posts])
    # post meta: one _edit_last per post; several _wp_old_slug per renamed post by design (add_post_meta, not unique)
    meta = [{"post_id": p, "meta_key": "_edit_last", "meta_value": "1"} for p in posts]
    meta += [{"post_id": p, "meta_key": "_wp_old_slug", "meta_value": f"old-{p}-{n}"} for p in range(1, 21)
             for n in range(3)]
    insert(conn, t["wp_postmeta"], meta)
    terms = range(1, 41)
    # a category and a tag may share a name (their slugs differ: "news", "news-2"): terms 4 and 17 are both "News"
    insert(conn, t["wp_terms"], [{"term_id": i, "name": "News" if i in (4, 17) else f"Topic {i}",
                                  "slug": {4: "news", 17: "news-2"}.get(i, f"topic-{i}"), "term_group": 0}
                                 for i in terms])
    insert(conn, t["wp_term_taxonomy"], [{"term_taxonomy_id": i, "term_id": i, "taxonomy": "category" if i < 6
                                          else "post_tag", "description": "", "parent": 0, "count": 3} for i in terms])
    insert(conn, t["wp_term_relationships"], [{"object_id": p, "term_taxonomy_id": 1 + (p + k) % 20, "term_order": 0}
                                              for p in posts for k in range(3)])
    # many comments per post and per author email by design
    insert(conn, t["wp_comments"], [filled(t["wp_comments"], n, comment_post_ID=1 + n % 60,
                                           comment_author=f"Reader {1 + n % 9}",
                                           comment_author_email=f"reader{1 + n % 9}@example.org",
                                           comment_date=BASE + n * DAY / 3, comment_date_gmt=BASE + n * DAY / 3,
                                           comment_content=f"c{n}", comment_approved="1", comment_type="comment",
                                           comment_parent=0, user_id=0) for n in range(200)])
    insert(conn, t["wp_options"], [{"option_name": f"opt_{n}", "option_value": "v",
                                    "autoload": "yes" if n % 3 else "no"} for n in range(50)])


WORDPRESS = App(
    "wordpress", None, wordpress_rows, dump="wordpress_mariadb.sql", dialects=("mysql",),
    truth={"wp_users": {frozenset({"user_login"}), frozenset({"user_email"}), frozenset({"user_nicename"})}},
    evidence={"wp_users": (
        "wp-includes/user.php wp_insert_user: username_exists($user_login) and email_exists($user_email), then "
        "$wpdb->insert($wpdb->users, ...); user_nicename made unique by a SELECT loop before the insert; "
        "wp_users has only non-unique indexes on user_login, user_nicename and user_email")},
    # Not risks: postmeta / usermeta repeat (post_id, meta_key) by design (add_post_meta($id, '_wp_old_slug', ...)
    # keeps every old slug; multi-valued meta); comments repeat per post and author email; term_relationships and
    # options are keyed.
)


def matomo_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    logins = [f"analyst{n}" for n in range(1, 11)]
    insert(conn, t["matomo_user"], [filled(t["matomo_user"], n, login=login, email=f"{login}@example.org",
                                           date_registered=BASE + n * DAY) for n, login in enumerate(logins)])
    insert(conn, t["matomo_site"], [filled(t["matomo_site"], s, idsite=s, name=f"Site {s}", ts_created=BASE)
                                    for s in range(1, 6)])
    insert(conn, t["matomo_site_url"], [{"idsite": s, "url": f"https://s{s}.example.org"} for s in range(1, 6)])
    # a role per login and site, and the capabilities granted next to it (tagmanager_write, ...): several rows per
    # (login, idsite) by design
    access = [{"login": login, "idsite": s, "access": "view"} for login in logins for s in range(1, 6)]
    access += [{"login": login, "idsite": s, "access": cap} for login in logins[:6] for s in range(1, 4)
               for cap in ("tagmanager_write", "tagmanager_publish_live_container")]
    insert(conn, t["matomo_access"], access)
    insert(conn, t["matomo_twofactor_recovery_code"], [{"login": login, "recovery_code": f"{login}-{n}"}
                                                       for login in logins[:4] for n in range(10)])
    insert(conn, t["matomo_plugin_setting"], [{"plugin_name": p, "setting_name": f"s{n}", "setting_value": "1",
                                               "json_encoded": 0, "user_login": login}
                                              for p in ("CoreHome", "Live") for login in ("", *logins[:3])
                                              for n in range(3)])
    # the actions: one row per (type, hash) ...
    actions = [{"idaction": n, "name": f"example.org/page/{n}", "hash": 1_000_003 * n % 4_294_967_291,
                "type": 1 + n % 4, "url_prefix": 1 if n % 4 == 0 else None} for n in range(1, 301)]
    # ... and the race: two trackers hit a new page at once, neither found it by (type, hash), both inserted it
    actions += [{"idaction": 301, "name": "example.org/page/42", "hash": 1_000_003 * 42 % 4_294_967_291,
                 "type": 1 + 42 % 4, "url_prefix": None}]
    insert(conn, t["matomo_log_action"], actions)
    visits = range(1, 201)
    insert(conn, t["matomo_log_visit"], [{"idvisit": v, "idsite": 1 + v % 5, "idvisitor": f"{v % 70:08}".encode(),
                                          "visit_last_action_time": BASE + v * DAY / 20,
                                          "config_id": f"{v % 90:08}".encode(), "location_ip": b"\xc0\x00\x02\x01"}
                                         for v in visits])
    insert(conn, t["matomo_log_link_visit_action"], [
        {"idsite": 1 + v % 5, "idvisitor": f"{v % 70:08}".encode(), "idvisit": v, "idaction_url_ref": 1 + (v + k) % 300,
         "idaction_name_ref": 1 + (v * k) % 300, "pageview_position": k} for v in visits for k in range(1, 4)])
    insert(conn, t["matomo_option"], [{"option_name": f"opt_{n}", "option_value": "v", "autoload": n % 2}
                                      for n in range(40)])


MATOMO = App(
    "matomo", None, matomo_rows, dump="matomo_mariadb.sql", dialects=("mysql",),
    truth={"matomo_log_action": {frozenset({"type", "hash"})}},
    evidence={"matomo_log_action": (
        "core/Tracker/TableLogAction.php: the tracker looks actions up by (type, hash) through index_type_hash and "
        "inserts the ones it did not find, with no unique key; plugins/CoreAdminHome/Commands/"
        "FixDuplicateLogActions.php (core:fix-duplicate-log-actions) exists to merge the duplicates this leaves")},
    # Not risks: access repeats (login, idsite) by design (a role row and its capability rows: tagmanager_write,
    # ...); plugin_setting repeats (plugin_name, user_login) per setting; twofactor_recovery_code holds ten codes
    # per login; log_visit and log_link_visit_action repeat per site and visitor.
)


def osticket_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    insert(conn, t["ost_organization"], [filled(t["ost_organization"], o, id=o, name=f"Org {o}", created=BASE,
                                                updated=BASE) for o in range(1, 11)])
    # two people named John Smith, registered months apart (each with their own email): ost_user(name) repeats by
    # design
    insert(conn, t["ost_user"], [filled(t["ost_user"], u, id=u, org_id=u % 10, default_email_id=u,
                                        name="John Smith" if u in (7, 150) else f"User {u}",
                                        created=BASE + u * DAY / 5, updated=BASE + u * DAY / 5)
                                 for u in range(1, 301)])
    emails = [{"id": u, "user_id": u, "flags": 0, "address": f"u{u}@example.org"} for u in range(1, 301)]
    emails += [{"id": 300 + n, "user_id": u, "flags": 0, "address": f"u{u}@work.example"}
               for n, u in enumerate((12, 80), start=1)]
    insert(conn, t["ost_user_email"], emails)
    insert(conn, t["ost_user_account"], [filled(t["ost_user_account"], a, id=a, user_id=2 * a, status=1,
                                                passwd="x", registered=BASE + a * DAY / 2) for a in range(1, 101)])
    insert(conn, t["ost_staff"], [filled(t["ost_staff"], s, staff_id=s, dept_id=1 + s % 3, role_id=1,
                                         username=f"agent{s}", email=f"a{s}@help.example", created=BASE,
                                         updated=BASE) for s in range(1, 13)])
    # the install's departments: top-level ones have pid NULL (Dept::update: `$this->pid = $vars['pid'] ?: null`)
    insert(conn, t["ost_department"], [filled(t["ost_department"], d, id=d, pid=pid, name=name, path=path,
                                              signature="", created=BASE, updated=BASE)
                                       for d, pid, name, path in ((1, None, "Support", "/1/"),
                                                                  (2, None, "Sales", "/2/"),
                                                                  (3, 1, "Level 2", "/1/3/"))])
    insert(conn, t["ost_form"], [filled(t["ost_form"], f, id=f, type=kind, flags=1, title=title, created=BASE,
                                        updated=BASE)
                                 for f, kind, title in ((1, "U", "Contact Information"), (2, "T", "Ticket Details"),
                                                        (5, "G", "Hardware request"))])
    insert(conn, t["ost_help_topic"], [filled(t["ost_help_topic"], h, topic_id=h, topic=topic, topic_pid=0,
                                              dept_id=1, created=BASE, updated=BASE)
                                       for h, topic in ((1, "General Inquiry"), (2, "Hardware"))])
    insert(conn, t["ost_help_topic_form"], [{"id": 1, "topic_id": 1, "form_id": 2, "sort": 1},
                                            {"id": 2, "topic_id": 2, "form_id": 2, "sort": 1},
                                            {"id": 3, "topic_id": 2, "form_id": 5, "sort": 2}])
    tickets = range(1, 401)
    born = {n: BASE + n * DAY / 8 for n in tickets}
    insert(conn, t["ost_ticket"], [filled(t["ost_ticket"], n, ticket_id=n, number=str(100000 + n),
                                          user_id=1 + n % 300, status_id=1 + n % 3, dept_id=1 + n % 3,
                                          topic_id=2 if n % 40 == 0 else 1, staff_id=n % 12, ip_address="10.0.0.1",
                                          source="Web", created=born[n], updated=born[n]) for n in tickets])
    # a thread per ticket, and per task (object_type 'A'): object_id repeats across the two
    threads = [{"id": n, "object_id": n, "object_type": "T", "created": born[n]} for n in tickets]
    threads += [{"id": 400 + n, "object_id": n, "object_type": "A", "created": BASE + n * DAY * 0.7}
                for n in range(1, 31)]
    insert(conn, t["ost_thread"], threads)
    insert(conn, t["ost_task"], [filled(t["ost_task"], n, id=n, object_id=7 * n, object_type="T", number=f"t{n}",
                                        dept_id=1, staff_id=n % 12, created=BASE + n * DAY * 0.7,
                                        updated=BASE + n * DAY * 0.7) for n in range(1, 31)])
    insert(conn, t["ost_thread_entry"], [filled(t["ost_thread_entry"], n, id=n, thread_id=1 + n % 400,
                                                staff_id=n % 12 if n % 2 == 0 else 0,
                                                user_id=0 if n % 2 == 0 else 1 + n % 300,
                                                type="R" if n % 2 == 0 else "M", poster="p", body=f"body {n}",
                                                created=BASE + n * DAY / 30, updated=BASE + n * DAY / 30)
                                         for n in range(1, 1201)])
    # a ticket's form entries, one per form, written with the ticket (TicketForm, and the Hardware topic's form):
    # (object_type, object_id) repeats in the ticket's second, for entries of different forms
    entries = [{"id": n, "form_id": 2, "object_id": n, "object_type": "T", "sort": 1, "created": born[n],
                "updated": born[n]} for n in tickets]
    entries += [{"id": 1000 + n, "form_id": 5, "object_id": n, "object_type": "T", "sort": 2, "created": born[n],
                 "updated": born[n]} for n in tickets if n % 40 == 0]
    entries += [{"id": 2000 + u, "form_id": 1, "object_id": u, "object_type": "U", "sort": 1,
                 "created": BASE + u * DAY / 5, "updated": BASE + u * DAY / 5} for u in range(1, 301)]
    insert(conn, t["ost_form_entry"], entries)
    insert(conn, t["ost_thread_collaborator"], [filled(t["ost_thread_collaborator"], n, id=n, flags=3,
                                                       thread_id=3 * n, user_id=1 + 7 * n % 300, role="M",
                                                       created=BASE, updated=BASE) for n in range(1, 51)])
    # drafts: several agents drafting a response to one ticket
    insert(conn, t["ost_draft"], [filled(t["ost_draft"], n, id=n, staff_id=1 + n % 12,
                                         namespace=f"ticket.response.{1 + n % 60}", body="draft",
                                         created=BASE + n * DAY / 24) for n in range(1, 81)])
    insert(conn, t["ost_lock"], [filled(t["ost_lock"], n, lock_id=n, staff_id=1 + n % 12, code=f"c{n}",
                                        expire=BASE + n * DAY / 24, created=BASE + n * DAY / 24)
                                 for n in range(1, 41)])
    insert(conn, t["ost_syslog"], [filled(t["ost_syslog"], n, log_id=n, log_type="Warning", title="Invalid login",
                                          log="x", logger="", ip_address="10.0.0.1", created=BASE + n * DAY / 1440,
                                          updated=BASE) for n in range(1, 201)])
    insert(conn, t["ost_team"], [filled(t["ost_team"], n, team_id=n, lead_id=n, flags=1, name=f"Tier {n}",
                                        created=BASE, updated=BASE) for n in (1, 2)])
    insert(conn, t["ost_team_member"], [{"team_id": 1 + s % 2, "staff_id": s, "flags": 0} for s in range(1, 13)])
    config = [{"namespace": "core", "key": f"k{n}", "value": "v"} for n in range(60)]
    config += [{"namespace": f"plugin.{n}", "key": "enabled", "value": "1"} for n in range(3)]
    insert(conn, t["ost_config"], config)
    insert(conn, t["ost_thread_event"], [filled(t["ost_thread_event"], n, id=n, thread_id=1 + n % 400,
                                                thread_type="T", event_id=1 + n % 8, staff_id=n % 12, team_id=0,
                                                dept_id=1, topic_id=1, username="SYSTEM", uid_type="S", annulled=0,
                                                timestamp=BASE + n * DAY / 36) for n in range(1, 1501)])


OSTICKET = App(
    "osticket", None, osticket_rows, dump="osticket_mariadb.sql", dialects=("mysql",),
    truth={"ost_department": {frozenset({"name", "pid"})}},
    evidence={"ost_department": (
        "include/class.dept.php: Dept::update checks getIdByName($vars['name'], $vars['pid']) and then saves, "
        "with `$this->pid = $vars['pid'] ?: null`: every top-level department has pid NULL, which the "
        "UNIQUE(name, pid) key treats as distinct, so two top-level departments of one name are not stopped")},
    # Not risks: ost_form_entry repeats (object_type, object_id) for a ticket's entries of different forms (form_id,
    # a reference by name), written in the ticket's second; ost_user(name): two people named John Smith; ost_thread
    # repeats object_id for a ticket and a task; drafts, locks, syslog, thread entries and events repeat by design.
)

def kanboard_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    epoch = 1_790_000_000  # Kanboard stores its times as integer epochs: no date-and-time column dates a row
    users = range(1, 41)
    # emails repeat (a shared team address) and are NULL for some accounts: no key, no lookup
    insert(conn, t["users"], [filled(t["users"], u, id=u, username=f"user{u}", role="app-user",
                                     email=None if u % 7 == 0 else "team@example.org" if u in (5, 6)
                                     else f"u{u}@example.org") for u in users])
    projects = range(1, 6)
    insert(conn, t["projects"], [filled(t["projects"], p, id=p, name=f"Project {p}") for p in projects])
    insert(conn, t["columns"], [filled(t["columns"], n, id=4 * (p - 1) + n, title=title, position=n, project_id=p)
                                for p in projects for n, title in enumerate(("Backlog", "Ready", "Doing", "Done"), 1)])
    insert(conn, t["swimlanes"], [filled(t["swimlanes"], p, id=p, name="Default swimlane", project_id=p)
                                  for p in projects])
    insert(conn, t["project_has_users"], [{"project_id": p, "user_id": u, "role": "project-member"}
                                          for u in users for p in projects if (u + p) % 3 == 0])
    # tasks made by GitHub webhooks carry the issue number as reference: projects 1 and 2 follow two repositories,
    # the same numbers in both; tasks made by hand keep the default ''; a closed task re-created under its title
    tasks = [filled(t["tasks"], n, id=n, title=f"Task {n}", project_id=1 + (n - 1) // 60,
                    column_id=4 * ((n - 1) // 60) + 1 + n % 4, swimlane_id=1 + (n - 1) // 60,
                    date_creation=epoch + 3600 * n, is_active=n % 4 != 0, creator_id=1 + n % 40,
                    reference=str((n - 1) % 60 + 1) if (n - 1) // 60 < 2 and (n - 1) % 60 < 30 else "")
             for n in range(1, 301)]
    tasks.append({**tasks[127], "id": 301, "is_active": True, "date_creation": epoch + 3600 * 128 + 7 * 86400})
    # the race: GitHub redelivered issue 17's "opened" event to project 1: a second task, same second
    tasks.append({**tasks[16], "id": 302})
    insert(conn, t["tasks"], tasks)
    # comments: many per task; webhook comments carry their GitHub comment id, hand-written ones the default ''
    comments = [filled(t["comments"], m, id=m, task_id=1 + m % 300, user_id=1 + m % 40, date_creation=epoch + 1800 * m,
                       comment=f"comment {m}", reference=f"github-{9000 + m}" if m % 3 == 0 else "")
                for m in range(1, 601)]
    comments.append({**comments[2], "id": 601})  # the same webhook comment delivered twice
    insert(conn, t["comments"], comments)
    insert(conn, t["last_logins"], [{"auth_type": "Database", "user_id": u, "ip": f"10.0.0.{u}",
                                     "user_agent": "Firefox", "date_creation": epoch + 7200 * (10 * u + k)}
                                    for u in users for k in range(5)])
    # password resets: used ones inactive; two users asked twice days apart, one submitted the form twice
    resets = [{"token": f"tok{u}", "user_id": u, "date_expiration": epoch + 86400 * (u + 3),
               "date_creation": epoch + 86400 * u, "ip": "10.0.0.1", "user_agent": "Firefox", "is_active": u > 15}
              for u in range(1, 21)]
    resets += [{**resets[u - 1], "token": f"tok{u}b", "date_creation": epoch + 86400 * (u + 2), "is_active": True}
               for u in (8, 9)]
    resets += [{**resets[19], "token": "tok20b"}]
    insert(conn, t["password_reset"], resets)
    insert(conn, t["remember_me"], [{"user_id": u, "ip": "10.0.0.1", "user_agent": "Firefox", "token": f"rm{u}-{k}",
                                     "sequence": f"s{u}-{k}", "expiration": epoch + 30 * 86400,
                                     "date_creation": epoch + 86400 * k} for u in users for k in range(u % 3)])
    links = [filled(t["task_has_external_links"], 10 * n + k, link_type="weblink", dependency="related",
                    title=f"doc {n}-{k}", url=f"https://docs.example.org/{n}/{k}", date_creation=epoch + 3600 * n,
                    date_modification=epoch + 3600 * n, task_id=n, creator_id=1 + n % 40)
             for n in range(1, 301) for k in range(n % 3)]
    insert(conn, t["task_has_external_links"], [*links, dict(links[10])])  # one link submitted twice
    insert(conn, t["subtasks"], [filled(t["subtasks"], s, id=s, title=f"step {s % 3}", status=s % 3,
                                        task_id=1 + (s - 1) // 3, user_id=None if s % 3 == 0 else 1 + s % 40,
                                        position=1 + s % 3) for s in range(1, 301)])
    # many timers per (user, subtask) by design; one timer started twice
    timers = [{"user_id": 1 + s % 40, "subtask_id": s, "start": epoch + 3600 * s + 86400 * k,
               "end": epoch + 3600 * s + 86400 * k + 1800, "time_spent": 0.5} for s in range(1, 121) for k in range(3)]
    timers += [{"user_id": 11, "subtask_id": 50, "start": epoch + 3600 * 50 + 9 * 86400, "end": 0, "time_spent": 0}] * 2
    insert(conn, t["subtask_time_tracking"], timers)
    insert(conn, t["user_has_unread_notifications"], [
        {"user_id": 1 + m % 40, "date_creation": epoch + 600 * m, "event_name": "task.create",
         "event_data": f'{{"task_id": {m}}}'} for m in range(1, 301)])
    insert(conn, t["project_activities"], [
        {"date_creation": epoch + 600 * m, "event_name": "task.move.column", "creator_id": 1 + m % 40,
         "project_id": 1 + m % 5, "task_id": 1 + m % 300, "data": "{}"} for m in range(1, 801)])
    insert(conn, t["transitions"], [
        {"user_id": 1 + m % 40, "project_id": 1 + (m % 300) // 60, "task_id": 1 + m % 300,
         "src_column_id": 4 * ((m % 300) // 60) + 1, "dst_column_id": 4 * ((m % 300) // 60) + 2,
         "date": epoch + 900 * m, "time_spent": 3600} for m in range(1, 401)])
    # every member keeps a filter named "My open tasks" per project
    insert(conn, t["custom_filters"], [{"filter": "status:open assignee:me", "project_id": p, "user_id": u,
                                        "name": "My open tasks", "is_shared": False, "append": False}
                                       for p in projects for u in users if (u + p) % 3 == 0])
    insert(conn, t["groups"], [{"id": g, "external_id": "", "name": f"Group {g}"} for g in (1, 2, 3)])
    insert(conn, t["group_has_users"], [{"group_id": 1 + u % 3, "user_id": u} for u in users])


KANBOARD = App(
    "kanboard", None, kanboard_rows, dump="kanboard.sql", dialects=("postgresql",),
    truth={"tasks": {frozenset({"reference"})}, "comments": {frozenset({"reference"})}},
    evidence={"tasks": (
        "app/Model/TaskFinderModel.php getByReference($project_id, $reference): the GitHub/GitLab webhooks find a "
        "task by its issue number per project; app/Action/TaskCreation.php inserts one per 'opened' event, so a "
        "redelivered event makes a second task (only a non-unique index on reference)"),
        "comments": (
        "app/Action/CommentCreation.php inserts a comment per webhook event with the external comment's id as "
        "reference (indexed, not unique): a redelivered event makes a second copy")},
    # Not risks: reference '' (the column default) on every task and comment made by hand; password_reset repeats
    # per user (each request inserts a token; all a user's tokens are disabled on use); last_logins, remember_me,
    # transitions, activities, unread notifications and time-tracking rows repeat by design; custom_filters'
    # names repeat per user. A link or timer submitted twice has no index, key or lookup to show it to the catalog.
)


WAGTAIL_PAGES, WAGTAIL_TICKETS = 40, 300
TAGS = ("news", "django", "python", "wagtail", "db", "race")


def wagtail_rows(conn: sa.Connection, md: sa.MetaData) -> None:
    t = md.tables
    insert(conn, t["django_content_type"], [{"id": 1, "app_label": "wagtailcore", "model": "page"},
                                            {"id": 2, "app_label": "blog", "model": "blogpage"},
                                            {"id": 3, "app_label": "blog", "model": "ticket"}])
    insert(conn, t["auth_user"], [filled(t["auth_user"], i, id=i, username=f"editor{i}", email=f"e{i}@x.org")
                                  for i in range(1, 21)])
    insert(conn, t["wagtailcore_locale"], [{"id": 1, "language_code": "en"}])
    pages = range(1, WAGTAIL_PAGES + 1)
    insert(conn, t["wagtailcore_page"], [
        filled(t["wagtailcore_page"], p, id=p, path=f"00010001{p:04}", depth=3, numchild=0, content_type_id=2,
               locale_id=1, translation_key=f"00000000-0000-4000-8000-{p:012}", live=p % 2 == 0) for p in pages])
    insert(conn, t["blog_blogpage"], [{"page_ptr_id": p, "intro": "hello"} for p in pages])
    insert(conn, t["wagtailcore_site"], [filled(t["wagtailcore_site"], 1, hostname="localhost", port=80,
                                                is_default_site=True, root_page_id=1)])
    # revisions and log entries: many per page by design (every save of a draft)
    moment = BASE + timedelta(microseconds=417_203)
    insert(conn, t["wagtailcore_revision"], [
        {"created_at": moment + p * DAY + r * DAY / 9, "content": {"title": f"Post {p}", "draft": r},
         "object_id": str(p), "content_type_id": 2, "base_content_type_id": 1, "object_str": f"Post {p}",
         "user_id": 1 + (p + r) % 20} for p in pages for r in range(1 + p % 5)])
    insert(conn, t["taggit_tag"], [{"id": i, "name": name, "slug": name} for i, name in enumerate(TAGS, start=1)])
    insert(conn, t["blog_blogpagetag"], [{"content_object_id": p, "tag_id": 1 + (p + k) % len(TAGS)}
                                         for p in pages for k in range(3)])
    # site-specific redirects, and redirects for every site (site_id NULL)
    insert(conn, t["wagtailredirects_redirect"], [
        filled(t["wagtailredirects_redirect"], n, old_path=f"/old/{n}", site_id=1 if n % 3 == 0 else None,
               redirect_page_id=None, redirect_link=f"/new/{n}", redirect_page_route_path="")
        for n in range(30)])
    # tickets filed over months, each saved once (its history's '+' row carries the ticket's created to the
    # microsecond); a few closed days later: a '~' row carrying the same created
    apart = timedelta(hours=7, seconds=13, microseconds=1_017)
    created = {n: moment + n * apart for n in range(1, WAGTAIL_TICKETS + 1)}
    insert(conn, t["blog_ticket"], [{"id": n, "title": f"ticket {n}", "status": "closed" if n % 50 == 7 else "open",
                                     "created": created[n], "assignee_id": 1 + n % 20} for n in created])
    history = [{"id": n, "title": f"ticket {n}", "status": "open", "created": created[n],
                "history_date": created[n] + timedelta(microseconds=210), "history_type": "+",
                "assignee_id": 1 + n % 20, "history_user_id": 1 + n % 20} for n in created]
    history += [{**h, "status": "closed", "history_type": "~", "history_date": h["history_date"] + 4 * DAY,
                 "history_user_id": 1} for h in history if h["id"] % 50 == 7]
    insert(conn, t["blog_historicalticket"], history)


WAGTAIL = App(
    "wagtail", None, wagtail_rows, dump="wagtail.sql", dialects=("postgresql",),
    truth={"wagtailredirects_redirect": {frozenset({"old_path", "site_id"})},
           "blog_blogpagetag": {frozenset({"content_object_id", "tag_id"})}},
    evidence={"wagtailredirects_redirect": (
        "wagtail/contrib/redirects/forms.py RedirectForm.clean (8.0.1): 'The unique_together condition on the model "
        "is ignored if site is None, so need to check for duplicates manually': "
        "Redirect.objects.filter(old_path=, site__isnull=True) then save, a check-then-insert two editors race; "
        "middleware.py _get_redirect then raises MultipleObjectsReturned on the path"),
        "blog_blogpagetag": (
        "taggit.models.TaggedItemBase declares no unique key over (content_object, tag); modelcluster's "
        "ClusterTaggableManager inserts a page's new tag links on each save, so two editors saving one page "
        "with the same new tag both insert it")},
    # Not risks: wagtailcore_revision repeats per (content_type_id, object_id) by design (every draft saved);
    # blog_historicalticket repeats per ticket `id` by design (one row per save), each row carrying the ticket's
    # own `created`: rows alike in it to the microsecond were not written together.
)

APPS = [TICKETING, CMS, SHOP, FORUM, RAILS, SQUAD]
REAL_APPS = [DJANGO_CMS, TRYTON, MEDIAWIKI, WORDPRESS, MATOMO, OSTICKET, KANBOARD, WAGTAIL]


CORPUS = Path(__file__).resolve().parent / "corpus"


def load_dump(engine: sa.Engine, name: str) -> None:
    """Run a schema dump (plain DDL, no schema qualifier) in the connection's search_path / database, one statement
    at a time (PyMySQL runs one per call; the dumps hold no routine whose body has a `;` at a line's end)."""
    statements = [s for s in re.split(r";\s*\n", (CORPUS / name).read_text())
                  if s.strip() and not all(line.startswith("--") for line in s.strip().splitlines())]
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        raw.commit()
    finally:
        raw.close()


def build(app: App, engine: sa.Engine) -> None:
    md = sa.MetaData()
    if app.dump is not None:
        load_dump(engine, app.dumps.get(engine.dialect.name, app.dump))
        md.reflect(engine)
    else:
        assert app.build is not None
        app.build(md)
        md.create_all(engine)
    with engine.begin() as conn:
        app.rows(conn, md)


def score(app: App, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Precision of medium/high findings, false highs, and recall of the app's true risks."""
    def table_of(f: dict[str, Any]) -> str:
        return str(f["table"]).rsplit(".", 1)[1]

    def true(f: dict[str, Any]) -> bool:
        return frozenset(f["columns"]) in app.truth.get(table_of(f), set())

    serious = [f for f in findings if f["severity"] in ("high", "medium")]
    hits = {table_of(f) for f in serious if true(f)}
    return {"app": app.name, "serious": len(serious), "true": sum(true(f) for f in serious),
            "false": [f"{table_of(f)}({', '.join(f['columns'])}) {f['severity']} {f['kind']}"
                      for f in serious if not true(f)],
            "false_high": sum(f["severity"] == "high" and not true(f) for f in serious),
            "recall": len(hits) / len(app.truth) if app.truth else 1.0, "missed": sorted(set(app.truth) - hits)}
