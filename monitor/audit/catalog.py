"""What the audit knows about a schema: tables, columns, keys, unique constraints and indexes, foreign keys.

Read with SQLAlchemy reflection (the batched `Inspector.get_multi_*` calls), completed by the per-dialect
catalog queries in `monitor.audit.dialect_catalog` where reflection falls short (row estimates, index
definitions). Everything here is plain data; nothing is measured.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.engine.reflection import ObjectKind

from monitor.audit import dialect_catalog
from monitor.dialects import for_backend

TypeClass = Literal["integer", "text", "date", "temporal", "float", "other"]
OWN_TABLE_PREFIX = "dupewatch_"  # fix archives and plans that dupewatch itself creates


class SchemaNotFound(Exception):
    """A `--schema` that the database does not have; one line naming it and the ones that exist."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type_class: TypeClass
    nullable: bool
    moment: bool = False  # a date and time (not a date alone, a time or an interval): a row's birth or last change
    defaults_to_now: bool = False  # its server default is now() / CURRENT_TIMESTAMP: set when the row is written
    orderable: bool = True  # min()/max() work on it everywhere (PostgreSQL has none for boolean or uuid)
    generated: bool = False  # filled by the database: a sequence default, an identity, AUTO_INCREMENT
    # its server default when the database says it is a constant (see CatalogExtras.constant_defaults), for a text
    # or integer column: the value a row left at it holds, bound into a query, never SQL
    default_value: str | int | None = None


@dataclass(frozen=True)
class UniqueKey:
    """A primary key, unique constraint or unique index. `nulls_distinct`: two rows with a NULL in a key
    column never collide (the SQL standard's default; PostgreSQL 15 `NULLS NOT DISTINCT` turns it off)."""

    name: str | None
    columns: tuple[str, ...]
    origin: Literal["primary_key", "constraint", "index"]
    nulls_distinct: bool = True
    partial: bool = False
    valid: bool = True
    coalesced: frozenset[str] = frozenset()  # columns indexed as COALESCE(column, constant): a NULL collides
    # a partial unique index whose whole predicate is `column IS NULL [AND ...]` (the database's rendering of it):
    # those columns; it keeps its columns unique among the rows where they are NULL. None for any other predicate
    null_predicate: frozenset[str] | None = None

    def null_escapes(self, columns: Iterable[str]) -> set[str]:
        """The columns of `columns` where a NULL lets a second row in: every one the key covers, unless it treats
        NULLs as equal, less those it indexes through COALESCE(column, constant) (NULL becomes the constant)."""
        if not self.nulls_distinct:
            return set()
        return (set(columns) & set(self.columns)) - self.coalesced

    @property
    def protects(self) -> bool:
        """Whether it keeps every row's key unique: valid, not partial, over plain columns."""
        return self.valid and not self.partial and bool(self.columns)


@dataclass(frozen=True)
class IndexInfo:
    name: str
    columns: tuple[str, ...]  # empty when the index has an expression other than COALESCE(column, constant)
    unique: bool


@dataclass(frozen=True)
class ForeignKeyInfo:
    columns: tuple[str, ...]
    referred_schema: str
    referred_table: str
    referred_columns: tuple[str, ...]
    inferred: bool = False  # from a `<name>_id` naming convention, not a declared constraint


