"""`dupewatch audit --source`: the call sites read from Python (ast) and Ruby (patterns), mapped to the catalog's
tables, and kept only where no unique key stops a racing copy."""

from __future__ import annotations

from pathlib import Path

from monitor.audit.catalog import ColumnInfo, TableInfo, UniqueKey
from monitor.audit.code import code_lookups


def table(name: str, columns: list[str], uniques: list[tuple[str, ...]] = (), *,  # type: ignore[assignment]
          nulls_distinct: bool = True) -> TableInfo:
    cols = {c: ColumnInfo(c, "integer" if c == "id" or c.endswith("_id") else "text", c != "id") for c in columns}
    keys = [UniqueKey("pk", ("id",), "primary_key")] + [
        UniqueKey(f"uq{i}", u, "index", nulls_distinct=nulls_distinct) for i, u in enumerate(uniques)]
    return TableInfo("public", name, cols, ("id",), keys, [], [])


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


DJANGO_MODELS = """
from django.db import models

class CheckinRule(models.Model):
    list = models.ForeignKey('CheckinList', on_delete=models.CASCADE)
    subevent = models.ForeignKey('SubEvent', null=True, on_delete=models.CASCADE)

class Mapping(models.Model):
    class Meta:
        db_table = 'custom_mapping'
"""
DJANGO_VIEWS = """
from .models import CheckinRule, Mapping

def ensure(clist):
    CheckinRule.objects.get_or_create(list=clist, subevent=None, defaults={'rules': '{}'})

def sync(order, position, provider, mapping_id):
    Mapping.objects.update_or_create(order=order, position=position, provider=provider, mapping_id=mapping_id)

def remember(clist):
    if not CheckinRule.objects.filter(list=clist).exists():
        CheckinRule.objects.create(list=clist)

def by_relation(clist):
    CheckinRule.objects.get_or_create(list__event=clist.event)
"""


def test_django_get_or_create_update_or_create_and_exists_then_create(tmp_path: Path) -> None:
    root = write(tmp_path, {"pretixbase/models.py": DJANGO_MODELS, "pretixbase/views.py": DJANGO_VIEWS})
    tables = [table("pretixbase_checkinrule", ["id", "list_id", "subevent_id", "rules"]),
              table("custom_mapping", ["id", "order_id", "position_id", "provider", "mapping_id"])]
    found = {(c.table.name, c.columns): c for c in code_lookups([root], tables)}
    assert set(found) == {("pretixbase_checkinrule", ("list_id", "subevent_id")),
                          ("pretixbase_checkinrule", ("list_id",)),
                          ("custom_mapping", ("order_id", "position_id", "provider", "mapping_id"))}
    assert "views.py:5 get_or_create()" in found[("pretixbase_checkinrule", ("list_id", "subevent_id"))].reason


def test_a_unique_key_protects_unless_the_lookup_is_on_null(tmp_path: Path) -> None:
    root = write(tmp_path, {"pretixbase/models.py": DJANGO_MODELS, "pretixbase/views.py": DJANGO_VIEWS})
    covered = [table("pretixbase_checkinrule", ["id", "list_id", "subevent_id"], [("list_id", "subevent_id")]),
               table("custom_mapping", ["id", "order_id", "position_id", "provider", "mapping_id"],
                     [("order_id", "position_id", "provider", "mapping_id")])]
    found = {(c.table.name, c.columns) for c in code_lookups([root], covered)}
    # subevent=None: a NULLS DISTINCT unique lets the racing copy in; list alone is not covered either
    assert found == {("pretixbase_checkinrule", ("list_id", "subevent_id")), ("pretixbase_checkinrule", ("list_id",))}
    strict = [table("pretixbase_checkinrule", ["id", "list_id", "subevent_id"], [("list_id", "subevent_id")],
                    nulls_distinct=False)]
    assert {c.columns for c in code_lookups([root], strict)} == {("list_id",)}


def test_sqlalchemy_select_then_add(tmp_path: Path) -> None:
    root = write(tmp_path, {"tools/bundles.py": """
from sqlalchemy import select

class BundleFile(Base):
    __tablename__ = 'bundle_files'

def remember(session, bundle_name, filename):
    found = session.execute(select(BundleFile).where(BundleFile.bundle_name == bundle_name,
                                                     BundleFile.filename == filename)).first()
    if found is None:
        session.add(BundleFile(bundle_name=bundle_name, filename=filename))

def lookup_only(session, name):
    return session.query(BundleFile).filter_by(bundle_name=name).first()
"""})
    found = code_lookups([root], [table("bundle_files", ["id", "bundle_name", "filename"])])
    assert [c.columns for c in found] == [("bundle_name", "filename")]


def test_ruby_find_or_create_by_and_validates_uniqueness(tmp_path: Path) -> None:
    root = write(tmp_path, {"app/controllers/checkins_controller.rb": """
class CheckinsController < ApplicationController
  def create
    Checkin.find_or_create_by(user_id: current_user.id, day: Date.today)
    Category.where(name: params[:name], parent_id: nil).first_or_create
  end
end
""", "app/models/membership.rb": """
class Membership < ApplicationRecord
  validates :user_id, uniqueness: { scope: [:group_id] }
end
"""})
    tables = [table("checkins", ["id", "user_id", "day"]), table("categories", ["id", "name", "parent_id"]),
              table("memberships", ["id", "user_id", "group_id"], [("user_id", "group_id")])]
    found = {(c.table.name, c.columns) for c in code_lookups([root], tables)}
    assert found == {("checkins", ("user_id", "day")), ("categories", ("name", "parent_id"))}
