"""`dupewatch audit --source DIR`: the application's own lookups-then-inserts, read from its code.

Python files are parsed with `ast`; Ruby files are read with the documented patterns below. What is found:

- Django: `Model.objects.get_or_create(a=..., b=...)` and `update_or_create` (any manager: `Basket.open.…`;
  `defaults` / `create_defaults` left out), and `Model.objects.filter(a=...).exists()` in a function that also
  calls `Model.objects.create(...)`.
- SQLAlchemy: `select(Model).where(Model.a == x, ...)` / `query(Model).filter_by(a=...)` /
  `query(Model).filter(Model.a == x)` in a function that also calls `session.add(Model(...))`.
- Tryton: `Model.search([('a', '=', x), ('b', '=', None)])` in a function that also calls `Model.create(...)`,
  where `Model` is `cls` / `self` in a class declaring `__name__ = 'party.party'`, or a name bound to
  `Pool().get('party.party')` / `pool.get(...)`; a domain of anything but `(field, '=', value)` terms is skipped.
- Ruby (Rails), one line each: `Model.find_or_create_by(a: ..., b: ...)` (and `!`, `find_or_initialize_by`),
  `Model.where(a: ...).first_or_create`, and `validates :col, uniqueness: { scope: [:a, :b] }` /
  `validates_uniqueness_of :col, scope: ...` inside `class Model < ...` (a uniqueness the application checks
  and the database does not).

Models map to tables by `__tablename__`, Django's `Meta.db_table`, Tryton's `__name__` (dots become
underscores: `party.party` is `party_party`, unless the class sets `_table`), Django's default `<app_label>_<model>`
(the app is `Meta.app_label` or the directory holding `models.py` / `models/`), Rails' pluralised snake case,
and, failing those, the one catalog table named `<model>` or `*_<model>`. A field maps to its column, or to
`<field>_id` (a foreign key). A lookup whose table or columns are not in the catalog is skipped. A lookup is
reported when no valid unique key lies within its columns, or when it looks a column up as None/nil and the
unique key covering it treats NULLs as distinct (it lets the racing copy in).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.audit.candidates import Candidate, ordered
from monitor.audit.catalog import TableInfo

MAX_FILE_BYTES = 2_000_000
SKIPPED_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", "site-packages", "vendor", "tests"}
DJANGO_CREATES = ("get_or_create", "update_or_create")
RUBY_FIND_OR_CREATE = re.compile(r"\b([A-Z]\w*)\.(?:find_or_create_by!?|find_or_initialize_by|create_or_find_by!?)"
                                 r"\s*\(?([^)\n]*)")
RUBY_FIRST_OR_CREATE = re.compile(r"\b([A-Z]\w*)\.where\s*\(([^)\n]*)\)\s*\.\s*first_or_(?:create|initialize)")
RUBY_CLASS = re.compile(r"^\s*class\s+([A-Z]\w*)\s*<", re.MULTILINE)
RUBY_VALIDATES = re.compile(r"^\s*validates(?:_uniqueness_of)?\s+:(\w+)(.*)$", re.MULTILINE)
RUBY_KEY = re.compile(r"(?<![:\w])(\w+):(?!:)\s*(nil\b)?")
RUBY_SYMBOL = re.compile(r":(\w+)")


@dataclass(frozen=True)
class CodeLookup:
    """One call site: a model looked up by fields (those looked up as None listed in `nulls`)."""

    model: str
    fields: tuple[str, ...]
    nulls: frozenset[str]
    path: str
    line: int
    call: str


@dataclass
class ModelNames:
    """What the code says about a model's table: `__tablename__`, `Meta.db_table`, or its Django app."""

    tables: dict[str, str]
    apps: dict[str, str]


def code_lookups(sources: list[Path], tables: list[TableInfo]) -> list[Candidate]:
    """Candidates for every looked-up column set the code has and no unique key protects."""
    names = ModelNames({}, {})
    sites: list[CodeLookup] = []
    for root in sources:
        for path in _files(root):
            text = _read(path)
            if text is None:
                continue
            shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            if path.suffix == ".py":
                sites += _python_lookups(text, shown, names, path)
            else:
                sites += _ruby_lookups(text, shown)
    return _candidates(sites, names, tables)


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".rb") and path.is_file() and not SKIPPED_DIRS & set(path.parts):
            yield path


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# -- Python ------------------------------------------------------------------------------------------------------

def _python_lookups(text: str, shown: str, names: ModelNames, path: Path) -> list[CodeLookup]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    _learn_models(tree, names, path)
    owners = {id(item): cls.name for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef) for item in cls.body}
    found: list[CodeLookup] = []
    for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
        found += _function_lookups(function, shown, owners.get(id(function)))
    return found