@dataclass
class TableInfo:
    schema: str
    name: str
    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...]
    uniques: list[UniqueKey]
    indexes: list[IndexInfo]
    foreign_keys: list[ForeignKeyInfo]
    row_estimate: int | None = None  # the catalog's statistics; None when the database keeps none
    invalid_index_sql: dict[str, str] = field(default_factory=dict)  # PostgreSQL: name -> CREATE UNIQUE INDEX ...
    bookkeeping: frozenset[str] = frozenset()  # columns (nearly) every table of the schema has: see read_catalog
    partition_of: tuple[str, str] | None = None  # PostgreSQL: a partition's partitioned table (schema, name)
    schema_declares_references: bool = False  # a table of its schema declares a foreign key (see other_parents)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def fk_columns(self) -> set[str]:
        return {column for fk in self.foreign_keys for column in fk.columns}

    def other_unique_keys(self, columns: Iterable[str]) -> list[tuple[str, ...]]:
        """The column sets that another unique key covers, `columns` aside: rows differing in one of them are
        different entities by the schema's own declaration (a surrogate primary key says nothing and is left out)."""
        key = set(columns)
        surrogate = self.primary_key if self.has_surrogate_key else ()
        found: list[tuple[str, ...]] = []
        for unique in self.uniques:
            rest = tuple(c for c in unique.columns if c not in key)
            if unique.protects and unique.columns != surrogate and rest and rest not in found:
                found.append(rest)
        return found

    def declares_distinct(self, columns: Iterable[str]) -> tuple[str, ...] | None:
        """Another unique key whose other columns are NOT NULL (or NULL made a value by COALESCE): then no two rows
        can agree on it, and rows repeating `columns` are different entities by declaration. None when none is."""
        key = set(columns)
        surrogate = self.primary_key if self.has_surrogate_key else ()
        for unique in self.uniques:
            rest = tuple(c for c in unique.columns if c not in key)
            if unique.protects and unique.columns != surrogate and rest \
                    and not unique.null_escapes(c for c in rest if self.columns[c].nullable):
                return rest
        return None

    @property
    def has_surrogate_key(self) -> bool:
        """A one-column integer primary key: an `id` the database makes up, which says nothing about the row; or
        a primary key of such an `id`, filled by the database, and partition columns (PostgreSQL requires a
        partitioned table's keys to hold its partition key: `PRIMARY KEY (id, created_at)`)."""
        return bool(self.surrogate_columns)

    @property
    def surrogate_columns(self) -> tuple[str, ...]:
        """The integer column of a surrogate primary key (see has_surrogate_key), else ()."""
        integers = [c for c in self.primary_key if self.columns[c].type_class == "integer"]
        if len(self.primary_key) == 1:
            return tuple(integers)
        generated = [c for c in integers if self.columns[c].generated]
        return tuple(generated) if len(generated) == 1 else ()

    @property
    def birth_column(self) -> str | None:
        """The date-and-time column that best tells when a row was written: a `created_at` / `first_seen`-style
        name, then any column the server fills with now(), then `*_at` / `*_on` / `*_time` / `*_seen` names, then
        `last_seen` / `updated_at`-style names (rows racing in are written within the same burst either way)."""
        moments = [c for c in self.columns.values() if c.moment]
        for rank in range(len(BIRTH_NAME_RANKS)):
            for column in moments:
                if _birth_rank(column) == rank:
                    return column.name
        return None

    @property
    def birth_is_creation(self) -> bool:
        """Whether `birth_column` is named as a creation time (`created_at`, `date_created`): a now()-defaulted
        column may be refreshed on every update (MySQL's ON UPDATE CURRENT_TIMESTAMP), and a `*_at` or `updated_at`
        one tells when something else happened, so rows alike in it need not have been written together."""
        birth = self.birth_column
        return birth is not None and bool(BIRTH_NAME_RANKS[0].fullmatch(birth))

    def is_protected(self, columns: Iterable[str]) -> bool:
        """Whether some valid unique key lies within `columns` (then rows can never repeat them)."""
        wanted = set(columns)
        return any(u.protects and set(u.columns) <= wanted for u in self.uniques)

    def unique_while_null(self, columns: Iterable[str]) -> bool:
        """Whether a valid partial unique key within `columns` keeps them unique among the rows where its predicate's
        columns are NULL (`WHERE deleted_at IS NULL`): no two such rows repeat them, and the rows outside it (a like
        withdrawn, then given again) repeat by design."""
        wanted = set(columns)
        return any(u.valid and u.partial and u.null_predicate and u.columns and set(u.columns) <= wanted
                   for u in self.uniques)

    def null_rows_covered(self, columns: Iterable[str], column: str) -> bool:
        """Whether another unique key stops a second row equal in `columns` among the rows where `column` is NULL,
        which a NULLS DISTINCT key over `columns` lets through: a valid key over some of `columns` (not `column`)
        that no NULL escapes (its columns NOT NULL, or NULLs made equal), either whole (it keeps every row unique)
        or partial with the predicate `column IS NULL` alone (Synapse's receipts: UNIQUE (room_id, receipt_type,
        user_id, thread_id) beside a unique index over the first three WHERE thread_id IS NULL)."""
        wanted = set(columns)
        for key in self.uniques:
            whole = key.protects
            for_nulls = key.partial and key.null_predicate == frozenset({column})
            if not key.valid or not key.columns or not (whole or for_nulls) or column in key.columns \
                    or not set(key.columns) <= wanted:
                continue
            if not key.null_escapes(c for c in key.columns if self.columns[c].nullable):
                return True
        return False

    def stops_copies(self, columns: Iterable[str], null_columns: Iterable[str] = ()) -> bool:
        """Whether a unique key stops a second row with these values, when `null_columns` are looked up as NULL:
        a key within `columns` that is valid, and treats NULLs as equal wherever it covers a NULL."""
        wanted, nulls = set(columns), set(null_columns)
        return any(u.protects and set(u.columns) <= wanted and not u.null_escapes(nulls) for u in self.uniques)

    def sa_table(self) -> sa.TableClause:
        """A lightweight table clause for building quoted statements."""
        return sa.table(self.name, *(sa.column(c) for c in self.columns), schema=self.schema)


