"""The heuristics: which tables and column sets could hold race duplicates nobody wrote a check for.

A candidate is only a suspicion read from the catalog; `measure.py` counts its duplicates and
`findings.py` decides whether it becomes a finding and how severe it is. The README section "What
`dupewatch audit` looks for" documents every rule here and its limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from monitor.audit.catalog import TableInfo, UniqueKey

Kind = Literal["link_table_without_unique", "unique_with_nullable_columns", "invalid_unique_index",
               "non_unique_natural_key", "one_to_one_suspect", "foreign_key_to_non_unique", "no_primary_key",
               "check_then_insert", "key_with_status", "identical_rows"]
KINDS: tuple[Kind, ...] = ("invalid_unique_index", "unique_with_nullable_columns", "link_table_without_unique",
                           "check_then_insert", "identical_rows", "non_unique_natural_key", "key_with_status",
                           "one_to_one_suspect", "foreign_key_to_non_unique", "no_primary_key")
STATUS_NAME = re.compile(r"(.*_)?(status|state)|is_[a-z0-9_]+|open|active|closed|current|submitted",
                         re.IGNORECASE)
Filter = Literal["none", "rows_with_null", "not_null", "given"]
SUSPICIONS: tuple[Kind, ...] = ("one_to_one_suspect", "non_unique_natural_key", "key_with_status")


@dataclass
class Candidate:
    """A column set of a table worth measuring (or, for `no_primary_key`, only worth reporting)."""

    kind: Kind
    table: TableInfo
    columns: tuple[str, ...]
    reason: str  # the catalog fact, for the evidence line
    needs_duplicates: bool  # reported only when duplicates are found
    row_filter: Filter = "none"
    measure: bool = True
    calls: int | None = None  # check_then_insert: how often the application ran the lookup
    rebuild: str | None = None  # invalid_unique_index: the statement that drops and rebuilds it
    pure: bool = False  # link_table_without_unique: nothing but references (a membership twice means nothing)
    status: str | None = None  # key_with_status: the status-like column; the key's other columns repeat per value
    null_columns: tuple[str, ...] = ()  # rows_with_null: the columns whose NULL the key lets through (else all)
    identifier: bool = False  # non_unique_natural_key with no foreign key: only almost one row per value counts
    # non_unique_natural_key over foreign keys and these columns: when they hold no more than a flag's values (a
    # soft-delete `del`), the key is its parents' children split in two, judged as its parents alone
    described: tuple[str, ...] = ()

    @property
    def agree_on(self) -> list[str]:
        """Columns of other (nullable) unique keys: rows of a group that differ in one are declared distinct."""
        return sorted({c for rest in self.table.other_unique_keys(self.columns) for c in rest})

    @property
    def nulls_beside(self) -> bool:
        """Whether a column of `agree_on` is nullable: its NULLs are grouped together when measured (GROUP BY), so a
        check of this key must group them so too (`nulls = "equal"`), leaving its own columns' NULLs out by `where`."""
        return any(self.table.columns[c].nullable for c in self.agree_on)

    @property
    def all_null_possible(self) -> bool:
        """Whether a row can hold NULL in every column of the key (rows_with_null measures no such row: it gives the
        key no value, the local accounts of a UNIQUE (provider, external_id))."""
        return all(self.table.columns[c].nullable for c in self.columns)

    @property
    def other_parents(self) -> list[str]:
        """For a suspicion (one_to_one_suspect, non_unique_natural_key, key_with_status): the NOT NULL columns of
        foreign keys outside the key, declared, or inferred by name in a schema that declares none (osTicket's
        form_id). Rows of a group that point at different parents there are different relationships (a view
        shown by two window actions, a ticket's entries of two forms), not copies of one row."""
        if self.kind not in SUSPICIONS:
            return []
        skip = set(self.columns) | set(self.agree_on) | self.table.bookkeeping
        # a name's guess only where nothing is declared: in a schema that declares its references, an undeclared
        # `<name>_id` is one its authors chose not to declare (the request that wrote the row), and rows differing
        # there may be copies written by two racing requests
        found = {c for fk in self.table.foreign_keys
                 if not (fk.inferred and self.table.schema_declares_references)
                 and not any(self.table.columns[k].nullable for k in fk.columns) for c in fk.columns}
        return [c for c in self.table.columns if c in found - skip]

    @property
    def keyed_parents(self) -> list[str]:
        """The other required parents the key is measured and checked per: an identifier's (a saved search's query
        and its user: nothing shows the value is unique across users), and a status key's (an active stock alert
        per user and product: a user's alerts on two products are two relationships, and a check keyed by the
        user alone would merge them)."""
        return self.other_parents if self.identifier or self.status is not None else []

    @property
    def sibling_sides(self) -> list[tuple[tuple[str, ...], str]]:
        """(parents, child column) whose rows one request may write together, so that rows born together tell no
        race: a status key's keyed parents and its reference (an order's lines of several products), and each side
        of a pair of required parents (an order and its products: the customer's second line of one product is
        written with the order's other lines, as a double submit's copy would be)."""
        if self.kind == "key_with_status" and self.keyed_parents:
            [own] = [c for c in self.columns if c != self.status]  # a single-column foreign key
            return [(tuple(self.keyed_parents), own)]
        if self.kind == "one_to_one_suspect" and len(self.columns) == 2:
            first, second = self.columns
            return [((first,), second), ((second,), first)]
        return []

    @property
    def compared(self) -> list[str]:
        """The columns that tell a race copy from a different row: every column but the key, a surrogate key,
        date-and-time columns, and types without a portable equality."""
        skip = set(self.columns) | set(self.agree_on) | surrogate_key(self.table)
        return [c.name for c in self.table.columns.values()
                if c.name not in skip and c.type_class not in ("temporal", "other", "float")]


    @property
    def presence_compared(self) -> list[str]:
        """Nullable date-and-time columns outside the key, but the birth column (deleted_at, closed_at): their values
        are not compared (a copy's moments differ by milliseconds), but whether a row holds one is: a like withdrawn
        (deleted_at set) and the like given again are two rows, not copies."""
        skip = set(self.columns) | set(self.agree_on) | {self.table.birth_column}
        return [c.name for c in self.table.columns.values()
                if c.name not in skip and c.type_class == "temporal" and c.nullable]

    @property
    def told_apart_by(self) -> list[str]:
        """The columns whose values (`compared`) or presence (`presence_compared`) tell a race copy from another row."""
        return [*self.compared, *self.presence_compared]

    @property
    def uncompared(self) -> list[str]:
        """Columns outside the key that `compared` leaves out but timestamps and a surrogate key: types without a
        portable equality (a float, a JSON document), in which rows alike in every compared column may differ."""
        skip = set(self.columns) | set(self.agree_on) | surrogate_key(self.table) | set(self.compared)
        return [c.name for c in self.table.columns.values() if c.name not in skip and c.type_class != "temporal"]


