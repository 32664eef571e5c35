"""References the database does not declare: `*_id` columns without a foreign key (Django's
`db_constraint=False`, MyISAM-era schemas, an audit log's `author_id`) and Rails' polymorphic
`commentable_type`/`commentable_id` pairs. The fix cannot repoint what no foreign key names (which table such a
column means is the application's knowledge), so the rows holding a deleted row's key are left pointing at no
row if the column refers to the fixed table. The plan says so with evidence only: per such column of the fixed
table's schema, how many of its rows hold, compared by the database, the primary key of a row the fix deletes
(beside a `<name>_type` column, only the rows whose type value names the fixed table as a class, 'Account' or
'app.Account' for `account`; the other types' counts are listed as not referring); a column whose rows hold
none is not named.

Candidates are columns of the tables in the fixed table's schema (database) whose name ends in `_id` (or `Id`
after a lower-case letter, `userId`) and is named after the fixed table (`account_id`, `accountId` for `account`
or `accounts`; `stem_names_table`), or beside a polymorphic `<name>_type` column, that no foreign key of their
table covers, whose type compares with the
fixed table's single-column primary key (integers with integers, text with text, otherwise the same Python
type), excluding dupewatch's own tables (copies, not references) and the partitions and inheritance children the
catalog lists (their parent's count holds their rows). The keys to delete are read once; a column is counted
only through an index that leads with it (never by a scan of its table), else named as not counted ("no index
on t(col)"), as is a table the database would not count (the fix role may not read it), with the database's
reason.

Django's generic relations (contenttypes: `content_type_id` beside `object_id`, or `object_pk` as text, in
taggit, guardian, the admin log, comments; several in one table, each pair named by its own prefix,
`actor_content_type_id` beside `actor_object_id` in django-notifications) are the same kind of pair: where the
schema holds a `django_content_type` table, the content types whose `app_label` and `model` name the fixed table
(`auth` and `user` for `auth_user`, Django's default table name) are read from it, and the rows of each table
with both columns whose object column holds the key of a row to delete are counted per content type, in the same
way (through an index leading with the object column; text compared with the key's text, a UUID in both its
forms). The database does not record which model a content type's rows refer to: a proxy model has a content type
of its own (the admin log writes it), a model may name its table itself (`Meta.db_table = "members"`), a model
moved to another app keeps its table under a new content type and leaves the old one. So the content types that
name no table of the schema are counted too, each by its name, and said to be so (`Undeclared.unnamed`); only
those naming another table of the schema are not referring. Odoo's `res_id`
beside `res_model` (or `model`) is a polymorphic pair whose type values name the table whole: 'res.partner'.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import FromClause

from monitor.db import first_line
from monitor.dialects import for_backend
from monitor.fix.catalog import catalog_for
from monitor.fix.values import display

# `account_id`, `ACCOUNT_ID`, `accountId`; not `paid`, `void`, `valid`, `pid`, `uuid` (case matters for `Id`).
_NAME = re.compile(r"(?:_[iI][dD]|(?<=[a-z])Id)$")
_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TYPE_VALUES = 5  # type values shown per polymorphic column
COUNTED_KEYS = 100_000  # keys to delete read once for the counts; past this, the columns are named as not counted
COUNT_SECONDS = 2.0  # each counting statement's bound
LOCK_SECONDS = 1.0  # a counting statement's wait for a lock
KEYS_PER_STATEMENT = 1_000  # keys looked up per counting statement (an IN list, through the column's index)
CONTENT_TYPES = "django_content_type"  # Django's table of content types, where generic relations name their table
CONTENT_TYPE_COLUMN = "content_type_id"
# Django's own models whose `Meta.db_table` is not `<app_label>_<model>`: their content types name these tables.
DJANGO_TABLES = {"admin.logentry": "django_admin_log", "contenttypes.contenttype": "django_content_type",
                 "sessions.session": "django_session", "sites.site": "django_site",
                 "redirects.redirect": "django_redirect", "flatpages.flatpage": "django_flatpage"}
OBJECT_COLUMNS = ("object_id", "object_pk")
# Odoo's generic relations: `res_id` beside the model's name, `res_model` (mail_followers, ir_attachment, the
# activities) or `model` (mail_message, ir_model_data), 'res.partner' for the table `res_partner`.
# Only in a schema holding one of Odoo's own base tables (`ODOO_TABLES`), and only a whole model name is evidence:
# `res_id` beside `model` is common elsewhere (an ML table's `predictions(model, res_id)` naming 'gpt.users').
ODOO_OBJECT_COLUMN = "res_id"
ODOO_MODEL_COLUMNS = ("res_model", "model")
ODOO_TABLES = ("ir_model", "ir_model_data", "ir_model_fields", "ir_module_module", "ir_attachment",
               "ir_config_parameter")


@dataclass(frozen=True)
class Undeclared:
    """One column no foreign key declares whose rows hold keys of rows to delete: `rows` of them, and per value
    of its polymorphic `<name>_type` column (when the table has one), the rows of the most frequent values."""

    schema: str | None
    table: str
    column: str
    rows: int
    type_column: str | None = None
    by_type: list[tuple[Any, int]] = field(default_factory=list)
    other_types: list[tuple[Any, int]] = field(default_factory=list)
    # Django: those of `by_type` whose content type names no table of the schema (a proxy model, a model giving its
    # table a name of its own, or a removed one), not the fixed table by Django's default name.
    unnamed: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.schema + '.' if self.schema else ''}{self.table}({self.column})"

    def describe(self, referred: str, target: str) -> str:
        """Evidence, not a verdict: a column named like a reference whose values equal keys of rows to delete."""
        line = f"{self.label} is named like a reference and no foreign key declares it"
        if self.type_column:
            named = ", ".join(f"{display(value)!r} {rows:,}" for value, rows in self.by_type
                              if value not in self.unnamed)
            other = ", ".join(f"{display(value)!r} {rows:,}" for value, rows in self.by_type if value in self.unnamed)
            line += f"; of its rows whose {self.type_column} names {target}" if named else (
                f"; of its rows whose {self.type_column}")
            line += f" ({named})" if named else ""
            if other:
                line += (f"{' or' if named else ''} names no table of the schema (a proxy model, a model whose table "
                         f"has a name of its own, as {target} may be, or a removed one: {other})")
        line += (f", {self.rows:,}{'' if self.type_column else ' of its row(s)'} hold the {referred} of a row to "
                 f"delete: if it refers to {target}, {self.rows:,} of its row(s) will point at no row")
        if self.other_types:
            shown = ", ".join(f"{display(value)!r} {rows:,}" for value, rows in self.other_types)
            line += f" (holding these values with other {self.type_column}, not referring to {target}: {shown})"
        return line

    def as_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "column": self.column, "rows": self.rows,
                "type_column": self.type_column,
                "by_type": [{"value": display(value), "rows": rows} for value, rows in self.by_type],
                "other_types": [{"value": display(value), "rows": rows} for value, rows in self.other_types],
                "types_name_no_table": list(self.unnamed)}


def _as_texts(key: Any) -> list[str]:
    """A key as the text a generic relation's text object column holds for it (`str(pk)`, Django's admin log and
    guardian): a UUID primary key stored as 32 hex digits (Django's `UUIDField` on SQLite, MySQL and MariaDB before
    Django 5.0) is written there hyphenated, and a native one may be held as 32 hex digits."""
    text = str(key)
    if isinstance(key, uuid.UUID):
        return [text, key.hex]
    if _UUID.fullmatch(text):
        return [text, str(uuid.UUID(text))] if len(text) == 32 else [text, uuid.UUID(text).hex]
    return [text]


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def names_table(value: Any, table: str) -> bool:
    """Whether a polymorphic type value names `table` as a class: 'Account', 'Admin::Account' or 'app.Account'
    for `account` or `accounts` (Rails' plural table names), 'AuditEntry' for `audit_entry` (Odoo's model names:
    `names_model`)."""
    if not isinstance(value, str):
        return False
    last = _squash(re.split(r"::|\.", value.strip())[-1])
    squashed = _squash(table)
    return bool(last) and last in (squashed, squashed[:-1] if squashed.endswith("s") else squashed,
                                   squashed[:-2] if squashed.endswith("es") else squashed)


def names_model(value: Any, table: str) -> bool:
    """Whether an Odoo model name names `table` whole, its dots for the table's underscores: 'res.partner' for
    `res_partner`, not 'gpt.users' for `users`."""
    return isinstance(value, str) and value.strip().replace(".", "_") == table


def _is_odoo(column: str, polymorphic: str | None) -> bool:
    return column == ODOO_OBJECT_COLUMN and polymorphic in ODOO_MODEL_COLUMNS


def stem_names_table(stem: str, table: str, tables: list[str]) -> bool:
    """Whether a column named `<stem>_id` is named after `table` (`account_id` for `account` or `accounts`), or
    after the last word of its name (`user_id` for Django's `auth_user`) when no table of the schema is named
    `stem` itself. Only such a column's values equal to ids of rows to delete are evidence of a reference: a
    `user_id` holds user ids, which equal some ids of any other table by chance."""
    if names_table(stem, table):
        return True
    last = table.rsplit("_", 1)[-1]
    return last != table and names_table(stem, last) and not any(names_table(stem, t) for t in tables)


def _family(kind: sa.types.TypeEngine[Any]) -> str | None:
    if isinstance(kind, sa.types.Integer):
        return "integer"
    if isinstance(kind, sa.types.String):
        return "text"
    try:
        return kind.python_type.__name__
    except NotImplementedError:
        return None


def _leading_columns(conn: Connection, schema: str | None, names: list[str]) -> dict[str, set[str]]:
    """Per table, the columns an index leads with (primary key, unique constraints, non-partial indexes): the
    only columns counted, by index lookups, never by a scan of the whole table."""
    inspector = sa.inspect(conn)
    catalog = catalog_for(conn)
    indexes = inspector.get_multi_indexes(schema=schema, filter_names=names)
    leading: dict[str, set[str]] = {}
    for name in names:
        found = leading.setdefault(name, set())
        found.update(cols[0] for _n, cols in catalog.unique_column_sets(schema, name) if cols)
        for index in indexes.get((schema, name), []):
            columns = index.get("column_names") or []
            if columns and columns[0] and not any(key.endswith("_where") and value is not None
                                                  for key, value in index.get("dialect_options", {}).items()):
                found.add(columns[0])
    return leading


def undeclared_references(conn: Connection, table: sa.Table, rel: FromClause, identity: str,
                          doomed: sa.ColumnElement[bool], key: sa.Column[Any] | None = None
                          ) -> tuple[list[Undeclared], list[str]]:
    """The undeclared references holding keys of `rel`'s rows to delete (`doomed`, their primary key
    `rel.c[identity]`), and the columns or tables not counted, with why. Only for a single-column primary key.
    The keys to delete are read once (at most `COUNTED_KEYS` of them); each candidate column is counted only
    where an index leads with it, by lookups of those keys."""
    pk = [key] if key is not None else list(table.primary_key.columns)  # `key`: the rows' identity column
    if len(pk) != 1 or (family := _family(pk[0].type)) is None:
        return [], []
    inspector = sa.inspect(conn)
    schema = table.schema
    # A partition or inheritance child is counted with its parent, whose query reads its rows.
    descendants = catalog_for(conn).descendant_tables(schema)
    names = [n for n in inspector.get_table_names(schema=schema)
             if not n.startswith("dupewatch_") and n not in descendants]
    if not names:
        return [], []
    columns = inspector.get_multi_columns(schema=schema, filter_names=names)
    declared = inspector.get_multi_foreign_keys(schema=schema, filter_names=names)
    found: list[Undeclared] = []
    plan: list[tuple[str, str, str | None]] = []
    odoo = any(n in names for n in ODOO_TABLES)
    for (_schema, name), cols in sorted(columns.items(), key=lambda item: item[0][1]):
        covered = {c for fk in declared.get((_schema, name), []) for c in fk["constrained_columns"]}
        own = [c["name"] for c in cols]
        for col in cols:
            if not (_NAME.search(col["name"]) and col["name"] not in covered
                    and not (name == table.name and col["name"] == pk[0].name) and _family(col["type"]) == family):
                continue
            stem = col["name"][:-2].rstrip("_")
            polymorphic = next((n for n in sorted(own) if n.lower() in (f"{stem}_type".lower(),
                                                                           f"{stem}type".lower())), None)
            if polymorphic is None and col["name"] == ODOO_OBJECT_COLUMN and odoo:  # Odoo: `res_model` or `model`
                polymorphic = next((n for n in ODOO_MODEL_COLUMNS if n in own), None)
            if polymorphic is None and not stem_names_table(stem, table.name, names):
                continue  # `user_id` beside a fixed `checkin`: its values equal to checkin ids are no evidence
            plan.append((name, col["name"], polymorphic))
    # A type column the database says refers to another table than `django_content_type` names no content type.
    typed_elsewhere = {(name, column) for (_schema, name), fks in declared.items() for fk in fks
                       if fk["referred_table"] != CONTENT_TYPES for column in fk["constrained_columns"]}
    content_types, pairs, unnamed, not_read = _generic_relations(conn, table, schema, names, columns, family,
                                                                 typed_elsewhere)
    plan += [(name, column, kind) for name, column, kind, _text in pairs]
    generic = {(name, column) for name, column, _kind, _text in pairs}
    as_text = {(name, column) for name, column, _kind, text in pairs if text}
    unread: list[str] = [not_read] if not_read else []
    if not plan:
        return [], unread
    prefix = f"{schema}." if schema else ""
    leading = _leading_columns(conn, schema, sorted({name for name, _c, _p in plan}))
    keys = [row[0] for row in conn.execute(sa.select(rel.c[identity]).where(doomed).limit(COUNTED_KEYS + 1))]
    if len(keys) > COUNTED_KEYS:
        return [], unread + [f"{prefix}{name}({column}) (more than {COUNTED_KEYS:,} rows to delete)"
                             for name, column, _p in plan]
    rules = for_backend(conn.dialect.name)
    # Counted on a connection of their own, in a short read-only transaction whose statements and lock waits are
    # bounded (`COUNT_SECONDS`, `LOCK_SECONDS`), ended before the fix's batches: not inside the fix's snapshot
    # transaction, which would hold the scanned tables' locks until the plan commits (a queued ALTER TABLE would
    # then block the application).
    # SQLite: on the fix's own connection (no other may read beside its write transaction), each column's count
    # bounded by a progress handler (`Dialect.bounded_statements`).
    if not rules.reads_beside_writer:
        _count(conn, table, schema, plan, leading, keys, found, unread, content_types, generic, as_text, unnamed)
        return found, unread
    with conn.engine.connect() as reader, rules.bounded_read(reader, COUNT_SECONDS, LOCK_SECONDS):
        _count(reader, table, schema, plan, leading, keys, found, unread, content_types, generic, as_text,
               unnamed)
    return found, unread


def _generic_relations(conn: Connection, table: sa.Table, schema: str | None, names: list[str],
                       columns: dict[tuple[str | None, str], list[Any]], family: str,
                       typed_elsewhere: set[tuple[str, str]]
                       ) -> tuple[dict[Any, str], list[tuple[str, str, str, bool]], set[str], str | None]:
    """Django's generic relations that may refer to the fixed table: the content types that may (id: 'app.model',
    from `django_content_type`), the (table, object column, content type column, whether the object column holds
    text) of each `<prefix>object_id` or `<prefix>object_pk` beside a `<prefix>content_type_id`, of the key's
    `family` or text (the admin log's `object_id` is text, guardian's `object_pk` too) and not declared a foreign
    key to another table (`typed_elsewhere`), the labels of those content types that name no table of the schema,
    and, when `django_content_type` could not be read, why (none counted).

    A content type names the table Django names by default, `<app_label>_<model>`; which table a proxy model's
    content type (the admin log's, `for_concrete_model=False`), a model's own `Meta.db_table` (`members` for
    `notes.member`) or a model moved to another app (its old content type left behind, naming the same table) refer
    to is recorded nowhere in the database. So the content types naming the fixed table and those naming no table
    of the schema are counted, each by its name: only a content type naming another table of the schema refers to
    that table. Guessing which unnamed one is the fixed table's could drop the right one."""
    if table.name == CONTENT_TYPES:
        return {}, [], set(), None
    pairs = []
    for (_schema, name), cols in sorted(columns.items(), key=lambda item: item[0][1]):
        own = {c["name"]: c for c in cols}
        # A model may hold several generic relations, each named by its own prefix (django-notifications and
        # django-activity-stream: `actor_content_type_id` beside `actor_object_id`, `target_...`).
        for kind in sorted(n for n in own if n.endswith(CONTENT_TYPE_COLUMN)):
            if (name, kind) in typed_elsewhere:
                continue
            prefix = kind[:-len(CONTENT_TYPE_COLUMN)]
            # (an object column of another type holds keys of other models: a `uuid` beside integer keys)
            held = {column: _family(own[column]["type"]) for column in (prefix + c for c in OBJECT_COLUMNS)
                    if column in own}
            pairs += [(name, column, kind, held_family == "text") for column, held_family in held.items()
                      if held_family in ("text", family)]
    # Asked of the database wherever a generic relation's columns are, even where the catalog does not list
    # `django_content_type`: MySQL/MariaDB's lists no table the role may not read.
    if not pairs:
        return {}, [], set(), None
    kinds = sa.table(CONTENT_TYPES, sa.column("id"), sa.column("app_label"), sa.column("model"), schema=schema)
    try:
        with conn.begin_nested():
            rows = conn.execute(sa.select(kinds.c.id, kinds.c.app_label, kinds.c.model)).all()
    except sa.exc.DBAPIError as exc:
        # Not readable (or not Django's table after all): the generic relations are not counted, and said so.
        prefix = f"{schema}." if schema else ""
        return {}, [], set(), f"{prefix}{CONTENT_TYPES} ({first_line(exc)}; no generic relation counted)"
    squashed = {row.id: (label, _squash(DJANGO_TABLES.get(label, row.app_label + row.model))) for row in rows
                if isinstance(row.app_label, str) and isinstance(row.model, str)
                and (label := f"{row.app_label}.{row.model}")}
    tables = {_squash(name) for name in names}
    naming = {kind: label for kind, (label, name) in squashed.items() if name == _squash(table.name)}
    unnamed = {kind: label for kind, (label, name) in squashed.items() if name not in tables}
    naming.update(unnamed)
    if not naming:
        return {}, [], set(), None
    return naming, pairs, set(unnamed.values()), None


def _count(conn: Connection, table: sa.Table, schema: str | None, plan: list[tuple[str, str, str | None]],
           leading: dict[str, set[str]], keys: list[Any], found: list[Undeclared], unread: list[str],
           content_types: dict[Any, str], generic_columns: set[tuple[str, str]], as_text: set[tuple[str, str]],
           unnamed: set[str]) -> None:
    prefix = f"{schema}." if schema else ""
    rules = for_backend(conn.dialect.name)
    skipped: set[str] = set()
    for name, column, polymorphic in plan:
        if name in skipped:
            continue
        generic = (name, column) in generic_columns and bool(content_types)
        # A generic relation's index leads with the content type as often as with the object (Django's own
        # `Index(fields=["content_type", "object_id"])`): its rows are counted for the fixed table's types only.
        # So does Rails' polymorphic one (`t.references :commentable, polymorphic: true` indexes
        # `(commentable_type, commentable_id)`): its type values are read first, through that index, and the
        # rows counted per type value by lookups of (type, key).
        indexed = leading.get(name, set())
        if not ({column, polymorphic} if polymorphic else {column}) & indexed:
            unread.append(f"{prefix}{name}({column}) (no index on {prefix}{name}({column}))")
            continue
        by_type_first = polymorphic is not None and not generic and column not in indexed
        child = sa.table(name, *[sa.column(n) for n in (column, polymorphic) if n], schema=schema)
        wanted: sa.ColumnElement[bool] = child.c[column].in_(sa.bindparam("keys", expanding=True))
        if generic:
            assert polymorphic is not None
            wanted = sa.and_(child.c[polymorphic].in_(list(content_types)), wanted)
        # A text object column: each key as the text Django writes for it (`str(pk)`).
        looked_up = list(dict.fromkeys(t for k in keys for t in _as_texts(k))) if (name, column) in as_text else keys
        per_type: dict[Any, int] = {}
        try:
            with conn.begin_nested(), rules.bounded_statements(conn, COUNT_SECONDS):
                if by_type_first:
                    assert polymorphic is not None
                    kinds = list(conn.execute(sa.select(child.c[polymorphic]).distinct()
                                              .where(child.c[polymorphic].is_not(None))).scalars())
                    wanted = sa.and_(child.c[polymorphic].in_(kinds), wanted)
                for start in range(0, len(looked_up), KEYS_PER_STATEMENT):
                    chunk = {"keys": looked_up[start:start + KEYS_PER_STATEMENT]}
                    if polymorphic is None:
                        n = int(conn.execute(sa.select(sa.func.count()).select_from(child).where(wanted),
                                             chunk).scalar_one())
                        per_type[None] = per_type.get(None, 0) + n
                    else:
                        kind = child.c[polymorphic]
                        for value, n in conn.execute(sa.select(kind, sa.func.count()).where(wanted)
                                                     .group_by(kind), chunk):
                            per_type[value] = per_type.get(value, 0) + int(n)
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            if rules.is_timeout(reason):
                reason = f"stopped after {COUNT_SECONDS:g} s: {reason}"
            unread.append(f"{prefix}{name} ({reason})")
            skipped.add(name)
            continue
        if polymorphic is None:
            rows, by_type, others = per_type.get(None, 0), [], []
        elif generic:
            counted = sorted(per_type.items(), key=lambda item: (-item[1], str(item[0])))
            by_type = [(content_types[v], n) for v, n in counted if v in content_types]
            others = [(v, n) for v, n in counted if v not in content_types]
            rows = sum(n for _v, n in by_type)
            by_type, others = by_type[:TYPE_VALUES], others[:TYPE_VALUES]
        else:
            counted = sorted(per_type.items(), key=lambda item: (-item[1], str(item[0])))
            matches = names_model if _is_odoo(column, polymorphic) else names_table
            by_type = [(v, n) for v, n in counted if matches(v, table.name)]
            others = [(v, n) for v, n in counted if not matches(v, table.name)]
            rows = sum(n for _v, n in by_type)
            by_type, others = by_type[:TYPE_VALUES], others[:TYPE_VALUES]
        if rows:
            found.append(Undeclared(schema, name, column, rows, polymorphic, by_type, others,
                                    unnamed=tuple(v for v, _n in by_type if generic and v in unnamed)))