# snake_case or camelCase (Sequelize's, Prisma's and TypeORM's `createdAt`): `_?` where a word starts
BIRTH_NAME_RANKS = (
    re.compile(r"created(_?at|_?on|_?time|_?date)?|inserted(_?at|_?on)?|date_?created|creation_?(date|time)|"
               r"(date_?)?joined|first_?seen(_?at)?|added(_?at|_?on)?|"
               r"([a-z0-9]+_?)?(registered|registration)(_?at|_?on|_?date)?", re.IGNORECASE),
    re.compile(r"(?!)"),  # rank 1: any date-and-time column the server fills with now() (see _birth_rank)
    re.compile(r".*(_at|_on|_time|_seen|_date)|(?-i:.*[a-z0-9](At|On|Time|Seen|Date))", re.IGNORECASE),
    re.compile(r"last_?seen(_?at)?|updated(_?at|_?on)?|modified(_?at|_?on)?|last_?login|datetime|timestamp|date",
               re.IGNORECASE),
)
NOW_DEFAULT = re.compile(r"now\(|current_timestamp|localtimestamp|statement_timestamp|clock_timestamp|"
                         r"transaction_timestamp|getdate|sysdate|(datetime|julianday|strftime)\([^)]*'now'",
                         re.IGNORECASE)


def classify_type(type_: Any) -> TypeClass:
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Float | sa.Numeric) and not isinstance(type_, sa.Integer):
        return "float" if isinstance(type_, sa.Float) else "other"
    if isinstance(type_, sa.DateTime | sa.Time | sa.Interval):
        return "temporal"  # a moment: two rows rarely share one, so it never makes a natural key
    if isinstance(type_, sa.Date):
        return "date"  # a day: "one check-in per user and day" is a natural key
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum):
        return "text"
    if isinstance(type_, sa.Enum | sa.Boolean | sa.Uuid):
        return "text"
    return "other"


def resolve_schemas(conn: Connection, wanted: Iterable[str]) -> list[str]:
    """The schemas to audit: those named (each must exist), else the connection's default schema."""
    inspector = sa.inspect(conn)
    names = list(wanted)
    if not names and inspector.default_schema_name:
        return [inspector.default_schema_name]
    existing = inspector.get_schema_names()
    if not names:  # MySQL/MariaDB without a database in the URL
        shown = sorted(existing)
        more = f", … {len(shown) - 10} more" if len(shown) > 10 else ""
        raise SchemaNotFound(f"the URL names no database and no --schema was given: name one "
                             f"(have: {', '.join(shown[:10])}{more})")
    for name in names:
        if name not in existing:
            raise SchemaNotFound(f"--schema {name}: no such schema (have: {', '.join(sorted(existing))})")
    return names