def surrogate_key(table: TableInfo) -> set[str]:
    """The integer `id` of a surrogate primary key (TableInfo.has_surrogate_key), which says nothing about the row."""
    return set(table.surrogate_columns)


def reference_columns(table: TableInfo) -> set[str]:
    """Foreign keys (declared or inferred), plus, in a table without a primary key, every integer column
    named `*_id`: a key-less table of ids is a link table even when its parents live elsewhere. The schema's
    bookkeeping columns (who wrote the row) are no parent, with or without a foreign key."""
    columns = set(table.fk_columns)
    if not table.primary_key:
        columns |= {c.name for c in table.columns.values()
                    if c.type_class == "integer" and c.name.lower().endswith("_id")}
    return columns - table.bookkeeping


def descriptive_columns(table: TableInfo) -> list[str]:
    """Columns that describe a row: not a surrogate key, a reference, a timestamp, or the schema's bookkeeping
    (a column every table has: who wrote the row)."""
    skip = surrogate_key(table) | reference_columns(table) | table.bookkeeping
    return [c.name for c in table.columns.values() if c.name not in skip and c.type_class != "temporal"]


def ordered(table: TableInfo, columns: Iterable[str]) -> tuple[str, ...]:
    wanted = set(columns)
    return tuple(c for c in table.columns if c in wanted)


