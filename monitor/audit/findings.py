"""From measured candidates to findings: which are reported, how severe they are, and the check that
would watch each.

Severity is decided by evidence, the way a DBA reads a table:
- The **race signature** decides what measured duplicates mean. Race copies are born together and alike: a
  group whose rows were written within BURST_SECONDS (by the table's birth timestamp), or, without one, whose
  rows agree on every compared column, is a race: `high`. Rows alike but born apart: `medium`. Rows that
  differ and were born apart are the design: no finding for the kinds that are only suspicions
  (`one_to_one_suspect`, `non_unique_natural_key`, `key_with_status`, a link table with descriptive columns).
  Rows that differ, with no timestamp to tell: `medium`, and its check is written commented out (no finding at all
  for an index with no foreign key: the index alone is too weak a suspicion). A `one_to_one_suspect` (a parent
  alone) whose rows were born together but mostly differ: `medium`, check written commented out (a parent's
  children written in one request look so too). When only some groups are copies,
  the severity stands and the check is written commented out: its fix would merge the others too; so it is when
  groups born together differ in a compared column (an order's two lines of one product, written at once).
- **Copies inside the design**: a nullable unique key whose groups differ and were born apart (a product's
  anonymous reviews) but hold rows alike in every compared column and born together (a guest's review posted
  twice): `high`, the copies alone, checked by every compared column too (`copies_only`), only when that check
  would merge nothing else (no group alike in those columns born apart, undated, or written with its siblings by one
  request; no column left out of the comparison; dated by a creation time).
- **A status key per its other parents** (an order's lines per product and status), **or a pair of required
  parents** (an order's lines per order and product): when one side's parents' rows are written together (one
  request writes an order's lines), rows born together are no race: `medium`, check drafted.
- **Rows alike in every column of a key-less table** (`identical_rows`): `medium`, check commented out; such a
  table may log one event twice by design.
- **Parents tell relationships apart**: for a suspicion (a one-to-one, a natural-key index, a key plus status), a
  group whose rows point at different parents through another NOT NULL foreign key links the key to different
  rows (one view shown by two window actions): the design, no finding.
- **What the schema declares** outranks the heuristics: a group whose rows differ in a column set another
  unique key covers is distinct entities, never counted (`candidates.all_candidates` drops the candidate when
  that key is NOT NULL).
- **Structural risks** stand without duplicates: a unique key whose nullable column is NULL in most rows
  (`medium`; `low` when the table is empty), a link table of references only (`low` when empty), a
  lookup-then-insert the application makes (`check_then_insert`), a foreign key to non-unique columns: `medium`.
- Nothing unmeasured is ever more than `low`, and its check is never written live: only commented out, with why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from monitor.audit.candidates import Candidate, Kind
from monitor.audit.measure import BURST_SECONDS, FLAG_VALUES, Measurement, Unmeasured

Severity = Literal["high", "medium", "low"]
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
ONE_TO_ONE_SHARE = 0.99  # one_to_one_suspect: at least this share of values occur once ...
ONE_TO_ONE_MIN_VALUES = 20  # ... among at least this many distinct values
IDENTIFIER_SHARE = 0.95  # a non-unique index with no foreign key: at least this share of its values occur once
DESIGN_SHARE = 0.5  # a natural key whose values occur once less often than this repeats by design
STATUS_ONCE_SHARE = 0.9  # key_with_status: in the chosen status, at least this share of keys occur once
RACE_SHARE = 0.5  # the share of groups with the race signature that makes duplicates a race
NULL_RISK_SHARE = 0.5  # a nullable unique column NULL in at least this share of rows protects (almost) nothing
DATABASE_NAME = "app"  # the [databases] entry a written config uses
CHECK_NAME_LENGTH = 40  # names are typed to confirm a fix
REFERENCE_KEYS = ("one_to_one_suspect",)  # kinds whose key is a parent alone, no descriptive column
STRUCTURAL = ("check_then_insert", "unique_with_nullable_columns", "foreign_key_to_non_unique")
Verdict = Literal["race", "alike", "differ", "design"]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    table: str  # schema.table
    columns: list[str]
    severity: Severity
    duplicate_groups: int | None
    excess_rows: int | None
    estimated: bool
    evidence: str
    check: dict[str, Any] | None  # the live [[checks]] entry, only when the evidence justifies its fix
    calls: int | None = None
    draft: dict[str, Any] | None = None  # the entry written commented out, when `check` is None ...
    draft_reason: str | None = None  # ... and why

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "table": self.table, "columns": self.columns, "severity": self.severity,
                "duplicate_groups": self.duplicate_groups, "excess_rows": self.excess_rows,
                "estimated": self.estimated, "evidence": self.evidence, "check": self.check}

    @property
    def has_duplicates(self) -> bool:
        return bool(self.duplicate_groups)

    def sort_key(self) -> tuple[int, int, int, str, str]:
        """Worst first: severity, then excess rows, then lookup calls."""
        return (SEVERITY_RANK[self.severity], -(self.excess_rows or 0), -(self.calls or 0), self.table, self.kind)


def decide(candidate: Candidate, measured: Measurement | Unmeasured | None) -> Finding | None:
    """The finding a candidate becomes, or None when the evidence clears it."""
    if isinstance(measured, Measurement):
        judged = _judge(candidate, measured)
        if judged is None:
            return None
        severity, draft_reason = judged
    else:
        severity = "high" if candidate.kind == "invalid_unique_index" else "low"
        again = "with a larger --budget" if measured is None or measured.timed else "once it can read the table"
        draft_reason = "not measured: no evidence yet that its fix would be right; run `dupewatch audit` " \
            f"{again}" if candidate.columns else None
    groups = measured.groups if isinstance(measured, Measurement) else None
    excess = measured.excess_rows if isinstance(measured, Measurement) else None
    if isinstance(measured, Measurement) and copies_only(candidate, measured):
        groups, excess = measured.copy_groups, measured.copy_excess
    estimated = isinstance(measured, Measurement) and measured.estimated
    entry = _check_entry(candidate, measured)
    live = entry if draft_reason is None else None
    draft = entry if draft_reason is not None else None
    evidence = _evidence(candidate, measured)
    if draft is not None:
        evidence += f"; check written commented out ({draft_reason})"
    return Finding(candidate.kind, candidate.table.qualified, list(candidate.columns), severity, groups, excess,
                   estimated, evidence, live, candidate.calls, draft, draft_reason if draft else None)


def fold_covered(findings: list[Finding]) -> list[Finding]:
    """The findings, less those whose copies a `unique_with_nullable_columns` finding of the same table already
    reports and watches. A candidate counted beside another unique key (`Candidate.agree_on`) groups only rows alike
    in that key's columns, which the key lets in only through a NULL: when the nullable key's finding has a live
    check (keyed by its columns, NULLs together) at least as severe, the other finding's groups are among its own
    (Synapse's event_push_actions: one copy was three high findings, by the nullable key and two lookup indexes).
    Likewise a pair of parents' copies that one of the two parents alone, almost one row each, reports too."""
    # a check that leaves rows out (NULL in every column of the key: `skip_all_null`, or its `where`) watches only
    # some of the groups alike in its columns: a local account written twice, no provider and no external id
    watched = [f for f in findings if f.kind == "unique_with_nullable_columns" and f.check is not None
               and f.check.get("nulls", "equal") == "equal" and "where" not in f.check]

    def covered(finding: Finding) -> bool:
        entry = finding.check or finding.draft
        if finding.kind == "unique_with_nullable_columns" or entry is None or not finding.has_duplicates:
            return False
        key = set(entry["key"])
        # by the watching check's key, not the constraint's columns: the copies of a nullable key's design groups
        # are keyed by every compared column too (copies_only), and watch only groups alike in all of them
        return any(w.table == finding.table and set(w.check["key"] if w.check else w.columns) <= key
                   and w.has_duplicates
                   and SEVERITY_RANK[w.severity] <= SEVERITY_RANK[finding.severity] for w in watched)

    def within_a_parent_s(finding: Finding) -> bool:
        # a pair of parents' copies are a copy of one parent's row too: one finding, the parent's
        return finding.kind == "one_to_one_suspect" and len(finding.columns) > 1 and finding.has_duplicates \
            and any(o.kind == "one_to_one_suspect" and o.table == finding.table and len(o.columns) == 1
                    and set(o.columns) < set(finding.columns) and o.has_duplicates
                    and SEVERITY_RANK[o.severity] <= SEVERITY_RANK[finding.severity] for o in findings)

    return [f for f in findings if not covered(f) and not within_a_parent_s(f)]


def verdict(m: Measurement, compared: bool) -> Verdict:
    """What a candidate's duplicate groups look like (see the module docstring). Rows born apart count as alike
    only when there are columns to compare them on; with none (an event per order and type), they are the design."""
    burst = m.burst_share
    if burst is not None:
        if burst >= RACE_SHARE:
            return "race"
        return "alike" if compared and m.alike_share >= RACE_SHARE else "design"
    return "race" if m.alike_share >= RACE_SHARE else "differ"


def _judge(c: Candidate, m: Measurement) -> tuple[Severity, str | None] | None:
    """(severity, why its check is only drafted or None) for a measured candidate, or None: no finding."""
    if m.groups:
        if not _repeats_like_a_mistake(c, m):
            return None
        if c.kind == "identical_rows":
            # copies alike in every column, but a key-less table may log one event twice by design (a hit per
            # second): never high, and its check is only drafted
            return "medium", "a table without a key may repeat a row by design (an event logged twice): review " \
                "what a row means before enabling it"
        seen = verdict(m, bool(c.told_apart_by))
        if copies_only(c, m):
            # the key's groups are the design (a product's anonymous reviews), but some hold copies alike in every
            # compared column and born together (a guest's review posted twice): those, keyed by every column
            return "high", None
        if seen == "race" and (c.kind in REFERENCE_KEYS or identifier_parents(c)) and c.told_apart_by \
                and m.alike_share < RACE_SHARE:
            # a key that is a parent alone, or an identifier measured per parent, whose rows differ in what they
            # say: rows born together are as much a parent's children written in one request (a profile's two
            # links, an order's two lines of one product) as race copies
            differing = [x for x in c.told_apart_by if x not in identifier_parents(c)]  # its groups share those
            return "medium", f"rows of its groups were born together but differ in {', '.join(differing)}, " \
                "as children written in one request do: review that they are copies"
        if seen == "race" and request_children(c, m):
            # a status key per its other parent (an order's lines per product and status): that parent's rows are
            # written together by design (one request writes an order's lines), so rows born together tell nothing
            return "medium", f"rows of its groups were born together, but so were the other rows of most " \
                f"{', '.join(m.together_parents)} (children one request writes): review that they are copies"
        if seen == "differ" and c.identifier:
            return None  # an index alone is a weak suspicion: only copies (alike, or born together) make a finding
        if seen in ("race", "alike"):
            severity: Severity = "high" if seen == "race" else "medium"
            if max(m.burst_share or 0.0, m.alike_share) < 1.0:
                # most groups are copies, some may be the design (two accounts sharing an email, imported apart):
                # a fix would merge those too
                return severity, "some of its groups differ and were born apart, like the design: review them " \
                    "before enabling it"
            if c.told_apart_by and m.alike_share < 1.0:
                # born together, but rows of some groups differ in what they say: race copies one of which was
                # updated since, or a parent's children written in one request (an order's two lines of one
                # product), which a fix would merge
                return severity, "rows of some groups were born together but differ in " \
                    f"{', '.join(c.told_apart_by)}, as children written in one request do: review that they are " \
                    "copies before enabling it"
            if c.uncompared:
                # alike in every compared column, but a JSON document or a float is not compared: rows differing
                # only there (an audit log's two entries of one object, each its own diff) would be merged
                return severity, f"{', '.join(c.uncompared)} not compared: review that rows alike in every other " \
                    "column are copies before enabling it"
            return severity, None
        if seen == "design":
            risk = _structural(c, replace(m, groups=0)) if c.kind in STRUCTURAL else None
            # a watch would report these groups at once, and a fix would merge rows that look like the design
            return None if risk is None else (risk[0], "its groups differ and were born apart, like the "
                                                       "design: review them before enabling it")
        reason = f"rows of its groups differ in {', '.join(c.told_apart_by)}: review that they are copies" \
            if c.told_apart_by else None
        return "medium", reason
    return _structural(c, m)


def copies_only(c: Candidate, m: Measurement) -> bool:
    """A nullable unique key whose groups differ and were born apart (the design: reviews with no user) but hold
    copies born together: the finding is those copies, and its check keys them by every compared column too, so its
    fix merges only rows alike in all of them. Only when that check would merge nothing else: every group alike in
    the compared columns was born together (rows alike but born apart, anonymous votes of +1 days apart, show the
    columns repeat by design, and the check would merge them too), the rows were not all written at once (the
    measurement found no copies then), and no column is left out of the comparison (a float, a JSON document: rows
    differing there would be merged)."""
    return c.kind == "unique_with_nullable_columns" and bool(m.copy_groups) and m.copy_apart == 0 \
        and not c.uncompared and verdict(m, bool(c.compared)) == "design"


def request_children(c: Candidate, m: Measurement) -> bool:
    """A status key measured per its other required parents, or a pair of required parents, one of whose parents'
    rows (of several values of its other column) were mostly written within BURST_SECONDS: a request writes them
    together (an order's lines), and bursts tell no race."""
    return bool(c.sibling_sides) and m.parents_together is not None \
        and m.parents_several > 0 and m.parents_together / m.parents_several >= RACE_SHARE


def _repeats_like_a_mistake(c: Candidate, m: Measurement) -> bool:
    if c.kind == "non_unique_natural_key" and m.once_share < DESIGN_SHARE:
        return False  # most values repeat: orders per customer and status
    # measured per parent, its own values must still be many: an index over a flag is no identifier
    values = m.distinct_keys if m.values is None else min(m.distinct_keys, m.values)
    if c.identifier and not (values >= ONE_TO_ONE_MIN_VALUES and m.identifier_once_share >= IDENTIFIER_SHARE):
        return False
    # copies alike in every compared column are copies whatever the key's other column holds: an order's billing
    # address written twice, (order_id, address_type) taking two values, is no parent's children split in two
    # (one parent only: a key over two parents and a constant, Tryton's tree state per user and model, is a pair)
    flag = m.described_values is not None and m.described_values <= FLAG_VALUES and m.alike_share < RACE_SHARE \
        and len(c.columns) - len(c.described) == 1
    one_parent = c.kind == "one_to_one_suspect" or flag
    if one_parent and not (m.distinct_keys >= ONE_TO_ONE_MIN_VALUES and m.once_share >= ONE_TO_ONE_SHARE):
        # a parent alone, or a parent and a flag (a user's identities, deleted or not: its children split in two):
        # only almost one row per key makes its repeats a mistake
        return False
    if c.kind == "key_with_status" and m.once_share < STATUS_ONCE_SHARE:
        return False
    # rows pointing at different parents through another required foreign key are different relationships
    return not c.other_parents or m.same_parent_share >= RACE_SHARE


def _structural(c: Candidate, m: Measurement) -> tuple[Severity, str | None] | None:
    """The risks that stand without duplicates."""
    if c.kind == "invalid_unique_index":
        return "high", None
    if c.kind in ("check_then_insert", "foreign_key_to_non_unique"):
        return "medium", None
    if c.kind == "link_table_without_unique" and c.pure:
        return ("medium" if m.table_rows else "low"), None  # empty: nothing writes its links yet
    if c.kind == "unique_with_nullable_columns" and not c.table.other_unique_keys(c.columns):
        if not m.table_rows:
            return "low", None
        if m.row_share >= NULL_RISK_SHARE:
            return "medium", None
    return None


def _evidence(candidate: Candidate, measured: Measurement | Unmeasured | None) -> str:
    parts = [candidate.reason]
    if identifier_parents(candidate):
        parts.append(f"keyed per {', '.join(identifier_parents(candidate))} (its required parents): nothing shows "
                     f"{', '.join(candidate.columns)} is unique across them")
    elif candidate.keyed_parents:
        parts.append(f"keyed per {', '.join(candidate.keyed_parents)} (its required parents): rows of different "
                     "parents are different relationships")
    if isinstance(measured, Measurement):
        parts.append(_figures(candidate, measured))
    elif isinstance(measured, Unmeasured):
        parts.append(measured.reason)
    if candidate.rebuild:
        parts.append(f"rebuild: {candidate.rebuild}")
    return "; ".join(p for p in parts if p)


def _figures(candidate: Candidate, m: Measurement) -> str:
    where = f" (estimated from a {m.sample_percent:.2g}% sample)" if m.estimated and m.sample_percent else ""
    texts = []
    if candidate.kind == "unique_with_nullable_columns":
        texts.append(f"table empty{where}" if not m.table_rows else
                     f"{m.row_share:.0%} of {m.table_rows:,} rows have a NULL in the key, which it does not protect")
    if m.status_value is not None and candidate.status is not None:
        texts.append(f"where {candidate.status} = {m.status_value!r}: {m.once_share:.1%} of {m.distinct_keys:,} "
                     f"keys occur once")
    if candidate.agree_on:
        texts.append(f"rows that differ in {', '.join(candidate.agree_on)} (another unique key) are distinct "
                     "entities by declaration: only rows alike in it are counted, and the check's key includes it")
    if not m.groups:
        texts.append(f"no duplicates{where}")
        return "; ".join(texts)
    prefix = "rows differing only by NULLs: " if candidate.kind == "unique_with_nullable_columns" else ""
    texts.append(f"{prefix}{m.groups:,} duplicate group(s), {m.excess_rows:,} excess row(s), "
                 f"largest {m.largest}{where}")
    if candidate.kind == "one_to_one_suspect":
        texts.append(f"{m.once_share:.1%} of {m.distinct_keys:,} values occur once")
    if candidate.told_apart_by:
        unseen = f" ({', '.join(candidate.uncompared)} not compared)" if candidate.uncompared else ""
        texts.append(f"{m.alike_groups:,} of them alike in every other column{unseen}")
    if m.burst_groups is not None:
        texts.append(f"{m.burst_groups:,} of {m.timed_groups:,} written within {BURST_SECONDS:g}s "
                     f"(by {candidate.table.birth_column})")
    if request_children(candidate, m):
        [own] = [own for parents, own in candidate.sibling_sides if parents == m.together_parents]
        texts.append(f"{m.parents_together:,} of {m.parents_several:,} {', '.join(m.together_parents)} with "
                     f"rows of several {own} had all of them written within {BURST_SECONDS:g}s")
    if copies_only(candidate, m):
        texts.append(f"among them, {m.copy_groups:,} group(s) of copies ({m.copy_excess:,} excess row(s)) alike in "
                     f"every other column and written within {BURST_SECONDS:g}s: the check keys them by every "
                     "compared column too")
    elif m.copy_groups and candidate.kind == "unique_with_nullable_columns":
        why = f"{m.copy_apart:,} other group(s) alike in them were born apart or undated, so their values repeat " \
            "by design" if m.copy_apart else f"{', '.join(candidate.uncompared)} left out of the comparison" \
            if candidate.uncompared else "its groups were not shown born apart"
        texts.append(f"among them, {m.copy_groups:,} group(s) alike in every compared column and written within "
                     f"{BURST_SECONDS:g}s, not shown to be copies ({why})")
    elif candidate.table.birth_column is None:
        texts.append("no creation timestamp to date them")
    return "; ".join(texts)


def _check_entry(candidate: Candidate, measured: Measurement | Unmeasured | None) -> dict[str, Any] | None:
    if not candidate.columns or candidate.kind == "no_primary_key":
        return None
    table = candidate.table
    key = [c for c in candidate.columns if c != candidate.status]
    key += [c for c in candidate.agree_on if c not in key]
    key += [c for c in candidate.keyed_parents if c not in key]
    if isinstance(measured, Measurement) and copies_only(candidate, measured):
        key += [c for c in candidate.compared if c not in key]
    entry: dict[str, Any] = {
        "name": check_name(table.name, tuple(key)),
        "database": DATABASE_NAME,
        "description": f"{candidate.kind}: {candidate.reason}",
        "table": config_table_name(table.schema, table.name),
        "key": key,
    }
    if candidate.status is not None:
        if not isinstance(measured, Measurement) or measured.status_where is None:
            return None
        entry["where"] = measured.status_where
    if candidate.row_filter == "rows_with_null" and candidate.all_null_possible:
        # measured without the rows NULL in every key column (`nulls = "equal"` would group them all: a UNIQUE
        # (provider, external_id)'s local accounts, one group whose fix merges them)
        # keyed by more columns (another unique key's, or the compared columns of copies_only), a row NULL in every
        # column of the constraint is not NULL in every column of the check's key: its `where` leaves it out
        if not candidate.agree_on and not (isinstance(measured, Measurement) and copies_only(candidate, measured)):
            entry["nulls"] = "skip_all_null"
        elif not isinstance(measured, Measurement) or measured.status_where is None:
            return None
        else:
            entry["where"] = measured.status_where
    if candidate.row_filter in ("not_null", "given") and candidate.nulls_beside:
        # measured with the other key's NULLs grouped together: `nulls = "distinct"` would drop every such group
        if not isinstance(measured, Measurement) or measured.status_where is None:
            return None
        entry["where"] = measured.status_where  # its own columns: not NULL (nor left at their defaults)
    elif candidate.row_filter in ("not_null", "given"):
        entry["nulls"] = "distinct"
        if candidate.row_filter == "given" and isinstance(measured, Measurement) and measured.status_where:
            entry["where"] = measured.status_where  # rows left at the column's default are no identifier
    if table.birth_column:
        entry["timestamp"] = table.birth_column
    return entry


def identifier_parents(candidate: Candidate) -> list[str]:
    """An index with no foreign key in a table with required parents (a saved search's query, and its user):
    the copies measured share their parents, but nothing shows the value is unique across parents (two users
    saving the same query), so the check keys it per parent and its fix never merges two parents' rows."""
    return candidate.other_parents if candidate.identifier else []


def check_name(table: str, columns: tuple[str, ...]) -> str:
    """`table-col-col`, or the table's name alone when that runs past CHECK_NAME_LENGTH (names are typed)."""
    def clean(raw: str) -> str:
        return re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-")

    full = clean("-".join([table, *columns]))
    if len(full) <= CHECK_NAME_LENGTH:
        return full or "check"
    return clean(table)[:CHECK_NAME_LENGTH].strip("-") or "check"


def config_table_name(schema: str, name: str) -> str:
    """`schema.table` as the config's `table` reads it, quoting a part that holds a dot or a quote."""
    def part(text: str) -> str:
        return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in '."`') else text
    return f"{part(schema)}.{part(name)}"