def read_catalog(conn: Connection, schemas: list[str]) -> list[TableInfo]:
    """Every base table of `schemas` (dupewatch's own tables excluded), with inferred foreign keys added."""
    inspector = sa.inspect(conn)
    fixed_name = for_backend(conn.dialect.name).reflected_column_name
    tables: list[TableInfo] = []
    for schema in schemas:
        tables.extend(_read_schema(inspector, conn, schema, fixed_name))
    # a partition whose partitioned table is audited holds that table's rows: audited once, through it
    audited = {(t.schema, t.name) for t in tables}
    tables = [t for t in tables if t.partition_of not in audited]
    _infer_foreign_keys(tables)
    _mark_bookkeeping(tables)
    return tables


BOOKKEEPING_MIN_TABLES = 10  # a schema this big before a column "every table has" means anything ...
BOOKKEEPING_SHARE = 0.9  # ... and the share of its tables that must have it


def _mark_bookkeeping(tables: list[TableInfo]) -> None:
    """A column (same name, same type) that nearly every table of the schema has is the framework's bookkeeping
    (Tryton's create_uid / write_uid, who wrote the row): it tells who or when, not which row, so it is neither a
    parent nor a descriptive column of any one table. Judged from the whole catalog, never from the name."""
    if len(tables) < BOOKKEEPING_MIN_TABLES:
        return
    counts: dict[tuple[str, str], int] = {}
    for table in tables:
        for column in table.columns.values():
            counts[(column.name, column.type_class)] = counts.get((column.name, column.type_class), 0) + 1
    common = {name for (name, _type), n in counts.items() if n >= BOOKKEEPING_SHARE * len(tables)}
    for table in tables:
        table.bookkeeping = frozenset(common - set(table.primary_key))


def _read_schema(inspector: Inspector, conn: Connection, schema: str,
                 fixed_name: Callable[[str], str]) -> list[TableInfo]:
    kind = ObjectKind.TABLE
    columns = inspector.get_multi_columns(schema=schema, kind=kind)
    pks = inspector.get_multi_pk_constraint(schema=schema, kind=kind)
    fks = inspector.get_multi_foreign_keys(schema=schema, kind=kind)
    indexes = inspector.get_multi_indexes(schema=schema, kind=kind)
    uniques = inspector.get_multi_unique_constraints(schema=schema, kind=kind)
    extras = dialect_catalog.queries_for(conn).catalog_extras(conn, schema)
    tables = []
    for key, cols in columns.items():
        name = key[1]
        if name.startswith(OWN_TABLE_PREFIX):
            continue
        table = _table_info(schema, name, cols, pks.get(key), fks.get(key, []), indexes.get(key, []),
                            uniques.get(key, []), fixed_name, extras.equality_exclusions.get(name, set()),
                            extras.constant_defaults.get(name, {}))
        table.row_estimate = extras.row_estimates.get(name)
        table.invalid_index_sql = extras.invalid_unique_indexes.get(name, {})
        table.partition_of = extras.partition_of.get(name)
        tables.append(table)
    return sorted(tables, key=lambda t: t.name)