def is_link_table(table: TableInfo) -> bool:
    """(Mostly) foreign keys: at least two, and at most one descriptive column per two of them."""
    fks = reference_columns(table)
    return len(fks) >= 2 and len(descriptive_columns(table)) <= len(fks) // 2


def link_tables(tables: list[TableInfo]) -> list[Candidate]:
    """Link tables keyed by every column that identifies a row (its references and its descriptive columns:
    a revoked secret, a reply's text), so that only rows alike in all of them are counted as repeats."""
    found = []
    for table in tables:
        if not is_link_table(table):
            continue
        references = reference_columns(table)
        descriptive = descriptive_columns(table)
        meaningful = references | set(descriptive)
        if any(u.protects and set(u.columns) <= meaningful for u in table.uniques):
            continue  # unique over the foreign keys (or them plus a role): the design allows no repeats
        columns = ordered(table, meaningful)
        by_name = "" if references <= {c for fk in table.foreign_keys if not fk.inferred for c in fk.columns} \
            else " (known by their names)"
        also = f" and {', '.join(ordered(table, descriptive))}" if descriptive else ""
        found.append(Candidate("link_table_without_unique", table, columns,
                               f"link table of {len(references)} foreign keys{by_name}{also} with no primary key "
                               "or unique constraint over them", needs_duplicates=bool(descriptive),
                               pure=not descriptive))
    return found


def nullable_uniques(tables: list[TableInfo]) -> list[Candidate]:
    found = []
    for table in tables:
        for unique in table.uniques:
            if unique.origin == "primary_key" or not unique.protects or not unique.nulls_distinct \
                    or len(unique.columns) < 2:
                continue
            # a column indexed as COALESCE(column, constant) is safe: its NULL is a value that collides; so is one
            # whose NULL rows another unique key keeps unique (a partial index WHERE column IS NULL)
            nullable = [c for c in unique.columns if table.columns[c].nullable and c in unique.null_escapes([c])
                        and not table.null_rows_covered(unique.columns, c)]
            if not nullable:
                continue
            found.append(Candidate("unique_with_nullable_columns", table, unique.columns,
                                   f"{_describe_unique(unique)} treats NULLs as distinct and "
                                   f"{', '.join(nullable)} {'is' if len(nullable) == 1 else 'are'} nullable",
                                   needs_duplicates=False, row_filter="rows_with_null",
                                   null_columns=tuple(nullable)))
    return found


def invalid_indexes(tables: list[TableInfo], quote: QuoteFn) -> list[Candidate]:
    found = []
    for table in tables:
        for unique in table.uniques:
            if unique.valid or unique.name is None:
                continue
            definition = table.invalid_index_sql.get(unique.name, "")
            rebuild = (f"DROP INDEX CONCURRENTLY {quote(table.schema, unique.name)}; "
                       + re.sub(r"^CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY ", definition))
            found.append(Candidate("invalid_unique_index", table, unique.columns,
                                   f"unique index {unique.name} is invalid (indisvalid = false, a failed "
                                   "concurrent build): it blocks some inserts and protects nothing",
                                   needs_duplicates=False, measure=bool(unique.columns), rebuild=rebuild))
    return found


def natural_keys(tables: list[TableInfo]) -> list[Candidate]:
    found = []
    for table in tables:
        seen: set[frozenset[str]] = set()  # two indexes over the same columns in another order are one lookup
        for index in table.indexes:
            if index.unique or not index.columns or frozenset(index.columns) in seen:
                continue
            types = {table.columns[c].type_class for c in index.columns}
            fks = [c for c in index.columns if c in table.fk_columns]
            descriptive = [c for c in index.columns if c not in table.fk_columns and c not in surrogate_key(table)]
            if not descriptive or types & {"temporal", "float", "other"} or table.is_protected(index.columns) \
                    or set(index.columns) & table.bookkeeping:
                continue
            seen.add(frozenset(index.columns))
            if not fks:
                # a login or an email looked up before an insert (wp_insert_user's username_exists): reported only
                # when almost every value occurs once (findings._repeats_like_a_mistake); rows holding NULL or the
                # column's default were given no identifier (Kanboard's hand-written comments, reference ''):
                # measured without them, as the check then is
                found.append(Candidate("non_unique_natural_key", table, index.columns,
                                       f"non-unique index {index.name} over {', '.join(descriptive)}, the lookup "
                                       "of a check-then-insert", needs_duplicates=True, identifier=True,
                                       row_filter="given"))
                continue
            by_name = {c for fk in table.foreign_keys if fk.inferred for c in fk.columns}
            fk_text = ", ".join(f"{c} (by its name)" if c in by_name else c for c in fks)
            found.append(Candidate("non_unique_natural_key", table, index.columns,
                                   f"non-unique index {index.name} over foreign key {fk_text} and "
                                   f"{', '.join(descriptive)}, the lookup of a get_or_create",
                                   needs_duplicates=True, described=tuple(descriptive)))
    return found