def _learn_models(tree: ast.Module, names: ModelNames, path: Path) -> None:
    app = path.parent.parent.name if path.parent.name == "models" else path.parent.name
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        tryton = [str(_constant(st.value)) for st in cls.body if isinstance(st, ast.Assign)
                  and _assigned(st, "__name__") and isinstance(_constant(st.value), str)]
        for model in tryton:  # ModelSQL's table: the model's name, dots as underscores, unless _table says
            names.tables.setdefault(cls.name, model.replace(".", "_"))
        for statement in cls.body:
            if isinstance(statement, ast.Assign) and _assigned(statement, "__tablename__"):
                names.tables[cls.name] = str(_constant(statement.value) or "")
            if tryton and isinstance(statement, ast.Assign) and _assigned(statement, "_table") \
                    and isinstance(_constant(statement.value), str):
                names.tables[cls.name] = str(_constant(statement.value))
                names.tables[tryton[0]] = str(_constant(statement.value))
            if isinstance(statement, ast.ClassDef) and statement.name == "Meta":
                for item in statement.body:
                    if isinstance(item, ast.Assign) and _assigned(item, "db_table"):
                        names.tables[cls.name] = str(_constant(item.value) or "")
                    if isinstance(item, ast.Assign) and _assigned(item, "app_label"):
                        app = str(_constant(item.value) or app)
        if path.name == "models.py" or path.parent.name == "models":
            names.apps.setdefault(cls.name, app)


def _assigned(node: ast.Assign, name: str) -> bool:
    return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)


def _constant(node: ast.expr) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _function_lookups(function: ast.FunctionDef | ast.AsyncFunctionDef, shown: str,
                      owner: str | None = None) -> list[CodeLookup]:
    calls = [n for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    pooled = _pooled_models(function)
    created = {_root_name(c.func) for c in calls if c.func.attr == "create"}  # type: ignore[attr-defined]
    added = {_root_name(c.args[0]) for c in calls if c.func.attr == "add" and c.args  # type: ignore[attr-defined]
             and isinstance(c.args[0], ast.Call)}
    found = []
    for call in calls:
        method = call.func.attr  # type: ignore[attr-defined]
        model = _root_name(call.func)
        if model is None:
            continue
        if method in DJANGO_CREATES:
            found.append(_keyword_lookup(model, call, shown, f"{method}()"))
        elif method == "exists" and model in created:
            inner = _inner_call(call, "filter")
            if inner is not None:
                found.append(_keyword_lookup(model, inner, shown, "filter().exists() then create()"))
        elif method in ("filter_by", "where", "filter") and (target := _queried_model(call)) is not None \
                and target in added:
            lookup = _sqlalchemy_lookup(target, call, shown)
            if lookup is not None:
                found.append(lookup)
        elif method == "search" and model in created and call.args and isinstance(call.args[0], ast.List):
            tryton_model = owner if model in ("cls", "self") else pooled.get(model)
            lookup = _tryton_lookup(tryton_model, call.args[0], call, shown) if tryton_model else None
            if lookup is not None:
                found.append(lookup)
    return [f for f in found if f.fields]


def _pooled_models(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    """Names bound to Tryton models in a function: `Party = Pool().get('party.party')` / `pool.get(...)`."""
    found = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute) \
                and node.value.func.attr == "get" and len(node.value.args) == 1 \
                and isinstance(model := _constant(node.value.args[0]), str) and "." in model:
            found[node.targets[0].id] = model
    return found


def _tryton_lookup(model: str, domain: ast.List, call: ast.Call, shown: str) -> CodeLookup | None:
    """`search([('a', '=', x), ...])`: a conjunction of equalities, else None (an 'OR', a nested domain, another
    operator or a dotted field is not a lookup of this table's columns)."""
    fields, nulls = [], set()
    for term in domain.elts:
        if not (isinstance(term, ast.Tuple) and len(term.elts) == 3):
            return None
        field, operator = _constant(term.elts[0]), _constant(term.elts[1])
        if not isinstance(field, str) or operator != "=" or "." in field:
            return None
        fields.append(field)
        if isinstance(term.elts[2], ast.Constant) and term.elts[2].value is None:
            nulls.add(field)
    return CodeLookup(model, tuple(fields), frozenset(nulls), shown, call.lineno, "search() then create()")


def _inner_call(call: ast.Call, method: str) -> ast.Call | None:
    node: ast.expr = call.func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
            return node
        node = node.func if isinstance(node, ast.Call) else node.value
    return None


def _keyword_lookup(model: str, call: ast.Call, shown: str, what: str) -> CodeLookup:
    fields = [k.arg for k in call.keywords if k.arg and k.arg not in ("defaults", "create_defaults")]
    if any("__" in f for f in fields):
        fields = []  # a lookup through a relation or an operator is not an equality on this table's columns
    nulls = frozenset(k.arg for k in call.keywords if k.arg and isinstance(k.value, ast.Constant)
                      and k.value.value is None)
    return CodeLookup(model, tuple(fields), nulls, shown, call.lineno, what)


def _queried_model(call: ast.Call) -> str | None:
    """The model of `select(Model).where(...)` / `session.query(Model).filter(...)`."""
    node: ast.expr = call.func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name) and (
                (isinstance(node.func, ast.Name) and node.func.id == "select")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "query")):
            return node.args[0].id
        node = node.func if isinstance(node, ast.Call) else node.value
    return None