def _table_info(schema: str, name: str, cols: list[Any], pk: Any, fks: list[Any], indexes: list[Any],
                uniques: list[Any], fixed_name: Callable[[str], str] = str,
                exclusions: set[str] | frozenset[str] = frozenset(),
                constant_defaults: dict[str, str] | None = None) -> TableInfo:
    def names_of(raw: Iterable[str]) -> tuple[str, ...]:
        return tuple(fixed_name(n) for n in raw)

    constants = constant_defaults or {}
    columns = {fixed_name(c["name"]): _column_info(fixed_name(c["name"]), c, constants.get(c["name"])) for c in cols}
    primary = names_of(pk["constrained_columns"]) if pk and pk.get("constrained_columns") else ()
    keys: list[UniqueKey] = [UniqueKey(pk.get("name"), primary, "primary_key")] if primary else []
    for u in uniques:
        options = u.get("dialect_options", {})
        keys.append(UniqueKey(u.get("name"), names_of(u["column_names"]), "constraint",
                              nulls_distinct=not options.get("postgresql_nulls_not_distinct", False)))
    index_infos = []
    for ix in indexes:
        elements = _index_elements(ix, columns)
        names = names_of(c for c, _ in elements) if elements is not None else ()
        coalesced = frozenset(fixed_name(c) for c, wrapped in elements or () if wrapped)
        # an exclusion constraint whose operators are all `=` is a unique constraint in all but name
        unique = bool(ix["unique"]) or ix["name"] in exclusions
        index_infos.append(IndexInfo(ix["name"], names, unique))
        if unique and not any(k.name == ix["name"] and k.columns == names for k in keys):
            options = ix.get("dialect_options", {})
            keys.append(UniqueKey(
                ix["name"], names, "constraint" if ix["name"] in exclusions else "index",
                nulls_distinct=not options.get("postgresql_nulls_not_distinct", False),
                partial=any(k.endswith("_where") for k in options),
                valid=not options.get("postgresql_invalid", False), coalesced=coalesced,
                null_predicate=_null_predicate(options, columns)))
    foreign = [ForeignKeyInfo(names_of(fk["constrained_columns"]), fk.get("referred_schema") or schema,
                              fk["referred_table"], names_of(fk["referred_columns"])) for fk in fks]
    return TableInfo(schema, name, columns, primary, keys, index_infos, foreign)


_IDENTIFIER = r'"(?:[^"]|"")+"|`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_$]*'
_CONSTANT = r"(?:_\w+)?'(?:[^']|'')*'|-?[0-9]+(?:\.[0-9]+)?"
COALESCED = re.compile(rf"\(?\s*coalesce\s*\(\s*(?P<column>{_IDENTIFIER})\s*,\s*\(?(?:{_CONSTANT})\)?"
                       r"(?:\s*::\s*[A-Za-z ]+(?:\([0-9, ]+\))?)?\s*\)\s*\)?", re.IGNORECASE)


_NULL_TERM = rf"\(?\s*(?P<column>{_IDENTIFIER})\s+IS\s+NULL\s*\)?"
_ANY_NULL_TERM = rf"\(?\s*(?:{_IDENTIFIER})\s+IS\s+NULL\s*\)?"
NULL_PREDICATE = re.compile(rf"\(?\s*{_ANY_NULL_TERM}(?:\s+AND\s+{_ANY_NULL_TERM})*\s*\)?", re.IGNORECASE)


def _null_predicate(options: dict[str, Any], columns: dict[str, Any]) -> frozenset[str] | None:
    """The columns a partial index's predicate requires NULL, when the whole predicate, as the database renders it
    (PostgreSQL's pg_get_expr, SQLite's CREATE INDEX text), is `column IS NULL` or a conjunction of such terms;
    None for a full index or any other predicate."""
    texts = [str(v) for k, v in options.items() if k.endswith("_where") and v is not None]
    if len(texts) != 1 or not NULL_PREDICATE.fullmatch(texts[0].strip()):
        return None
    found = set()
    for term in re.finditer(_NULL_TERM, texts[0], re.IGNORECASE):
        column = term.group("column")
        column = column[1:-1].replace(column[0] * 2, column[0]) if column[0] in '"`' else column
        if column not in columns and column.lower() not in columns:
            return None
        found.add(column if column in columns else column.lower())
    return frozenset(found) or None