def status_keys(tables: list[TableInfo]) -> list[Candidate]:
    """A reference plus a status-like column (`owner_id`, `status`): `get_or_create(owner=..., status="open")`
    keeps one row per owner in one status while the others (submitted baskets) repeat by design."""
    found = []
    for table in tables:
        if is_link_table(table):
            continue
        statuses = [c for c in table.columns.values() if c.type_class == "text" and STATUS_NAME.fullmatch(c.name)
                    and c.name not in table.fk_columns]
        keyed: set[frozenset[str]] = set()
        for fk in table.foreign_keys:
            if len(fk.columns) != 1 or table.is_protected(fk.columns) or fk.columns[0] in table.bookkeeping:
                continue
            for status in statuses:
                if table.is_protected((*fk.columns, status.name)):
                    continue
                # a row with no parent there (a visitor's stock alert, no user) is keyed by nothing: left out
                candidate = Candidate("key_with_status", table, (*fk.columns, status.name),
                                      f"{fk.columns[0]} repeats across {status.name} values; no unique key over "
                                      f"{fk.columns[0]} for one {status.name}", needs_duplicates=True,
                                      row_filter="not_null", status=status.name)
                # measured per its other required parents: (user_id, status) per product_id and (product_id,
                # status) per user_id are one key
                whole = frozenset((*candidate.columns, *candidate.keyed_parents))
                if whole not in keyed:
                    keyed.add(whole)
                    found.append(candidate)
    return found


def one_to_one_suspects(tables: list[TableInfo]) -> list[Candidate]:
    found = []
    for table in tables:
        if is_link_table(table):
            continue
        for fk in table.foreign_keys:
            column = fk.columns[0]
            if len(fk.columns) != 1 or table.is_protected(fk.columns) or table.unique_while_null(fk.columns) \
                    or column in table.bookkeeping:
                continue
            how = " (by its name)" if fk.inferred else ""
            found.append(Candidate("one_to_one_suspect", table, fk.columns,
                                   f"{column} references {fk.referred_table}{how} and is not unique",
                                   needs_duplicates=True, row_filter="not_null"))
    return found


MAX_PAIRED_PARENTS = 4  # a table with more required parents is a fact table: its pairs are not measured


def parent_pairs(tables: list[TableInfo]) -> list[Candidate]:
    """Two required parents no unique key covers together (one build's summary per environment, kept by a get then
    a create): Django indexes each foreign key alone, so no index names the pair, and each parent alone repeats
    by design. Judged as a one_to_one_suspect is: only almost one row per pair makes its repeats a mistake; the
    table's other required parents still tell relationships apart."""
    found = []
    for table in tables:
        if is_link_table(table):
            continue
        parents = [c for c in required_parents(table) if c not in table.bookkeeping]
        if not 2 <= len(parents) <= MAX_PAIRED_PARENTS:
            continue
        for i, first in enumerate(parents):
            for second in parents[i + 1:]:
                if table.is_protected((first, second)) or table.unique_while_null((first, second)):
                    continue
                found.append(Candidate("one_to_one_suspect", table, ordered(table, (first, second)),
                                       f"{first} and {second} are required references, and no unique key covers "
                                       "them together", needs_duplicates=True, row_filter="not_null"))
    return found