def _sqlalchemy_lookup(model: str, call: ast.Call, shown: str) -> CodeLookup | None:
    if call.func.attr == "filter_by":  # type: ignore[attr-defined]
        return _keyword_lookup(model, call, shown, "filter_by() then session.add()")
    fields, nulls = [], set()
    for condition in call.args:
        if not (isinstance(condition, ast.Compare) and len(condition.ops) == 1
                and isinstance(condition.ops[0], ast.Eq | ast.Is)):
            return None
        left = condition.left
        if not (isinstance(left, ast.Attribute) and isinstance(left.value, ast.Name) and left.value.id == model):
            return None
        fields.append(left.attr)
        if isinstance(condition.comparators[0], ast.Constant) and condition.comparators[0].value is None:
            nulls.add(left.attr)
    return CodeLookup(model, tuple(fields), frozenset(nulls), shown, call.lineno, "select then session.add()")


# -- Ruby ---------------------------------------------------------------------------------------------------------

def _ruby_lookups(text: str, shown: str) -> list[CodeLookup]:
    found = []
    for pattern, what in ((RUBY_FIND_OR_CREATE, "find_or_create_by"), (RUBY_FIRST_OR_CREATE, "first_or_create")):
        for match in pattern.finditer(text):
            pairs = RUBY_KEY.findall(match.group(2))
            found.append(CodeLookup(match.group(1), tuple(k for k, _ in pairs),
                                    frozenset(k for k, nil in pairs if nil), shown, _line(text, match.start()), what))
    classes = [(m.start(), m.group(1)) for m in RUBY_CLASS.finditer(text)]
    for match in RUBY_VALIDATES.finditer(text):
        rest = match.group(2)
        if "uniqueness" not in rest and "validates_uniqueness_of" not in match.group(0):
            continue
        owner = next((name for start, name in reversed(classes) if start < match.start()), None)
        scope = rest.split("scope:", 1)[1] if "scope:" in rest else ""
        scoped = RUBY_SYMBOL.findall(scope.split("}", 1)[0]) if scope else []
        if owner:
            found.append(CodeLookup(owner, (match.group(1), *scoped), frozenset(), shown,
                                    _line(text, match.start()), "validates uniqueness"))
    return found


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# -- to candidates --------------------------------------------------------------------------------------------------

def _candidates(sites: list[CodeLookup], names: ModelNames, tables: list[TableInfo]) -> list[Candidate]:
    merged: dict[tuple[str, str, tuple[str, ...]], tuple[TableInfo, list[CodeLookup], set[str]]] = {}
    for site in sites:
        table = _table_of(site.model, names, tables)
        columns = _columns(table, site.fields) if table else None
        if table is None or columns is None or table.stops_copies(columns, _columns(table, tuple(site.nulls)) or ()):
            continue
        key = (table.schema, table.name, ordered(table, columns))
        entry = merged.setdefault(key, (table, [], set()))
        entry[1].append(site)
    found = []
    for (_schema, _name, columns), (table, where, _) in merged.items():
        places = ", ".join(f"{s.path}:{s.line} {s.call}" for s in where[:3]) + (" …" if len(where) > 3 else "")
        found.append(Candidate("check_then_insert", table, columns,
                               f"the code looks up {', '.join(columns)} then inserts ({places}) and no unique key "
                               "covers them", needs_duplicates=False))
    return found


def _table_of(model: str, names: ModelNames, tables: list[TableInfo]) -> TableInfo | None:
    by_name = {t.name.lower(): t for t in tables}
    wanted = [names.tables.get(model, "")]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", model).lower()
    if model in names.apps:
        wanted.append(f"{names.apps[model]}_{model.lower()}")
    if "." in model:  # a Tryton model name from Pool().get()
        wanted.append(model.replace(".", "_"))
    wanted += [_plural(snake), snake]
    for name in wanted:
        if name and name.lower() in by_name:
            return by_name[name.lower()]
    suffixed = [t for t in tables if t.name.lower().endswith("_" + model.lower())]
    return suffixed[0] if len(suffixed) == 1 else None


def _plural(word: str) -> str:
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy", "uy")):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _columns(table: TableInfo, fields: tuple[str, ...]) -> tuple[str, ...] | None:
    columns = []
    for field in fields:
        for name in (field, f"{field}_id"):
            if name in table.columns:
                columns.append(name)
                break
        else:
            return None
    return tuple(columns)