def _index_elements(ix: dict[str, Any], columns: dict[str, Any]) -> list[tuple[str, bool]] | None:
    """(column, wrapped in COALESCE) per element of an index, or None when an element is any other expression.
    The expressions are the database's own rendering of them (PostgreSQL's pg_get_indexdef, per column):
    COALESCE(column, constant) keys the column itself, with NULL turned into a value that collides."""
    found: list[tuple[str, bool]] = []
    expressions = ix.get("expressions") or [None] * len(ix["column_names"])
    for name, expression in zip(ix["column_names"], expressions, strict=False):
        if name is not None:
            found.append((name, False))
            continue
        match = COALESCED.fullmatch(str(expression or "").strip())
        if match is None:
            return None
        column = match.group("column")
        column = column[1:-1].replace(column[0] * 2, column[0]) if column[0] in '"`' else column
        if column not in columns and column.lower() not in columns:
            return None
        found.append((column if column in columns else column.lower(), True))
    return found


def _birth_rank(column: ColumnInfo) -> int:
    """0 for a creation name, 1 for a now()-defaulted moment, 2 for a `*_at`-style name, 3 for a last-change
    name, 4 for anything else (never chosen)."""
    if BIRTH_NAME_RANKS[0].fullmatch(column.name):
        return 0
    if column.defaults_to_now:
        return 1
    return next((rank for rank, pattern in enumerate(BIRTH_NAME_RANKS) if rank > 1 and pattern.fullmatch(column.name)),
                len(BIRTH_NAME_RANKS))


def _column_info(name: str, reflected: dict[str, Any], constant: str | None = None) -> ColumnInfo:
    type_ = reflected["type"]
    default = str(reflected.get("default") or "")
    generated = "nextval(" in default.lower() or bool(reflected.get("identity")) \
        or reflected.get("autoincrement") is True
    return ColumnInfo(name, classify_type(type_), bool(reflected["nullable"]),
                      moment=isinstance(type_, sa.DateTime), defaults_to_now=bool(NOW_DEFAULT.search(default)),
                      orderable=not isinstance(type_, sa.Boolean | sa.Uuid | sa.Enum), generated=generated,
                      default_value=None if generated or reflected.get("computed") else _default_value(type_, constant))


def _default_value(type_: Any, constant: str | None) -> str | int | None:
    """A constant default's value as the column holds it: the text for a string column (not an enum), the number
    for an integer column; None for other types, where text and value may differ (a date, a boolean)."""
    if constant is None:
        return None
    if isinstance(type_, sa.Integer):
        return int(constant) if re.fullmatch(r"-?[0-9]+", constant) else None
    if isinstance(type_, sa.String) and not isinstance(type_, sa.Enum):
        return constant
    return None


def _infer_foreign_keys(tables: list[TableInfo]) -> None:
    """Rails and many hand-written schemas declare no foreign keys: a `<name>_id` integer column counts as
    one when a table named after it (`user_id` -> `users`, `user`, `<prefix>_user`) has a one-column
    integer primary key."""
    by_name: dict[str, TableInfo] = {}
    for t in tables:
        by_name.setdefault(t.name.lower(), t)
    declaring = {t.schema for t in tables if any(not fk.inferred for fk in t.foreign_keys)}
    for t in tables:
        t.schema_declares_references = t.schema in declaring
    for table in tables:
        declared = table.fk_columns
        for column in table.columns.values():
            if column.name in declared or column.type_class != "integer" or column.name in table.primary_key:
                continue
            match = re.fullmatch(r"(.+)_id", column.name, flags=re.IGNORECASE)
            if not match:
                continue
            parent = _parent_table(match.group(1).lower(), by_name, table)
            if parent is not None:
                table.foreign_keys.append(ForeignKeyInfo((column.name,), parent.schema, parent.name,
                                                         parent.primary_key, inferred=True))


def _parent_table(stem: str, by_name: dict[str, TableInfo], child: TableInfo) -> TableInfo | None:
    candidates = [stem, stem + "s", stem + "es", stem[:-1] + "ies" if stem.endswith("y") else None]
    prefix = child.name.lower().split("_")[0] + "_"  # Django: <app>_<model>
    for name in candidates:
        if name is None:
            continue
        for full in (name, prefix + name):
            parent = by_name.get(full)
            if parent is not None and parent is not child and len(parent.primary_key) == 1 \
                    and parent.columns[parent.primary_key[0]].type_class == "integer":
                return parent
    return None