def required_parents(table: TableInfo) -> list[str]:
    """The NOT NULL one-column foreign keys: declared, or inferred by name in a schema that declares none."""
    found = {fk.columns[0] for fk in table.foreign_keys if len(fk.columns) == 1
             and not (fk.inferred and table.schema_declares_references) and not table.columns[fk.columns[0]].nullable}
    return [c for c in table.columns if c in found]


def fks_to_non_unique(tables: list[TableInfo]) -> list[Candidate]:
    by_name = {(t.schema, t.name): t for t in tables}
    found: dict[tuple[str, str, tuple[str, ...]], Candidate] = {}
    for table in tables:
        for fk in table.foreign_keys:
            referred = by_name.get((fk.referred_schema, fk.referred_table))
            if fk.inferred or referred is None or referred.is_protected(fk.referred_columns):
                continue
            key = (referred.schema, referred.name, fk.referred_columns)
            if key not in found and all(c in referred.columns for c in fk.referred_columns):
                found[key] = Candidate(
                    "foreign_key_to_non_unique", referred, fk.referred_columns,
                    f"{table.name}({', '.join(fk.columns)}) references {referred.name}"
                    f"({', '.join(fk.referred_columns)}), which no primary key or unique constraint covers",
                    needs_duplicates=False)
    return list(found.values())


def identical_rows(tables: list[TableInfo]) -> list[Candidate]:
    """A table with no primary key and no unique key, and not a link table (`link_tables` covers those): its rows
    measured over every column, so that only rows alike in all of them count. Nothing in the schema stops a
    second copy of a row (`INSERT IGNORE` / `ON CONFLICT DO NOTHING` into such a table ignores nothing), and
    nothing tells the copies apart once they are in."""
    found = []
    for table in tables:
        if table.primary_key or any(u.protects for u in table.uniques) or is_link_table(table):
            continue
        columns = tuple(c.name for c in table.columns.values() if c.type_class != "other")
        if len(columns) < len(table.columns) or not columns:
            continue  # a column without a portable equality (JSON, arrays) could tell copies apart: no claim
        found.append(Candidate("identical_rows", table, columns, "no primary key or unique key: nothing stops a "
                               "second copy of a row", needs_duplicates=True))
    return found


def no_primary_keys(tables: list[TableInfo]) -> list[Candidate]:
    return [Candidate("no_primary_key", t, (), "no primary key: a fix can only tell its rows apart by physical "
                      "identity (ctid, rowid; none on MySQL/MariaDB)", needs_duplicates=False, measure=False)
            for t in tables if not t.primary_key]


def _describe_unique(unique: UniqueKey) -> str:
    what = "unique index" if unique.origin == "index" else "unique constraint"
    return f"{what} {unique.name}" if unique.name else what


class QuoteFn:
    """`quote(schema, name)` -> a quoted, schema-qualified identifier (the audited database's quoting)."""

    def __init__(self, preparer: object) -> None:
        self._preparer = preparer

    def __call__(self, schema: str, name: str) -> str:
        p = self._preparer
        return f"{p.quote_schema(schema)}.{p.quote(name)}"  # type: ignore[attr-defined]


def all_candidates(tables: list[TableInfo], quote: QuoteFn, lookups: list[Candidate],
                   related: list[Candidate] | None = None) -> list[Candidate]:
    """Every candidate, in the order they are measured: what matters most first (structural risks and the
    application's own lookups), the many one-column suspicions last, so a small budget spends itself on the
    likeliest evidence. `related`: natural keys the data confirmed (`generic.py`). A column set whose rows another
    NOT NULL unique key declares distinct is no candidate."""
    found = [*invalid_indexes(tables, quote), *nullable_uniques(tables), *link_tables(tables), *lookups,
             *identical_rows(tables),
             *(related or []), *natural_keys(tables), *status_keys(tables), *one_to_one_suspects(tables),
             *parent_pairs(tables), *fks_to_non_unique(tables), *no_primary_keys(tables)]
    return [c for c in found if not c.columns or c.kind in ("invalid_unique_index", "foreign_key_to_non_unique")
            or c.table.declares_distinct(c.columns) is None]
