"""`dupewatch audit --source` on Tryton code: models named by `__name__ = 'party.party'` (table `party_party`,
or the class's `_table`), looked up with `search([('field', '=', x), ...])` and then created in the same function,
through `cls` or a name bound to `Pool().get(...)`. No database: the catalog is built by hand."""

from __future__ import annotations

from pathlib import Path

from monitor.audit.catalog import ColumnInfo, TableInfo, UniqueKey
from monitor.audit.code import code_lookups


def table(name: str, columns: list[str], *uniques: tuple[str, ...]) -> TableInfo:
    cols = {c: ColumnInfo(c, "integer" if c in ("id", "user", "party", "company") else "text", c != "id")
            for c in columns}
    keys = [UniqueKey("pk", ("id",), "primary_key")] + [UniqueKey(f"uq{i}", u, "constraint")
                                                        for i, u in enumerate(uniques)]
    return TableInfo("public", name, cols, ("id",), keys, [], [])


VIEW = '''
import json
from trytond.model import ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.transaction import Transaction


class ViewTreeState(ModelSQL, ModelView):
    __name__ = 'ir.ui.view_tree_state'
    model = fields.Char('Model', required=True)

    @classmethod
    def set(cls, model, domain, child_name, nodes):
        current_user = Transaction().user
        records = cls.search([
                ('user', '=', current_user),
                ('model', '=', model),
                ('domain', '=', domain),
                ('child_name', '=', child_name),
                ])
        cls.delete(records)
        cls.create([{'user': current_user, 'model': model, 'domain': domain, 'nodes': nodes}])

    @classmethod
    def get(cls, model, domain, child_name):
        return cls.search([('model', '=', model), ('domain', '=', domain)])


class Lang(ModelSQL):
    __name__ = 'party.party.lang'
    _table = 'party_lang_value'


def ensure_lang(party, company):
    Lang = Pool().get('party.party.lang')
    if not Lang.search([('party', '=', party), ('company', '=', company), ('lang', '=', None)]):
        Lang.create([{'party': party, 'company': company}])


def either(party):
    Party = Pool().get('party.party')
    if not Party.search(['OR', ('code', '=', party), ('name', '=', party)]):
        Party.create([{'code': party}])
    if not Party.search([('name', 'ilike', party)]):
        Party.create([{'name': party}])
'''

TABLES = [table("ir_ui_view_tree_state", ["id", "user", "model", "domain", "child_name", "nodes"]),
          table("party_lang_value", ["id", "party", "company", "lang"]),
          table("party_party", ["id", "code", "name"])]


def lookups(tmp_path: Path, tables: list[TableInfo] = TABLES) -> dict[str, tuple[str, ...]]:
    (tmp_path / "trytond").mkdir(exist_ok=True)
    (tmp_path / "trytond" / "view.py").write_text(VIEW)
    return {c.table.name: c.columns for c in code_lookups([tmp_path], tables)}


def test_cls_search_then_create_maps_the_model_name_to_its_table(tmp_path: Path) -> None:
    lookups(tmp_path)
    found = [c for c in code_lookups([tmp_path], TABLES) if c.table.name == "ir_ui_view_tree_state"]
    # set() searches then creates; get() only searches
    assert [c.columns for c in found] == [("user", "model", "domain", "child_name")]
    assert "view.py:15 search() then create()" in found[0].reason


def test_a_pooled_model_maps_through_its_table_attribute(tmp_path: Path) -> None:
    assert lookups(tmp_path)["party_lang_value"] == ("party", "company", "lang")


def test_or_domains_and_other_operators_are_no_lookup(tmp_path: Path) -> None:
    assert "party_party" not in lookups(tmp_path)


def test_a_unique_key_within_the_lookup_protects_it_unless_it_is_looked_up_as_none(tmp_path: Path) -> None:
    protected = [table("ir_ui_view_tree_state", ["id", "user", "model", "domain", "child_name", "nodes"],
                       ("user", "model", "domain", "child_name")),
                 table("party_lang_value", ["id", "party", "company", "lang"], ("party", "company", "lang"))]
    found = lookups(tmp_path, protected)
    assert "ir_ui_view_tree_state" not in found
    assert found["party_lang_value"] == ("party", "company", "lang")  # lang looked up as None: NULLs are distinct
