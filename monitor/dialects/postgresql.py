"""PostgreSQL (psycopg 3): what is true of PostgreSQL for dupewatch.

Read-only detection sessions (PostgreSQL docs, "Client Connection Defaults" and "Extended Query"):
- `default_transaction_read_only` and `statement_timeout` are set in the connection's startup options, so they
  are the session's *reset* values: `DISCARD ALL` (run whenever a detection connection returns to the pool,
  which also releases advisory locks) puts them back, whatever a query did with `set_config()`.
- every statement goes through the extended query protocol (psycopg `prepare=True`), which carries exactly one
  statement: `SELECT 1) x; COMMIT; BEGIN READ WRITE; DELETE ...` is refused by the server's parser instead of
  running as five statements of the simple protocol.
- connects time out (`connect_timeout`) and idle TCP connections are probed (`keepalives*`, libpq parameters).
- a statement is cancelled with libpq's cancel request (`cancel_safe`, bounded); a frozen server, which
  answers neither, has the connection's socket shut instead.

A PostgreSQL-protocol database (CockroachDB, YugabyteDB) would subclass `PostgreSQL` and override what differs
(row identity: no ctid; advisory locks; `NULLS NOT DISTINCT`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import (
    CATALOG_CHANGED,
    DELETED,
    FOREIGN_WRITTEN,
    INSERTED,
    TRUNCATED,
    UPDATED,
    ChangeCounts,
    CheckConstraint,
    ColumnDomain,
    Comparison,
    Dialect,
    NamedLock,
    Refusal,
    UniqueViolation,
)
from monitor.dialects.expressions import CatalogEquality, ServerText
from monitor.dialects.postgresql_polling import TRACK_COUNTS, Composite, PostgreSQLPolling, spelled_apart

if TYPE_CHECKING:
    from monitor.live.changes import ChangeStream

# Which functions a statement calls is PostgreSQL's answer, not ours: the plan tree the server builds for it
# (`debug_print_plan`, sent to this session only for the one EXPLAIN, `client_min_messages = log`) holds the OID of
# every function it calls, wherever the call is (select list, WHERE, JOIN, LIMIT, VALUES, window frames,
# sub-selects, CTEs, views and row-level security policies expanded), whatever its spelling (`U&"..."`, quoted
# names, search_path). EXPLAIN without ANALYZE runs none of them (the planner only folds IMMUTABLE calls on
# constants and estimates with STABLE ones). `pg_proc.provolatile` then decides. Domains' CHECK constraints, which
# the tree does not hold, are read first (`refused_domain`).
_FUNCTION_FIELDS = frozenset({":funcid", ":opfuncid", ":aggfnoid", ":winfnoid", ":hashfuncid", ":negfuncid",
                              ":tsmhandler"})
# An operator runs its pg_operator.oprcode, and sorting, grouping and hashing by it (`:sortop`, `:eqop` of an ORDER
# BY, GROUP BY or DISTINCT in a parse tree; `:sortOperators`, `:grpOperators`, `:hashoperators` in a plan) run the
# support functions of its btree and hash operator families (`_CALLED`).
_OPERATOR_FIELD = re.compile(r":(?:opnos?|sortop|eqop|\w*[Oo]perators)")
# outfuncs.c backslash-escapes whitespace, parentheses, braces and backslashes inside names, so an alias can
# neither split a token nor forge a field; a line break of the dump (after any space) stays inside an escape.
_PLAN_TOKEN = re.compile(r"(?:\\.|[^\s(){}\\])+|[(){}]", re.S)
# The type of each value a tree holds (a column's, a constant's, a result's): comparing or hashing a value of a range,
# an array or a row type runs its inner types' comparison and hash functions, which no field of the tree names.
_TYPE_FIELDS = frozenset({":vartype", ":consttype", ":paramtype", ":funcresulttype", ":opresulttype", ":resulttype",
                          ":aggtype", ":wintype", ":element_typeid", ":array_typeid", ":row_typeid", ":minmaxtype",
                          ":coalescetype", ":casetype"})
_OID_TOKENS = re.compile(r"\d+|[()o]")  # a single OID, an array of them, or a list `(o 96 98)`
# The nodes of a stored expression whose value depends on the row it is evaluated for (or on a parameter).
_ROW_NODES = frozenset({"VAR", "PARAM", "COERCETODOMAINVALUE"})


def foldable(tree: str, unrun_functions: frozenset[int] = frozenset(),
             unrun_operators: frozenset[int] = frozenset()) -> str:
    """The parts of a stored expression tree (`pg_node_tree` text) the planner can fold on constants: each largest
    node holding no column, parameter or domain value (`_ROW_NODES`) and no call of `unrun_functions` or
    `unrun_operators` (what `eval_const_expressions` does not run: `_UNFOLDED`), as tokens of the same dump. The
    planner reads a table's index, statistics and partition key expressions and its partitions' CHECK constraints
    and folds them, running an IMMUTABLE call whose arguments are constants (`f()`, `f(1)`); a call over a column,
    or of a VOLATILE or STABLE function, it does not run there (it still folds that call's IMMUTABLE arguments on
    constants), and a statement that only reads the table never runs one."""
    tokens = _PLAN_TOKEN.findall(tree)
    # per open node: where it starts, whether the planner cannot fold it, and its finished children it can
    open_nodes: list[tuple[int, list[bool], list[tuple[int, int]]]] = []
    kept: list[tuple[int, int]] = []
    for i, token in enumerate(tokens):
        if token == "{":
            name = tokens[i + 1] if i + 1 < len(tokens) else ""
            open_nodes.append((i, [name in _ROW_NODES], []))
        elif token == "}" and open_nodes:
            start, unfolded, constant = open_nodes.pop()
            if open_nodes:
                parent = open_nodes[-1]
                if unfolded[0]:
                    parent[1][0] = True
                    parent[2].extend(constant)  # its parent is not folded either: keep its foldable parts
                else:
                    parent[2].append((start, i + 1))
            else:
                kept.extend(constant if unfolded[0] else [(start, i + 1)])
        elif open_nodes and (token in _FUNCTION_FIELDS or _OPERATOR_FIELD.fullmatch(token)):
            unrun = unrun_functions if token in _FUNCTION_FIELDS else unrun_operators
            for value in tokens[i + 1:]:
                if not _OID_TOKENS.fullmatch(value):
                    break
                if value.isdigit() and int(value) in unrun:
                    open_nodes[-1][1][0] = True
    return "\n".join(" ".join(tokens[a:b]) for a, b in kept)

# The temporary files a detection session's statement may write, in all (`temp_file_limit`): a short statement can
# spill without end (a recursive CTE of no bound repeating a 6 KB row wrote 1.7 GB of temporary files in 5 s on
# PostgreSQL 15), bounded otherwise only by its statement_timeout, up to 24 days. Past it the server stops the
# statement ("temporary file size exceeds temp_file_limit"). Only a superuser, or (PostgreSQL 15+) a role granted
# SET on it, may set it: for another role the server's own setting stays (`_bound_temp_files`).
TEMP_FILE_LIMIT_KB = 8 * 1024 * 1024
_KEEPALIVE_WINDOW_MS = (30 + 10 * 3) * 1000  # keepalives_idle + keepalives_interval x keepalives_count (`connect_args`)
PLAN_STATISTICS_TARGET = 10  # of the fix's plan table: ANALYZE samples 300 times this many rows

# VOLATILE functions of pg_catalog that change nothing: random values, clocks, and sleeps (which the statement
# timeout bounds). Every other VOLATILE function is refused: nextval, setval, pg_terminate_backend, advisory locks,
# set_config, lo_*, dblink, query_to_xml (runs SQL given as text), pg_notify, file functions...
HARMLESS_VOLATILE = ("random", "clock_timestamp", "timeofday", "gen_random_uuid", "pg_sleep", "pg_sleep_for",
                     "pg_sleep_until", "pg_is_in_recovery", "bernoulli", "system")  # the last two: TABLESAMPLE
# STABLE by declaration, but not harmless: each gives the check's transaction a permanent transaction ID.
_REFUSED_STABLE = ("txid_current", "pg_current_xact_id")
# STABLE by declaration, but each runs a query of its own, which the statement's plan does not hold and so no
# vetting sees: `table_to_xml('a_view', ...)` reads the view, whatever VOLATILE function the view calls, and
# `schema_to_xml` and `database_to_xml` read every table and view of a schema or database. (query_to_xml and
# cursor_to_xml are VOLATILE, refused as such.)
RUNS_A_QUERY = ("table_to_xml", "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xml_and_xmlschema",
                "database_to_xml", "database_to_xml_and_xmlschema")
# The same in extensions (whatever schema they are installed in: C functions, as `library:C name`): tablefunc's
# crosstab and connectby are STABLE and run the SQL text they are given, xml2's xpath_table one it builds from its
# arguments.
_EXTENSION_QUERIES = ("tablefunc:crosstab", "tablefunc:crosstab_hash", "tablefunc:connectby_text",
                      "tablefunc:connectby_text_serial", "pgxml:xpath_table")
# IMMUTABLE, but the size of their result is set by an argument (a count or a width), not by their input:
# `repeat('a', 400000000)` is 400 MB from a short statement, and a matcher given such strings (LIKE, position)
# runs without looking for a cancel, past statement_timeout and past the cancel of dupewatch's deadline
# (measured on PostgreSQL 15 under a 1 s statement_timeout: a LIKE over `repeat('a', 400000)` ran 17 s, position()
# of a 20,001-character needle in `repeat('a', 2000000)` 15 s).
# format() takes its width from the format string or an argument (`format('%*s', n, 'x')`).
SIZED_BY_ARGUMENT = ("repeat", "lpad", "rpad", "array_fill", "format")
# The same for a type's length (typmod), which these length coercions pad the value to: `bit(n)` with zeros,
# `char(n)` with spaces, up to 83,886,080 bits and 10,485,760 characters (`CAST(x AS char(n))`, `B'0'::bit(n)`).
PADDED_TO_TYPMOD = ('"bit"(bit,integer,boolean)', "bpchar(character,integer,boolean)")

# The settings bounding what a statement may take (PostgreSQL's "Resource Usage" group, the ones a session may set),
# which a function's own `SET` would lift while it runs; and every `*_timeout`. Named here rather than read from
# pg_settings.category, which is translated into the server's lc_messages.
RESOURCE_SETTINGS = ("work_mem", "maintenance_work_mem", "logical_decoding_work_mem", "hash_mem_multiplier",
                     "temp_buffers", "temp_file_limit", "max_stack_depth", "max_parallel_workers_per_gather",
                     "max_parallel_maintenance_workers", "effective_io_concurrency", "maintenance_io_concurrency",
                     "vacuum_cost_delay", "vacuum_cost_limit")

_CALLED = sa.text("""
WITH RECURSIVE reached(t) AS (  -- the statement's types, and the types their values hold
    SELECT unnest(CAST(:types AS oid[]))
    UNION
    SELECT inner_type FROM reached r JOIN pg_catalog.pg_type y ON y.oid = r.t,
        LATERAL (SELECT y.typbasetype WHERE y.typtype = 'd'
                 UNION ALL SELECT y.typelem WHERE y.typelem <> 0
                 UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid = y.typrelid AND y.typrelid <> 0 AND a.attnum > 0 AND NOT a.attisdropped
                 UNION ALL SELECT g.rngsubtype FROM pg_catalog.pg_range g WHERE g.rngtypid = y.oid
                 UNION ALL SELECT g.rngtypid FROM pg_catalog.pg_range g WHERE g.rngmultitypid = y.oid) AS i(inner_type)
), families(family) AS (
    -- sorting, grouping and hashing by an operator run its btree and hash families' support functions (a
    -- comparison, a hash), not its oprcode
    SELECT o.amopfamily FROM pg_catalog.pg_amop o WHERE o.amopopr = ANY (CAST(:operators AS oid[]))
    -- comparing or hashing a value of a range, an array or a row runs its inner types' default comparison and
    -- hash (a range: those of its subtype's operator class, which may be no default one)
    UNION SELECT c.opcfamily FROM pg_catalog.pg_opclass c JOIN reached r ON c.opcintype = r.t WHERE c.opcdefault
    UNION SELECT c.opcfamily FROM pg_catalog.pg_range g JOIN reached r ON g.rngtypid = r.t
                 JOIN pg_catalog.pg_opclass c ON c.oid = g.rngsubopc
), called(fn) AS (
    SELECT unnest(CAST(:functions AS oid[]))
    UNION SELECT oprcode::oid FROM pg_operator WHERE oid = ANY (CAST(:operators AS oid[]))
    UNION SELECT pr.amproc::oid FROM families s JOIN pg_catalog.pg_amproc pr ON pr.amprocfamily = s.family
          JOIN pg_catalog.pg_opfamily f ON f.oid = s.family
          WHERE f.opfmethod IN (SELECT a.oid FROM pg_catalog.pg_am a WHERE a.amname IN ('btree', 'hash'))
    UNION SELECT part FROM pg_catalog.pg_range g JOIN reached r ON g.rngtypid = r.t,
          LATERAL (VALUES (g.rngsubdiff::oid), (g.rngcanonical::oid)) AS parts(part) WHERE part <> 0
), support(fn) AS (  -- an aggregate runs its transition, final, combine and (de)serial functions
    SELECT fn FROM called
    UNION SELECT part FROM pg_aggregate a JOIN called c ON a.aggfnoid = c.fn,
        LATERAL (VALUES (a.aggtransfn::oid), (a.aggfinalfn::oid), (a.aggcombinefn::oid), (a.aggserialfn::oid),
                        (a.aggdeserialfn::oid), (a.aggmtransfn::oid), (a.aggminvtransfn::oid),
                        (a.aggmfinalfn::oid)) AS parts(part)
    WHERE part <> 0
    -- the JSON builders (to_json, row_to_json, json_agg, json_build_object...) run a type's cast to json or jsonb
    -- for every value of a type of the database's own (a composite, an enum), a call no plan tree holds
    UNION SELECT k.castfunc::oid FROM pg_catalog.pg_cast k
    WHERE k.casttarget IN ('pg_catalog.json'::regtype, 'pg_catalog.jsonb'::regtype) AND k.castfunc <> 0
      AND EXISTS (SELECT FROM called c JOIN pg_catalog.pg_proc b ON b.oid = c.fn
                  WHERE b.pronamespace = 'pg_catalog'::regnamespace AND b.proname ~ 'json')
)
SELECT p.oid::regprocedure::text AS signature, p.provolatile AS volatility,
       -- built in (an OID below 16384, FirstNormalObjectId): a superuser may add a `random(integer)` to pg_catalog
       p.oid < 16384 AND n.nspname = 'pg_catalog' AND p.proname = ANY (CAST(:harmless AS text[])) AS harmless,
       n.nspname = 'pg_catalog' AND p.proname = ANY (CAST(:refused AS text[])) AS refused,
       n.nspname = 'pg_catalog' AND p.proname = ANY (CAST(:queries AS text[]))
       OR l.lanname = 'c' AND regexp_replace(p.probin, '^.*/', '') || ':' || p.prosrc
                              = ANY (CAST(:extension_queries AS text[])) AS queries,
       n.nspname = 'pg_catalog' AND (p.proname = ANY (CAST(:sized AS text[]))
                                     OR p.oid = ANY (CAST(:padded AS pg_catalog.regprocedure[]))) AS sized,
       p.oid, l.lanname AS language,
       -- whose word its volatility is: the server's, or an extension's compiled code's ('declared'); else how its
       -- body can be read (an extension's owner may add any function to it: ALTER EXTENSION ... ADD FUNCTION)
       CASE WHEN p.oid < 16384 OR p.prokind = 'a'
                 OR l.lanname IN ('c', 'internal')
                    AND EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                                AND d.objid = p.oid AND d.deptype = 'e') THEN 'declared'
            WHEN l.lanname = 'sql' AND pg_catalog.to_jsonb(p) ->> 'prosqlbody' IS NOT NULL THEN 'tree'
            WHEN l.lanname = 'sql' THEN 'text'
            ELSE 'opaque' END AS body,
       pg_catalog.to_jsonb(p) ->> 'prosqlbody' AS tree,
       -- the expressions of its default arguments, as the server stored them: the planner adds them to a call that
       -- leaves them out, after parsing (so the parse tree vetted first does not hold them), and folds an IMMUTABLE
       -- one on constants, running it inside the vetting EXPLAIN itself
       p.proargdefaults::text AS defaults,
       -- the bounds it changes while it runs (`CREATE FUNCTION ... SET work_mem = '2GB'`): memory, temporary
       -- files, parallel workers, timeouts (`RESOURCE_SETTINGS`); others (timezone, search_path) bound nothing
       (SELECT min(c) FROM unnest(p.proconfig) AS c
        WHERE lower(split_part(c, '=', 1)) = ANY (CAST(:resources AS text[]))
           OR lower(split_part(c, '=', 1)) LIKE '%\\_timeout') AS sets
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
-- an index lookup each: a join read all of pg_proc, estimated past jit_above_cost (JIT took 90 ms of a 7 ms read)
WHERE p.oid = ANY (ARRAY(SELECT fn FROM support))
ORDER BY p.oid
""")


def _oid_array(oids: set[int]) -> str:
    return "{" + ",".join(str(oid) for oid in sorted(oids)) + "}"


class Calls:
    """What a plan tree (or a stored expression, `pg_node_tree`) calls: function and operator OIDs, and whether it
    locks rows (a LockRows node: FOR UPDATE / FOR SHARE)."""

    def __init__(self) -> None:
        self.functions: set[int] = set()
        self.operators: set[int] = set()
        self.types: set[int] = set()
        self.relations: set[int] = set()  # the tables and views it reads (`:relid` of its range table)
        self.domains: set[int] = set()  # the domains it coerces values to (CoerceToDomain: runs their CHECKs)
        self.locks = False
        # a recursive UNION (not ALL) keeps every row it made in a hash table that neither work_mem nor
        # temp_file_limit bounds (PostgreSQL 15: 834 MB in 6 s, work_mem 4 MB): in a plan a RecursiveUnion of
        # `:numCols` > 0, in a parse tree (a function's body) a recursive CTE whose query is a UNION not ALL
        self.unbounded_hash = False

    def read(self, tree: str) -> None:
        tokens = _PLAN_TOKEN.findall(tree)
        nodes: list[str] = []  # the nodes the token is inside, innermost last
        unions: list[bool] = []  # for each of them: a CTE whose query is a UNION not ALL
        for i, token in enumerate(tokens):
            if token == "{":
                nodes.append(tokens[i + 1] if i + 1 < len(tokens) else "")
                unions.append(False)
            elif token == "}" and nodes:
                nodes.pop()
                unions.pop()
            after = tokens[i + 1] if i + 1 < len(tokens) else ""
            if token == ":all" and after == "false" and nodes[-3:] == ["COMMONTABLEEXPR", "QUERY", "SETOPERATIONSTMT"]:
                unions[-3] = True
            if token == ":cterecursive" and after == "true" and nodes and nodes[-1] == "COMMONTABLEEXPR" and unions[-1]:
                self.unbounded_hash = True
            if token == "LOCKROWS" and i and tokens[i - 1] == "{":
                self.locks = True
            if token == ":numCols" and nodes and nodes[-1] == "RECURSIVEUNION" and i + 1 < len(tokens) \
                    and tokens[i + 1] != "0":
                self.unbounded_hash = True
            if token == ":resulttype" and nodes and nodes[-1] == "COERCETODOMAIN" and i + 1 < len(tokens) \
                    and tokens[i + 1].isdigit():
                self.domains.add(int(tokens[i + 1]))
            into = self.functions if token in _FUNCTION_FIELDS else self.operators \
                if _OPERATOR_FIELD.fullmatch(token) else self.types if token in _TYPE_FIELDS else \
                self.relations if token == ":relid" else None
            if into is None:
                continue
            for value in tokens[i + 1:]:
                if not _OID_TOKENS.fullmatch(value):
                    break
                if value.isdigit() and value != "0":
                    into.add(int(value))


# Every domain's CHECK constraints, as the expression trees PostgreSQL stored for them. PostgreSQL evaluates them
# not only where a plan coerces to the domain: parsing a literal of an array or row type holding the domain runs the
# domain's input function, and so its CHECK, while the statement is parsed (`'(1)'::a_row_type`), which is before,
# and inside, the EXPLAIN that vets it; JSON and record functions run them inside a call the plan only names
# (`jsonb_populate_record`).
_DOMAIN_CHECKS = sa.text("""
SELECT c.contypid::regtype::text AS domain, c.conbin::text AS tree FROM pg_catalog.pg_constraint c
WHERE c.contypid <> 0 AND c.contype = 'c' AND c.conbin IS NOT NULL ORDER BY c.contypid, c.oid
""")


# The expressions the server stored for the tables a statement reads, and for their partitions and inheritance
# children at every depth (all planned with them), that its planner reads and folds (`eval_const_expressions`, which
# runs an IMMUTABLE call on constants) while it plans a statement reading them, the vetting EXPLAIN included, where no
# tree of the statement holds them (verified on PostgreSQL 15): index expressions and partial index predicates
# (`RelationGetIndexExpressions`, `RelationGetIndexPredicate`), extended statistics' expressions (PostgreSQL 14+,
# read through the row's JSON: absent before), partition key expressions, and the CHECK constraints of the partitions
# and children (constraint exclusion, PostgreSQL docs "constraint_exclusion"; under `constraint_exclusion = on`
# those of the tables themselves too). Each with what it is, as the refusal names it.
_PLANNED_EXPRESSIONS = sa.text("""
WITH RECURSIVE below(rel, depth) AS (
    SELECT unnest(CAST(:relations AS oid[])), 0
    UNION SELECT i.inhrelid, 1 FROM below b JOIN pg_catalog.pg_inherits i ON i.inhparent = b.rel
), found(what, tree) AS (
    SELECT 'the CHECK constraint ' || pg_catalog.quote_ident(c.conname) || ' of table ' || c.conrelid::regclass::text,
           c.conbin::text
    FROM pg_catalog.pg_constraint c JOIN below b ON c.conrelid = b.rel
    WHERE c.contype = 'c' AND c.conbin IS NOT NULL
      AND (b.depth > 0 OR pg_catalog.current_setting('constraint_exclusion') = 'on')
    UNION SELECT 'index ' || x.indexrelid::regclass::text, e.tree
    FROM pg_catalog.pg_index x JOIN below b ON x.indrelid = b.rel,
         LATERAL (VALUES (x.indexprs::text), (x.indpred::text)) AS e(tree)
    UNION SELECT 'the statistics object ' || pg_catalog.quote_ident(s.stxname) || ' of table '
                 || s.stxrelid::regclass::text, pg_catalog.to_jsonb(s) ->> 'stxexprs'
    FROM pg_catalog.pg_statistic_ext s JOIN below b ON s.stxrelid = b.rel
    UNION SELECT 'the partition key of table ' || p.partrelid::regclass::text, p.partexprs::text
    FROM pg_catalog.pg_partitioned_table p JOIN below b ON p.partrelid = b.rel
)
SELECT what, tree FROM found WHERE tree IS NOT NULL ORDER BY what
""")


# The first foreign table among the tables a statement reads and their partitions and inheritance children at every
# depth (all planned with them), with its foreign-data wrapper's name and the table read it is a partition or child
# of (NULL when read itself): reading one runs the wrapper's own code.
_FOREIGN_TABLES = sa.text("""
WITH RECURSIVE below(rel, read) AS (
    SELECT r, r FROM unnest(CAST(:relations AS oid[])) AS r
    UNION SELECT i.inhrelid, b.read FROM below b JOIN pg_catalog.pg_inherits i ON i.inhparent = b.rel
)
SELECT f.ftrelid::regclass::text AS name, w.fdwname AS wrapper,
       CASE WHEN b.read <> b.rel THEN b.read::regclass::text END AS parent
FROM below b JOIN pg_catalog.pg_foreign_table f ON f.ftrelid = b.rel
JOIN pg_catalog.pg_foreign_server s ON s.oid = f.ftserver JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
ORDER BY 1, 3 LIMIT 1
""")


# Which of the functions and operators (by their pg_operator.oprcode) of a stored expression the planner's constant
# folding (`eval_const_expressions`) does not run on constants: those not IMMUTABLE. Not a function the planner may
# inline (LANGUAGE sql, PostgreSQL's `inline_function`, whatever its volatility), whose body's IMMUTABLE calls on
# constants it then folds: its call stays vetted whole.
_UNFOLDED = sa.text("""
SELECT 'f' AS kind, p.oid FROM pg_catalog.pg_proc p
WHERE p.oid = ANY (CAST(:functions AS oid[])) AND p.provolatile <> 'i'
  AND p.prolang <> (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')
UNION ALL
SELECT 'o', o.oid FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
WHERE o.oid = ANY (CAST(:operators AS oid[])) AND p.provolatile <> 'i'
  AND p.prolang <> (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')
""")


# The CHECK constraints a value coerced to each of these domains is held to: its own and those of the domains it is
# based on.
_COERCED_DOMAIN_CHECKS = sa.text("""
WITH RECURSIVE chain(t) AS (
    SELECT unnest(CAST(:domains AS oid[]))
    UNION SELECT y.typbasetype FROM chain JOIN pg_catalog.pg_type y ON y.oid = chain.t WHERE y.typtype = 'd'
)
SELECT c.conbin::text FROM pg_catalog.pg_constraint c JOIN chain ON c.contypid = chain.t
WHERE c.contype = 'c' AND c.conbin IS NOT NULL ORDER BY c.oid
""")


_CONFLICTS = {"40P01": "deadlock (SQLSTATE 40P01)", "40001": "serialization failure (SQLSTATE 40001)",
              "55P03": "lock not available (SQLSTATE 55P03)"}


# What this transaction changed, per table (its not yet flushed counts included, PostgreSQL docs "The Cumulative
# Statistics System": pg_stat_xact_all_tables), counted by the executor, so cascaded deletes, SET NULL updates and
# trigger writes are there even in rows row-level security hides from the role. A partition's rows count as its
# partitioned table's. `what`: 't' a table's rows; 'c' a system catalog's (a trigger's DDL, a TRUNCATE's new
# relfilenode in pg_class, `lo_unlink` in pg_largeobject_metadata: counted in no user table); TOAST tables are left
# out (a toasted value's chunks are written with their row, which is counted). What no count shows, read from this
# transaction's own locks in the same statement (verified on PostgreSQL 15): 'x' a table it holds ACCESS EXCLUSIVE on
# (TRUNCATE resets that table's counts of the transaction to what they were before it, `DROP`, `ALTER TABLE`,
# `LOCK TABLE`), 'f' a foreign table it holds ROW EXCLUSIVE or stronger on (an INSERT, UPDATE or DELETE through it:
# the rows are another server's, counted nowhere here). A lock taken before the account's first read counts in
# both reads, so only what the batch itself did differs.
_XACT_CHANGES = sa.text(r"""
    SELECT COALESCE(pg_catalog.pg_partition_root(s.relid), s.relid)::regclass::text AS counted,
           CASE WHEN s.schemaname IN ('pg_catalog', 'information_schema') THEN 'c' ELSE 't' END AS what,
           sum(s.n_tup_ins) AS inserted, sum(s.n_tup_upd) AS updated, sum(s.n_tup_del) AS deleted
    FROM pg_catalog.pg_stat_xact_all_tables s
    WHERE s.n_tup_ins + s.n_tup_upd + s.n_tup_del > 0 AND s.schemaname NOT LIKE 'pg\_toast%'
    GROUP BY 1, 2
    UNION ALL
    SELECT DISTINCT COALESCE(pg_catalog.pg_partition_root(c.oid), c.oid)::regclass::text,
           CASE c.relkind WHEN 'f' THEN 'f' ELSE 'x' END, 1, 0, 0
    FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
    WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
      AND (c.relkind IN ('r', 'p', 'm') AND l.mode = 'AccessExclusiveLock'
           OR c.relkind = 'f' AND l.mode NOT IN ('AccessShareLock', 'RowShareLock'))""")
_RELKIND = sa.text(
    "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = :name AND n.nspname = COALESCE(:schema, current_schema())")
# The first VOLATILE function the constraint `c` calls, directly or as an operator's, read from the expression tree
# the server stored (`conbin`, as `pg_node_tree` text: `:funcid N`, `:opfuncid N`, `:opno N`, whose operator runs
# its `oprcode`), not from pg_depend, which lists no built-in function (they are pinned): `nextval`, `setval`,
# `random`, `clock_timestamp` would pass unseen. A constant's value is dumped as bytes, so no literal forges a field.
_VOLATILE_CALLED = r"""(SELECT min(p.oid::pg_catalog.regprocedure::text) FROM pg_catalog.pg_proc p
            WHERE p.provolatile = 'v' AND p.oid IN (
                SELECT CASE WHEN m[1] = 'opno' THEN (SELECT o.oprcode::oid FROM pg_catalog.pg_operator o
                                                     WHERE o.oid = m[2]::oid)
                            ELSE m[2]::oid END
                FROM pg_catalog.regexp_matches(c.conbin::text, ':(funcid|opfuncid|opno) (\d+)', 'g') AS m))"""
# Whether the constraint is enforced: PostgreSQL 18's `NOT ENFORCED` CHECK constraints are not checked on any
# write; earlier servers have no `conenforced` (read through the row's JSON: absent there, every one is enforced).
_ENFORCED = "COALESCE((pg_catalog.to_jsonb(c) ->> 'conenforced')::boolean, true)"
# A table's enforced CHECK constraints (NOT VALID ones too: PostgreSQL enforces them on every row an UPDATE
# writes), each with its condition as the server deparses it, and the first VOLATILE function it calls.
_CHECK_CONSTRAINTS = sa.text(f"""
    SELECT c.conname, pg_catalog.pg_get_expr(c.conbin, c.conrelid) AS expression,
           {_VOLATILE_CALLED} AS volatile
    FROM pg_catalog.pg_constraint c
    WHERE c.conrelid = to_regclass(:t) AND c.contype = 'c' AND {_ENFORCED} ORDER BY c.conname""")
# Each domain-typed column's chain of types: its domain (depth 0), the domain that one is based on, ..., down to the
# first type that is no domain (the base, the type of VALUE); with each domain's NOT NULL and enforced CHECK
# constraints (NOT VALID ones too: a domain checks every value assigned to it), each condition as the server deparses
# it (VALUE standing for the value) and the first VOLATILE function it calls.
_DOMAIN_CONSTRAINTS = sa.text(f"""
    WITH RECURSIVE chain AS (
        SELECT a.attname, a.atttypid AS type, 0 AS depth FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'd'
        UNION ALL
        SELECT chain.attname, t.typbasetype, chain.depth + 1 FROM chain
        JOIN pg_catalog.pg_type t ON t.oid = chain.type WHERE t.typtype = 'd')
    SELECT chain.attname, t.typtype = 'd' AS is_domain, pg_catalog.format_type(t.oid, NULL) AS type,
           t.typnotnull, c.conname, pg_catalog.pg_get_expr(c.conbin, 0) AS expression, {_VOLATILE_CALLED} AS volatile
    FROM chain JOIN pg_catalog.pg_type t ON t.oid = chain.type
    LEFT JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid AND c.contype = 'c' AND {_ENFORCED}
    ORDER BY chain.attname, chain.depth, c.conname""")
# Each column's type as the server writes it in DDL (`format_type`: qualified and quoted as this session's
# search_path needs, with its modifiers), for the types reflection does not know (`citext`, PostGIS types).
_DECLARED_TYPES = sa.text(
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = :name AND n.nspname = COALESCE(:schema, current_schema()) AND a.attnum > 0"
    " AND NOT a.attisdropped")
# Each column `=` finds values stored apart equal in, where its reflected type may not say so: of the citext
# extension's type (or a domain over it, a domain over that, ...: reflection knows the type only where its schema
# is on the search_path; or an array of it, which the element type says: the array type is no member of the
# extension), with whether an unqualified `=` finds its operator (`pg_operator_is_visible`), whether it is an
# array, and the type's name, or under a nondeterministic collation, with that collation's version as its
# library reports it now. The one place that asks whether a column is citext (`_HIDDEN_EQUALITY` asks only where
# `=` is hidden).
_COMPARED_APART = sa.text("""
    WITH RECURSIVE base(attnum, typid, depth) AS (
        SELECT a.attnum, a.atttypid, 0 FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT b.attnum, t.typbasetype, b.depth + 1 FROM base b
        JOIN pg_catalog.pg_type t ON t.oid = b.typid WHERE t.typtype = 'd')
    SELECT a.attname,
           EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid
                   WHERE d.classid = 'pg_catalog.pg_type'::regclass
                     AND d.objid = CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0 THEN bt.typelem ELSE bt.oid END
                     AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
                     AND x.extname = 'citext'),
           EXISTS (SELECT FROM pg_catalog.pg_operator o WHERE o.oprname = '=' AND o.oprleft = bt.oid
                   AND o.oprright = bt.oid AND pg_catalog.pg_operator_is_visible(o.oid)),
           bt.typcategory = 'A',
           pg_catalog.format_type(bt.oid, NULL),
           NOT co.collisdeterministic,
           CASE WHEN NOT co.collisdeterministic THEN pg_catalog.pg_collation_actual_version(co.oid) END
    FROM pg_catalog.pg_attribute a
    JOIN LATERAL (SELECT b.typid FROM base b WHERE b.attnum = a.attnum ORDER BY b.depth DESC LIMIT 1) deepest
      ON true
    JOIN pg_catalog.pg_type bt ON bt.oid = deepest.typid
    LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
    WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped""")
# Columns whose type's `=` is not on this session's search_path: the equality operator of the type's default btree
# operator class (the one GROUP BY, PARTITION BY, DISTINCT and unique indexes use; a domain's is its base type's),
# schema-qualified, when `pg_operator_is_visible` says an unqualified `=` would not find it. `citext` installed in
# a schema outside the search_path is such a type: an unqualified `=` then finds `text = text` through citext's
# implicit cast to text, and compares case-sensitively where GROUP BY found 'A@x' and 'a@x' one group. (Whether the
# type is the citext extension's, which makes a group's identity its lower(), is `_COMPARED_APART`'s to say.)
_HIDDEN_EQUALITY = sa.text("""
    WITH RECURSIVE base(attname, atttypid, typid, depth) AS (
        SELECT a.attname, a.atttypid, a.atttypid, 0 FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT b.attname, b.atttypid, t.typbasetype, b.depth + 1 FROM base b
        JOIN pg_catalog.pg_type t ON t.oid = b.typid WHERE t.typtype = 'd')
    SELECT DISTINCT ON (b.attname) b.attname, tn.nspname AS type_schema, ct.typname,
           opn.nspname AS operator_schema, o.oprname
    FROM base b
    JOIN pg_catalog.pg_type ct ON ct.oid = b.atttypid JOIN pg_catalog.pg_namespace tn ON tn.oid = ct.typnamespace
    JOIN pg_catalog.pg_opclass oc ON oc.opcintype = b.typid AND oc.opcdefault
     AND oc.opcmethod = (SELECT oid FROM pg_catalog.pg_am WHERE amname = 'btree')
    JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = b.typid
     AND ao.amoprighttype = b.typid AND ao.amopstrategy = 3
    JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace
    WHERE NOT pg_catalog.pg_operator_is_visible(o.oid)
    ORDER BY b.attname, b.depth DESC""")
# Columns of a composite type (a domain over one is not: it has a base type SQLAlchemy reflects as a domain),
# named as the catalog does (`Composite`)
_COMPOSITE = sa.text("""
    SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL) AS spec
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'c'""")
_COUNTED_AS = sa.text("SELECT COALESCE(pg_catalog.pg_partition_root(to_regclass(:t)), to_regclass(:t))::regclass::text")
# Publications that would replicate a delete (update) of the table, and whether it has a replica identity:
# DEFAULT is the primary key, USING INDEX an index, NOTHING none (PostgreSQL docs, "ALTER TABLE ... REPLICA
# IDENTITY" and "Logical Replication: Publication").
_FIX_PRIVILEGES = sa.text("""
    SELECT has_any_column_privilege(to_regclass(:t), 'SELECT'), has_any_column_privilege(to_regclass(:t), 'UPDATE'),
           has_table_privilege(to_regclass(:t), 'DELETE')""")
# The policies of a table that apply to the session's role for one command only, where row-level security applies
# to it at all: not a superuser or BYPASSRLS, and not the table's owner, or the owner under FORCE ROW LEVEL SECURITY
# (docs, "Row Security Policies"); a policy applies to PUBLIC (role 0) or to a role the session has the privileges
# of. polcmd: '*' ALL, 'r' SELECT, 'a' INSERT, 'w' UPDATE, 'd' DELETE.
_COMMAND_POLICIES = sa.text("""
    SELECT p.polname, CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'w' THEN 'UPDATE' ELSE 'DELETE' END AS command,
           p.polpermissive AS permissive
    FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
    WHERE c.oid = to_regclass(:t) AND c.relrowsecurity AND p.polcmd IN ('r', 'w', 'd')
      AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
      AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
      AND EXISTS (SELECT FROM unnest(p.polroles) AS g(role)
                  WHERE g.role = 0 OR pg_has_role(current_user, g.role, 'USAGE'))
    ORDER BY p.polname""")
_PUBLISHED = sa.text("""
    SELECT p.pubname, c.relreplident,
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid
                   AND (i.indisprimary AND c.relreplident = 'd' OR i.indisreplident AND c.relreplident = 'i'))
               AS has_key
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_publication_tables pt ON pt.schemaname = n.nspname AND pt.tablename = c.relname
    JOIN pg_catalog.pg_publication p ON p.pubname = pt.pubname
    WHERE c.oid = to_regclass(:t) AND CASE :writes WHEN 'delete' THEN p.pubdelete ELSE p.pubupdate END
    ORDER BY p.pubname""")
_ALL_TABLES_PUBLICATIONS = sa.text(
    "SELECT pubname FROM pg_catalog.pg_publication WHERE puballtables AND pubinsert ORDER BY pubname")
_SCHEMA_PUBLICATIONS = sa.text("""
    SELECT p.pubname FROM pg_catalog.pg_publication p
    JOIN pg_catalog.pg_publication_namespace pn ON pn.pnpubid = p.oid
    JOIN pg_catalog.pg_namespace n ON n.oid = pn.pnnspid
    WHERE n.nspname = COALESCE(:s, current_schema()) AND p.pubinsert ORDER BY p.pubname""")


class HiddenEquality(CatalogEquality):
    """A column type whose equality operator is outside the session's search_path (`_HIDDEN_EQUALITY`): every
    `=`, `<>`, `IS [NOT] DISTINCT FROM` and `IN` on it is written with the catalog's operator, schema-qualified
    (`a OPERATOR(ext.=) b`), so the fix, its dry run and undo compare as GROUP BY does. `spec` is the type's
    schema-qualified name (bound values are cast to it, the plan table declares it)."""

    cache_ok = True

    def __init__(self, spec: str, operator: str) -> None:
        self.spec, self.operator = spec, operator

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec

    def bind_expression(self, bindvalue: Any) -> Any:
        return sa.cast(bindvalue, self)

    class comparator_factory(sa.types.UserDefinedType.Comparator[Any]):
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            kind = self.type
            if not isinstance(kind, HiddenEquality) or not other or other[0] is None:
                return super().operate(op, *other, **kwargs)
            if op is operators.in_op and isinstance(other[0], list | tuple):
                return sa.or_(sa.false(), *[self._equal(value) for value in other[0]])
            if op is operators.not_in_op and isinstance(other[0], list | tuple):
                return sa.not_(sa.or_(sa.false(), *[self._equal(value) for value in other[0]]))
            if op is operators.eq:
                return self._equal(other[0])
            if op is operators.ne:
                return sa.not_(self._equal(other[0]))
            if op is operators.is_not_distinct_from:
                return self._same(other[0])
            if op is operators.is_distinct_from:
                return sa.not_(self._same(other[0]))
            return super().operate(op, *other, **kwargs)

        def _value(self, value: Any) -> ColumnElement[Any]:
            return value if isinstance(value, ColumnElement) else sa.bindparam(None, value, type_=self.type)

        def _equal(self, value: Any) -> ColumnElement[bool]:
            kind = self.type
            assert isinstance(kind, HiddenEquality)
            return self.expr.op(kind.operator, is_comparison=True)(self._value(value))

        def _same(self, value: Any) -> ColumnElement[bool]:
            """NULL-safe equality: both NULL, or equal by the catalog's operator."""
            other = self._value(value)
            return sa.func.coalesce(self._equal(other), sa.and_(self.expr.is_(None), other.is_(None)),
                                    type_=sa.Boolean())


def fix_lock_key(table: str) -> int:
    """The advisory lock key of a table's fix (`monitor.fix.locks` holds it while a fix runs)."""
    return int.from_bytes(sha256(f"dupewatch fix {table}".encode()).digest()[:8], "big", signed=True)


# The command tags of the DDL a fix and undo run (CREATE TABLE of plan, archive and log tables, their indexes, the
# grants restricting them, the guard's index or constraint, the drops afterwards), and the event triggers that fire
# on any of them in this session (evtenabled: O fires unless session_replication_role = replica, R only then, A
# always, D never).
_FIX_DDL_TAGS = ("CREATE TABLE", "CREATE TABLE AS", "SELECT INTO", "CREATE INDEX", "ALTER TABLE", "ALTER INDEX",
                 "DROP TABLE", "DROP INDEX", "GRANT", "REVOKE", "COMMENT", "CREATE SCHEMA")
_DDL_EVENT_TRIGGERS = sa.text(
    "SELECT evtname, evtevent, evtfoid::regprocedure::text AS function FROM pg_catalog.pg_event_trigger "
    "WHERE evtevent IN ('ddl_command_start', 'ddl_command_end', 'sql_drop', 'table_rewrite') "
    "AND CASE evtenabled WHEN 'D' THEN false WHEN 'A' THEN true "
    "WHEN 'R' THEN current_setting('session_replication_role') = 'replica' "
    "ELSE current_setting('session_replication_role') <> 'replica' END "
    "AND (evttags IS NULL OR evttags && CAST(:tags AS text[])) ORDER BY evtname")


class PostgreSQL(PostgreSQLPolling, Dialect):
    name = "postgresql"
    row_identity_order = "physical order"
    returning_delete = True
    identity_array_scan = True
    address_scan = True
    # A B-tree on the archive's fix id costs about 1.3 us of server CPU per archived row, BRIN about 0.4 us
    # (100,000 rows in batches of 5,000: 0.22 s against 0.13 s, none 0.09 s); undo and purge read a fix's rows
    # by a bitmap scan of the block ranges whose summary holds its id (never summarised ones too).
    archive_tag_index = "brin"
    # The snapshot at 2M rows (100,000 pairs): 2.05 s of server CPU against 2.14 s with the keepers' keys read by
    # a window ordered by rank (3 alternated runs each, within 0.08 s of each other).
    partition_is_equality = True
    write_refused_markers = ("read-only transaction",)
    concurrent_index_build = True
    ddl_fires_triggers = True
    account_sees = ("; it counts every table's rows, system catalogs' (DDL, lo_unlink), a TRUNCATE and a write to a "
                    "foreign table, not a write through dblink or another connection")
    partitioned_tables = True
    error_aborts_transaction = True
    change_stream_absent = ""

    def storage_type(self, kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
        """A domain's base type (a domain over a domain's too): a cast to the domain would run its CHECKs, which
        may call VOLATILE functions (the fix evaluates them apart, `column_domains`)."""
        while isinstance(kind, postgresql.DOMAIN):
            kind = sa.types.to_instance(kind.data_type)
        return kind

    def account_refusal(self, conn: Connection) -> str | None:
        if conn.execute(sa.text(f"SELECT {TRACK_COUNTS}")).scalar() == "on":
            return None
        return ("track_counts is off for the fix's session, so PostgreSQL counts no row a transaction changes "
                "(pg_stat_xact_user_tables reads 0) and the database's account of each batch and of undo cannot be "
                "kept: turn it on for the fix's role (as a superuser: ALTER ROLE <fix role> SET track_counts = on) "
                "or the server (track_counts = on), and drop any `-c track_counts=off` from the URL's options; "
                "nothing changed")

    @contextmanager
    def bounded_read(self, conn: Connection, seconds: float, lock_seconds: float) -> Iterator[None]:
        """SET LOCAL: the bounds end with the transaction."""
        if conn.in_transaction():  # what the pool's checkout ran
            conn.rollback()
        with conn.begin():
            self.read_only_planning(conn)
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(lock_seconds * 1000))}")
            yield

    # -- connections ----------------------------------------------------------------------------

    def list_databases(self, conn: Connection) -> list[str]:
        """Databases that accept connections, are not templates and that the role may CONNECT to."""
        return list(conn.execute(sa.text(
            "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate "
            "AND has_database_privilege(datname, 'CONNECT') ORDER BY datname")).scalars())

    def connect_refusal(self, exc: BaseException) -> Refusal | None:
        """By the SQLSTATE, when the driver has one: too many connections (53300) or the server starting up or
        shutting down (57P03). libpq keeps a failed connection's SQLSTATE to itself (psycopg's `sqlstate` and
        `diag` are None, only the FATAL's text in the server's `lc_messages` language is given): then None, and
        the server is asked (`database_refusal`, `connections_left`, `answers`)."""
        sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None)
        if sqlstate == "53300":
            return "exhausted"
        return "server" if sqlstate == "57P03" else None

    def database_refusal(self, conn: Connection, database: str) -> str | None:
        """What `pg_database` says of the database for this role: missing, `ALLOW_CONNECTIONS false`, no CONNECT
        privilege, or as many connections as its `CONNECTION LIMIT` (those of every role, as the server counts)."""
        row = conn.execute(sa.text(
            "SELECT d.datallowconn, has_database_privilege(d.oid, 'CONNECT'), d.datconnlimit, "
            "(SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid) "
            "FROM pg_catalog.pg_database d WHERE d.datname = :name"), {"name": database}).first()
        if row is None:
            return "it does not exist"
        allowed, connect, limit, connected = row
        if not allowed:
            return "it does not allow connections (ALLOW_CONNECTIONS false)"
        if not connect:
            return "the role has no CONNECT privilege on it"
        if limit >= 0 and connected >= limit:
            return f"it has as many connections as its CONNECTION LIMIT ({connected} of {limit})"
        return None

    def connections_left(self, conn: Connection) -> bool:
        """Whether the role's `CONNECTION LIMIT` and the server's `max_connections` (less its reserved slots, for
        a role that is not a superuser) leave one more connection beside this one."""
        row = conn.execute(sa.text(
            "SELECT r.rolsuper, r.rolconnlimit, "
            "(SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.usesysid = r.oid "
            " AND a.backend_type = 'client backend'), "
            "current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int "
            "- coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0), "
            "(SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'client backend') "
            "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user")).first()
        if row is None:
            return True
        superuser, role_limit, by_role, server_limit, everyone = row
        if superuser:
            return True
        return bool((role_limit < 0 or by_role < role_limit) and everyone < server_limit)

    def answers(self, url: URL, connect_timeout: float) -> bool:
        """libpq's ping (`PQping`): whether the server answered at all, whatever it said (it reads the SQLSTATE
        libpq keeps to itself: a server starting up or shutting down does not count as answering)."""
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        params = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
                  "dbname": url.database, **{k: v for k, v in url.query.items() if isinstance(v, str)}}
        conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None},
                                 connect_timeout=max(1, round(connect_timeout)))
        return pq.PGconn.ping(conninfo.encode()) == pq.Ping.OK

    def target_url(self, url: URL, database: str, schema: str | None) -> URL:
        """A tenant schema is put first (and alone) on the session's `search_path`, as a startup option, so that
        unqualified names of table checks and custom queries resolve in it and `DISCARD ALL` keeps it."""
        url = url.set(database=database)
        if schema is None:
            return url
        quoted = '"' + schema.replace('"', '""') + '"'
        escaped = quoted.replace("\\", "\\\\").replace(" ", "\\ ")  # the options string splits on spaces
        options = " ".join(o for o in (str(url.query.get("options", "")).strip(), f"-c search_path={escaped}") if o)
        return url.update_query_dict({"options": options})

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        options = [str(url.query.get("options", "")).strip()] if url.query.get("options") else []
        options.append(f"-c statement_timeout={int(timeout * 1000)}")
        if read_only:
            options.append("-c default_transaction_read_only=on")
            # PostgreSQL's own default, whatever the role's or database's: a SERIALIZABLE read, read-only or not,
            # takes predicate locks, and a check's read made an application's transaction fail ("could not
            # serialize access due to read/write dependencies among transactions")
            options.append("-c default_transaction_isolation=read\\ committed")
        return {"connect_timeout": max(1, round(connect_timeout)), "application_name": "dupewatch",
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                # Keepalives probe an idle connection only: data sent and never acknowledged (a partition just
                # after a statement went out) would be retransmitted for about 15 minutes (tcp_retries2).
                "tcp_user_timeout": _KEEPALIVE_WINDOW_MS, "options": " ".join(options)}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float, client_deadline: float) -> None:
        """`infinity`, `-infinity` and years beyond Python's in a date, timestamp or interval column load as the
        server's text (`postgresql_values.ServerValue`), which binds back as the same value: psycopg refused to
        load them, so a preview listing such a row failed."""
        from monitor.dialects import postgresql_values  # psycopg, imported once a connection is made

        postgresql_values.register(dbapi.adapters)
        if read_only:
            _bound_temp_files(dbapi)

    driver_bounds_waits = False  # libpq has no read timeout

    def statement_in_progress(self, dbapi: Any) -> bool:
        """libpq's transaction status is ACTIVE while a command (a COMMIT too) waits for its answer."""
        from psycopg.pq import TransactionStatus

        return bool(dbapi.pgconn.transaction_status == TransactionStatus.ACTIVE)

    def reset_session(self, dbapi: Any, *, rolled_back_after: bool) -> None:
        dbapi.rollback()
        dbapi.autocommit = True
        try:
            dbapi.execute("DISCARD ALL")  # settings back to the startup options, advisory locks released
        finally:
            dbapi.autocommit = False
        _bound_temp_files(dbapi)  # DISCARD ALL reset it

    def install(self, engine: Engine, *, read_only: bool) -> None:
        if not read_only:
            return

        @event.listens_for(engine, "do_execute")
        def _extended(cursor: Any, statement: str, parameters: Any, _context: Any) -> bool:
            cursor.execute(statement, parameters, prepare=True)
            return True

        @event.listens_for(engine, "do_execute_no_params")
        def _extended_no_params(cursor: Any, statement: str, _context: Any) -> bool:
            cursor.execute(statement, prepare=True)
            return True

    def change_stream(self, database: str, url: URL) -> ChangeStream:
        from monitor.live.postgresql import LogicalDecodingStream

        return LogicalDecodingStream(database, url, self)

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        dbapi.cancel_safe(timeout=timeout)

    def socket_fileno(self, dbapi: Any) -> int | None:
        return int(dbapi.fileno())

    def conflict(self, error: BaseException) -> str | None:
        """SQLSTATE 40P01 deadlock_detected, 40001 serialization_failure, 55P03 lock_not_available (a lock
        timeout): the server rolled the transaction back, and trying it again may succeed."""
        return _CONFLICTS.get(str(getattr(error, "sqlstate", "") or ""))

    def error_context(self, error: BaseException) -> str | None:
        """psycopg's `diag.context` (the error's CONTEXT field)."""
        return str(getattr(getattr(error, "diag", None), "context", None) or "")

    def is_timeout(self, message: str) -> bool:
        return "canceling statement due to statement timeout" in message

    def row_digest(self, columns: Sequence[ColumnElement[Any]]) -> ColumnElement[Any] | None:
        """SHA-256 of the row of `columns` as text (each value by its type's output function, NULL as nothing), in
        hex. Not md5(): a FIPS-mode build (OpenSSL in FIPS mode) refuses it, which stopped every fix with a
        repointed row. sha256() (PostgreSQL 11+) is FIPS-approved; over 300,000 rows it took 0.6-0.9 s against
        md5()'s 0.6-0.8 s and a 64-bit hashtextextended()'s 0.3 s: a microsecond a row at most, below a batch's
        noise, for a digest wide enough that no collision needs arguing (hashtextextended() is undocumented and
        its value depends on the collation). The text's bytes in the database's own encoding: convert_to() into
        it checks them as that encoding only (into 'UTF8' it would refuse a SQL_ASCII database's other bytes).
        Text, not bytea: a repoint log an older fix made holds md5's text, and a resumed fix compares with it."""
        if not columns:
            return None
        text = sa.cast(sa.func.row(*columns), sa.Text)
        encoded = sa.func.pg_catalog.convert_to(text, sa.func.pg_catalog.getdatabaseencoding())
        return sa.func.pg_catalog.encode(sa.func.pg_catalog.sha256(encoded), "hex")

    def refused_call(self, conn: Connection, statement: str) -> str | None:
        """The first function the server resolves in `statement` that a check must not call, or row locks.
        IMMUTABLE and STABLE functions are allowed (a function's volatility is its author's declaration, which
        PostgreSQL itself relies on), VOLATILE ones only when in `HARMLESS_VOLATILE`."""
        refused = self.refused_domain(conn)  # before the statement is parsed: parsing may run a domain's CHECK
        if refused:
            return refused
        # Before it is planned: planning folds IMMUTABLE calls on constants, so the EXPLAIN below would itself run
        # `repeat('a', 400000) LIKE ...` (past every timeout) and leave no call of it in the plan.
        rewritten = Calls()
        rewritten.read(self.rewritten_tree(conn, statement))
        refused = self.refused_among(conn, rewritten)
        if refused:
            return refused
        plan = self.plan_tree(conn, statement)
        if not plan:
            return "custom SQL is not allowed in a check: PostgreSQL sent no plan to vet it by"
        calls = Calls()
        calls.read(plan)
        if calls.locks:
            return "FOR UPDATE/FOR SHARE is not allowed in a check: it locks the rows it reads"
        if calls.unbounded_hash:
            return ("WITH RECURSIVE ... UNION is not allowed in a check: PostgreSQL keeps every row a recursive UNION "
                    "made in a hash table in its memory, which neither work_mem nor temp_file_limit bounds; write "
                    "UNION ALL with a condition that ends the recursion")
        return self.refused_among(conn, calls)

    @classmethod
    def refused_among(cls, conn: Connection, calls: Calls) -> str | None:
        """Why the first of `calls`' functions (operators, aggregates' support functions) a check must not call is
        refused, or None."""
        found = cls._first_refused(conn, calls)
        return None if found is None else f"{found[0]} is not allowed in a check: {found[1]}"

    @staticmethod
    def _first_refused(conn: Connection, calls: Calls, *, opaque_refused: bool = True) -> tuple[str, str] | None:
        """The signature of the first of `calls`' functions a check must not call, and why; None when none.

        A function of the database's own (not built in, of no extension) declared IMMUTABLE or STABLE is read
        through: what its body calls, as the server parses it, is vetted like the statement's own calls, since
        PostgreSQL does not hold a function to its declaration (a STABLE one may `PERFORM pg_terminate_backend()`)
        and its planner runs IMMUTABLE and STABLE calls while planning, the vetting EXPLAIN's included."""
        functions, operators, types = set(calls.functions), set(calls.operators), set(calls.types)
        coerced, domains = set(calls.domains), set[int]()  # domains coerced to; those whose CHECKs were read
        relations, planned = set(calls.relations), set[int]()  # tables read; those whose expressions were read
        read: set[int] = set()
        defaulted: set[int] = set()  # the functions whose default arguments were read
        reached: list[str] = []  # the functions whose bodies led to the calls of this round, innermost last
        while True:
            rows = conn.execute(_CALLED, {
                "functions": _oid_array(functions), "operators": _oid_array(operators), "types": _oid_array(types),
                "harmless": list(HARMLESS_VOLATILE), "refused": list(_REFUSED_STABLE),
                "queries": list(RUNS_A_QUERY), "extension_queries": list(_EXTENSION_QUERIES),
                "sized": list(SIZED_BY_ARGUMENT), "padded": list(PADDED_TO_TYPMOD),
                "resources": list(RESOURCE_SETTINGS)}).all()
            for row in rows:
                found = _refusal(row, opaque_refused=opaque_refused)
                if found:
                    where = f" (reached through {', '.join(reached)})" if reached and row.oid not in read else ""
                    return row.signature + where, found
            nested = Calls()
            # a value made of a domain runs its CHECKs (and those of the domains it is based on)
            if coerced - domains:
                for tree in conn.execute(_COERCED_DOMAIN_CHECKS, {"domains": _oid_array(coerced - domains)}).scalars():
                    nested.read(tree)
                domains |= coerced
            # what the planner folds for a table read (`_PLANNED_EXPRESSIONS`): the expressions of its indexes,
            # statistics and partition key, of its partitions' and children's, and their CHECK constraints
            if relations - planned:
                foreign = conn.execute(_FOREIGN_TABLES, {"relations": _oid_array(relations - planned)}).first()
                if foreign is not None:
                    how = [f"a partition or inheritance child of {foreign.parent}"] if foreign.parent else []
                    if reached:
                        how.append(f"reached through {', '.join(reached)}")
                    where = f" ({'; '.join(how)})" if how else ""
                    return f"foreign table {foreign.name}{where}", (
                        f"reading it runs the code of its foreign-data wrapper {foreign.wrapper}, which no plan "
                        f"shows and PostgreSQL does not hold to the read-only transaction (file_fdw's program "
                        f"option runs a shell command on the database server, postgres_fdw queries another "
                        f"server, whose views may call anything); check the table it stands for where it is stored")
                for found_in in conn.execute(_PLANNED_EXPRESSIONS, {"relations": _oid_array(relations - planned)}):
                    every = Calls()
                    every.read(found_in.tree)
                    unrun = conn.execute(_UNFOLDED, {"functions": _oid_array(every.functions),
                                                     "operators": _oid_array(every.operators)}).all()
                    # what the planner can run of it: its IMMUTABLE calls on constants
                    constant = foldable(found_in.tree, frozenset(oid for kind, oid in unrun if kind == "f"),
                                        frozenset(oid for kind, oid in unrun if kind == "o"))
                    folded = Calls()
                    folded.read(constant)
                    if folded.functions or folded.operators:
                        reached.append(f"{found_in.what}, which PostgreSQL's planner evaluates on constants while "
                                       f"it plans a statement reading the table")
                    nested.read(constant)
                planned |= relations
            for row in rows:
                if row.defaults and row.oid not in defaulted:
                    # what its default arguments call, vetted like its body: a call leaving one out runs it
                    defaulted.add(row.oid)
                    default = Calls()
                    default.read(row.defaults)
                    if default.functions or default.operators:
                        reached.append(f"the default arguments of {row.signature}")
                    nested.read(row.defaults)
                if row.body in ("tree", "text") and row.oid not in read:
                    read.add(row.oid)
                    reached.append(row.signature)
                    tree, error = _atomic_body_tree(conn, row.tree) if row.body == "tree" \
                        else _function_body_tree(conn, row.oid)
                    if error is not None:
                        return row.signature, (f"dupewatch reads what a function of the database's own calls, as "
                                               f"PostgreSQL parses its body, and PostgreSQL could not parse this "
                                               f"one apart ({error}); give it a BEGIN ATOMIC body, which "
                                               f"PostgreSQL keeps parsed")
                    nested.read(tree or "")
                    if nested.unbounded_hash:
                        return row.signature, ("its body holds a recursive UNION (not ALL), whose hash table of every "
                                               "row it made PostgreSQL keeps in its memory, bounded by neither "
                                               "work_mem nor temp_file_limit; write UNION ALL with a condition that "
                                               "ends the recursion")
            coerced |= nested.domains
            relations |= nested.relations
            if nested.functions <= functions and nested.operators <= operators and nested.types <= types \
                    and coerced <= domains and relations <= planned:
                return None
            functions |= nested.functions
            operators |= nested.operators
            types |= nested.types

    def refused_domain(self, conn: Connection) -> str | None:
        """Why no custom SQL or `where` can be vetted on this database: a domain whose CHECK calls what a check must
        not. PostgreSQL runs a domain's CHECK wherever a value of it is made, also while parsing a literal of a row
        or array type holding it, so no reading of the statement can come first; None when there is none.

        A domain's CHECK calling a function declared IMMUTABLE or STABLE whose body cannot be read (PL/pgSQL) is
        taken at its declaration here, as PostgreSQL takes a CHECK's functions: refusing it stopped every custom
        check on the database, whatever tables they read."""
        checks = conn.execute(_DOMAIN_CHECKS).all()
        everything = Calls()
        for _, tree in checks:
            everything.read(tree)
        if not checks or self._first_refused(conn, everything, opaque_refused=False) is None:
            return None
        for domain, tree in checks:
            calls = Calls()
            calls.read(tree)
            found = self._first_refused(conn, calls, opaque_refused=False)
            if found is not None:
                return (f"{found[0]} is not allowed in a check: {found[1]}; the CHECK of domain {domain} calls "
                        f"it, and PostgreSQL runs that CHECK even while it parses a value of a row or array type "
                        f"holding the domain, before dupewatch can vet a statement, so no custom query or where runs "
                        f"on this database until that CHECK calls only what a check may")
        return None

    @staticmethod
    def rewritten_tree(conn: Connection, statement: str) -> str:
        """The query tree PostgreSQL makes of `statement` once parsed and rewritten (views and row-level security
        policies expanded), not yet planned: the protocol's Parse message alone (libpq `PQprepare` of the unnamed
        statement), which plans and runs nothing; "" when the server sent none or could not parse it (the EXPLAIN
        that follows reports why, as the server words it)."""
        driver: Any = conn.connection.driver_connection

        def parse_only() -> None:
            with suppress(UnicodeEncodeError):  # the EXPLAIN that follows reports it as psycopg words it
                driver.pgconn.prepare(b"", statement.encode(driver.info.encoding))

        return _server_dump(conn, "debug_print_rewritten", "rewritten parse tree:", parse_only)

    @staticmethod
    def plan_tree(conn: Connection, statement: str) -> str:
        """The plan tree PostgreSQL builds for `statement` (EXPLAIN: planned, not run), as the server dumps it
        ("" if it sent none)."""
        # No parameters: the statement reaches the server as written, `%` included.
        return _server_dump(conn, "debug_print_plan", "plan:", lambda: conn.exec_driver_sql(
            f"EXPLAIN (COSTS OFF) {statement}", execution_options={"no_parameters": True}))

    # -- detection ------------------------------------------------------------------------------

    def ungroupable_key(self, conn: Connection, table: sa.Table, column: sa.Column[Any],
                        expr: ColumnElement[Any]) -> str | None:
        """Asked of the server's parser: a GROUP BY on the key expression, parsed only (the protocol's Parse
        message, as `rewritten_tree`: nothing planned, so nothing the planner folds runs) in a savepoint. A type
        with no equality operator `GROUP BY` can use (json, xml, point, an array or domain of one) is refused there
        (SQLSTATE 42883): the runs reported it naming neither check nor column. None otherwise (any other refusal
        is the run's to report, as the server words it)."""
        statement = str(sa.select(sa.literal(1)).select_from(table).group_by(expr)
                        .compile(conn, compile_kwargs={"literal_binds": True}))
        driver: Any = conn.connection.driver_connection
        savepoint = conn.begin_nested()
        try:
            result = driver.pgconn.prepare(b"", statement.encode(driver.info.encoding))
        finally:
            savepoint.rollback()
        if result.status != pq.ExecStatus.FATAL_ERROR \
                or result.error_field(pq.DiagnosticField.SQLSTATE) != b"42883":
            return None
        said = (result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode(
            driver.info.encoding, "replace").strip()
        hint = (f"make it jsonb, or write a custom query that groups on {column.name}::jsonb"
                if re.search(r"\btype json\b", said) else
                "change its type, or write a custom query that groups on a cast of it")
        return f"PostgreSQL cannot group column {column.name!r}: {said}; {hint}"

    def sent_width(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """The length of the value's text (every type has a cast to text: its output function, as it is sent);
        a text value's length is read from its header, without decompressing it."""
        return sa.func.octet_length(sa.cast(expr, sa.Text()), type_=sa.BigInteger())

    def row_identity(self, *, is_view: bool) -> ColumnElement[Any] | None:
        return None if is_view else sa.literal_column("ctid")  # a view has no ctid

    def row_origin(self, table: sa.Table) -> ColumnElement[Any] | None:
        """`tableoid`: a parent's query reads its inheritance children's rows too, and neither its primary key
        (not inherited) nor `ctid` (each table's own) tells a child's row from the parent's."""
        return sa.cast(sa.sql.expression.ColumnClause("tableoid", _selectable=table), sa.BigInteger)

    def nulls_first(self, clause: Any) -> Any:
        return clause.nulls_first()

    def resolved_schema(self, conn: Connection, name: str) -> str | None:
        """`to_regclass` follows `search_path`; `current_schema()` is only its first existing schema, which is
        not where the table is when, say, `"$user", public` meets a schema named after the role."""
        quoted = conn.dialect.identifier_preparer.quote(name)
        row = conn.execute(sa.text(
            "SELECT n.nspname, n.nspname = current_schema() AS home FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:t)"),
            {"t": quoted}).first()
        return None if row is None or row.home else str(row.nspname)

    def nulls_last(self, clause: Any) -> Any:
        return clause.nulls_last()

    # -- fixes ----------------------------------------------------------------------------------

    def refresh_statistics(self, conn: Connection, table: sa.Table) -> None:
        # autovacuum has not seen a table just filled; the batches join it. Without statistics the planner
        # guesses a handful of rows per batch and reaches the fixed table by primary key, row by row, instead of
        # by the ctids the plan holds. A sample of 3,000 rows (statistics target 10, set on this table's columns)
        # gives the batches the same plans as the default 30,000 (EXPLAIN at 2M rows: identical plans, row
        # estimates within 8%) in 7-9 ms instead of 55-95 ms.
        preparer = conn.dialect.identifier_preparer
        name = preparer.format_table(table)
        columns = ", ".join(f"ALTER COLUMN {preparer.quote(c.name)} SET STATISTICS {PLAN_STATISTICS_TARGET}"
                            for c in table.columns)
        conn.exec_driver_sql(f"ALTER TABLE {name} {columns}")
        conn.exec_driver_sql(f"ANALYZE {name}")

    def relax_batch_durability(self, conn: Connection) -> None:
        # A batch and its progress commit together, so a server crash can only lose whole batches, which the
        # resumed fix redoes; the final, synchronous commit of the fix record flushes them all before the fix
        # reports done.
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def prepare_snapshot(self, conn: Connection) -> None:
        # The snapshot is one sort of the whole table: its cost passes jit_optimize_above_cost at a few million
        # rows, and compiling (about 0.5 s on a busy two-core server) costs more than it saves on a sort-bound
        # plan (measured: 0.26-0.33 s slower at 2M rows with JIT on). This transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")

    def serialise_table_creation(self, conn: Connection, key: int) -> None:
        """`CREATE TABLE IF NOT EXISTS` still fails when two sessions race (a duplicate in
        `pg_type_typname_nsp_index`): a transaction-level advisory lock comes first."""
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    def is_partitioned(self, conn: Connection, table: sa.Table) -> bool:
        """relkind 'p': a partitioned parent."""
        return conn.execute(_RELKIND, {"name": table.name, "schema": table.schema}).scalar() == "p"

    def is_foreign_table(self, conn: Connection, table: sa.Table) -> bool:
        """relkind 'f': a foreign table (postgres_fdw and the like), whose rows are another server's."""
        return conn.execute(_RELKIND, {"name": table.name, "schema": table.schema}).scalar() == "f"

    def check_constraints(self, conn: Connection, table: sa.Table) -> list[CheckConstraint]:
        """From pg_constraint, each condition as `pg_get_expr` deparses it (`_CHECK_CONSTRAINTS`)."""
        rows = conn.execute(_CHECK_CONSTRAINTS, {"t": conn.dialect.identifier_preparer.format_table(table)})
        return [CheckConstraint(str(name), str(expression), None if volatile is None else str(volatile))
                for name, expression, volatile in rows]

    def domain_constraints(self, conn: Connection, table: sa.Table) -> dict[str, ColumnDomain]:
        """From pg_type and pg_constraint (contypid), following a domain over a domain down to its base type
        (`_DOMAIN_CONSTRAINTS`); a domain's NOT NULL is `VALUE IS NOT NULL`, named `NOT NULL`."""
        found: dict[str, tuple[str, list[CheckConstraint]]] = {}
        rows = conn.execute(_DOMAIN_CONSTRAINTS, {"t": conn.dialect.identifier_preparer.format_table(table)})
        for column, is_domain, kind, not_null, name, expression, volatile in rows:
            constraints = found.setdefault(str(column), ("", []))[1]
            if not is_domain:
                found[str(column)] = (str(kind), constraints)
                continue
            if not_null and not any(c.name == "NOT NULL" and c.domain == kind for c in constraints):
                constraints.append(CheckConstraint("NOT NULL", "VALUE IS NOT NULL", domain=str(kind)))
            if name is not None:
                constraints.append(CheckConstraint(str(name), str(expression),
                                                   None if volatile is None else str(volatile), str(kind)))
        return {column: ColumnDomain(base, tuple(constraints)) for column, (base, constraints) in found.items()}

    def declared_types(self, conn: Connection, table: sa.Table) -> dict[str, str]:
        rows = conn.execute(_DECLARED_TYPES, {"name": table.name, "schema": table.schema})
        return {str(name): str(kind) for name, kind in rows}

    def catalog_types(self, conn: Connection, table: sa.Table) -> dict[str, sa.types.TypeEngine[Any]]:
        """Columns whose equality an unqualified `=` would not find (`_HIDDEN_EQUALITY`), typed to compare with
        the catalog's operator (`HiddenEquality`); columns of a composite type (`_COMPOSITE`), which SQLAlchemy
        does not reflect, typed by the name the catalog gives (`Composite`)."""
        preparer = conn.dialect.identifier_preparer
        found: dict[str, sa.types.TypeEngine[Any]] = {
            str(row.attname): Composite(str(row.spec))
            for row in conn.execute(_COMPOSITE, {"t": preparer.format_table(table)})}
        for row in conn.execute(_HIDDEN_EQUALITY, {"t": preparer.format_table(table)}):
            spec = f"{preparer.quote_schema(row.type_schema)}.{preparer.quote(row.typname)}"
            operator = f"OPERATOR({preparer.quote_schema(row.operator_schema)}.{row.oprname})"
            found[str(row.attname)] = HiddenEquality(spec, operator)
        return found

    def for_update(self, statement: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return statement.with_for_update(of=table)

    def server_identity(self, conn: Connection) -> list[str]:
        """The cluster's system identifier (`pg_control_system()`, callable by every role unless revoked), else
        the address and port the server answered on; the database, and the schema its search path starts at. A
        physical standby shares its primary's identifier: it holds the same data."""
        if conn.exec_driver_sql("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')").scalar():
            identifier = conn.exec_driver_sql("SELECT system_identifier FROM pg_control_system()").scalar()
            server = ["system_identifier", str(identifier)]
        else:
            address, port = conn.exec_driver_sql(
                "SELECT coalesce(host(inet_server_addr()), 'local socket'), current_setting('port')").one()
            server = ["address", str(address), str(port)]
        database, schema = conn.exec_driver_sql("SELECT current_database(), current_schema()").one()
        return [*server, str(database), str(schema or "")]  # the schema an unqualified table name is found in

    def named_lock(self, key: str) -> NamedLock:
        lock = fix_lock_key(key)
        return NamedLock(sa.text("SELECT pg_try_advisory_lock(:k)").bindparams(k=lock),
                         sa.text("SELECT pg_advisory_unlock(:k)").bindparams(k=lock), "advisory lock")

    def comparable(self, column: sa.Column[Any]) -> bool:
        """json, xml, geometric and unreflected types have no `=` (PostgreSQL docs, "JSON Types"), nor have arrays
        of them (`json[]`) or domains over them (`CREATE DOMAIN payload AS json`); composite types are compared
        as their text, as before the catalog typed them (`Composite`)."""
        kind = column.type
        while isinstance(kind, sa.ARRAY | postgresql.DOMAIN):
            kind = kind.item_type if isinstance(kind, sa.ARRAY) else kind.data_type
        if isinstance(kind, sa.JSON) and not isinstance(kind, postgresql.JSONB):
            return False
        # (a composite's `=` compares field by field, and fails where a field has none: `(a int, j json)`)
        return not isinstance(kind, sa.types.NullType | Composite)

    def stored_identity(self, column: ColumnElement[Any], kind: sa.Column[Any]) -> ColumnElement[Any]:
        """Each value's text (its type's output function), compared under the "C" collation: a type's `=` is not
        identity (citext 'Bob' = 'bob', a nondeterministic collation, numeric 1.500 = 1.5, float8 -0 = 0, interval
        '1 day' = '24 hours'), and a cast to text keeps the column's collation, so a nondeterministic one would
        still find 'Bob' and 'bob' equal (verified on PostgreSQL 15)."""
        return sa.cast(column, sa.Text).collate("C")

    def violated_unique(self, exc: sa.exc.DBAPIError) -> UniqueViolation:
        if getattr(exc.orig, "sqlstate", None) != "23505":  # unique_violation
            return UniqueViolation()
        diag = getattr(exc.orig, "diag", None)
        return UniqueViolation(getattr(diag, "constraint_name", None))

    def enforces_foreign_keys(self, conn: Connection) -> bool:
        """Foreign keys are checked by internal triggers, which fire only where the session's
        `session_replication_role` is not `replica` (a fix role whose `options` or `ALTER ROLE ... SET` makes it
        one, as logical replication tools do): there no NO ACTION or RESTRICT key refuses anything."""
        return conn.exec_driver_sql("SELECT current_setting('session_replication_role')").scalar() != "replica"

    def violated_foreign_key(self, exc: sa.exc.DBAPIError) -> str | None:
        if getattr(exc.orig, "sqlstate", None) != "23503":  # foreign_key_violation
            return None
        return str(getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or "")

    def nulls_not_distinct(self, version: tuple[int, ...]) -> bool:
        return version >= (15,)  # CREATE UNIQUE INDEX ... NULLS NOT DISTINCT, PostgreSQL 15

    def compared_apart(self, conn: Connection, table: sa.Table) -> dict[str, Comparison]:
        """From the catalog (`_COMPARED_APART`): citext wherever its schema is, and nondeterministic collations
        (`pg_collation.collisdeterministic`, PostgreSQL 12 and later)."""
        found: dict[str, Comparison] = {}
        if self.server_version(conn) < (12,):
            return found
        name = conn.dialect.identifier_preparer.format_table(table)
        for column, citext, visible, array, type_name, nondeterministic, version in conn.execute(
                _COMPARED_APART, {"t": name}):
            if citext and array:  # compared element by element as citext (array_eq: `=` of pg_catalog, visible)
                found[str(column)] = Comparison("citext array", type_name=str(type_name))
            elif citext:
                found[str(column)] = Comparison("citext", visible=bool(visible), type_name=str(type_name))
            elif nondeterministic:
                found[str(column)] = Comparison("collation", str(version or ""))
        return found

    def group_identity(self, expr: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """Values `=` finds equal though they print apart, as one value: a `citext` lowered, a numeric at its
        least scale (`trim_scale`: 1.0 = 1.00), a float plus zero (-0 = 0), an interval justified (`1 mon` = `30
        days`, `1 day` = `24 hours`), text under a nondeterministic collation as its hash in that collation
        (`_collation_hash`); a domain's value as its base type's, an array of those as its hash
        (`hash_array_extended`, each element hashed as its type compares). GROUP BY returns one of the group's
        spellings, not always the same one (delete the row it returned, or read the group by another row's key):
        identified by the spelling, the group was another, and the "new duplicates" alert fired for an old one."""
        kind = expr.type
        if isinstance(kind, ServerText) and kind.hashed:  # a key carried as its text (`polled_key`)
            return _hashed(expr, kind.hashed)
        if comparison is not None and comparison.kind == "citext array":
            # '{Bob}' = '{BOB}': each element hashed by citext's hash operator class (lowered), as `=` compares it
            return _hashed(expr, "hash_array_extended")
        if isinstance(kind, postgresql.CITEXT) or (comparison is not None and comparison.kind == "citext"):
            return sa.func.lower(sa.cast(expr, sa.Text()), type_=sa.Text())  # compared as lower(text): 'Bob' = 'BOB'
        if comparison is not None and comparison.kind == "collation":
            return _collation_hash(expr)
        kind = self.storage_type(kind)  # a domain compares as its base type: `-0` = `0` of a domain over float8
        if isinstance(kind, sa.ARRAY) and spelled_apart(self.storage_type(sa.types.to_instance(kind.item_type))):
            # Arrays compare element by element with the element type's `=` ('{1.0}' = '{1.00}', '{-0}' = '{0}'):
            # identified by the array's hash, which hashes each element with its type's hash operator class.
            return _hashed(expr, "hash_array_extended")
        if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
            return sa.func.trim_scale(expr, type_=kind)
        if isinstance(kind, sa.Float):
            return sa.type_coerce(sa.type_coerce(expr, kind) + sa.literal(0, kind), kind)
        if isinstance(kind, sa.Interval):
            return sa.func.justify_interval(expr, type_=kind)
        return expr

    def index_options(self, *, where: ColumnElement[bool] | None, nulls_not_distinct: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"postgresql_concurrently": True}
        if where is not None:
            options["postgresql_where"] = where
        if nulls_not_distinct:
            options["postgresql_nulls_not_distinct"] = True
        return options

    # -- a batch's account ----------------------------------------------------------------------

    def changes_so_far(self, conn: Connection) -> ChangeCounts:
        counts: ChangeCounts = {}
        for row in conn.execute(_XACT_CHANGES):
            if row.what == "t":
                counts[(row.counted, INSERTED)] = int(row.inserted)
                counts[(row.counted, UPDATED)] = int(row.updated)
                counts[(row.counted, DELETED)] = int(row.deleted)
            elif row.what == "c":
                counts[(row.counted, CATALOG_CHANGED)] = int(row.inserted + row.updated + row.deleted)
            else:
                counts[(row.counted, FOREIGN_WRITTEN if row.what == "f" else TRUNCATED)] = 1
        return counts

    def fire_deferred(self, conn: Connection) -> None:
        # A constraint trigger `DEFERRABLE INITIALLY DEFERRED` (an AFTER DELETE one deleting another table's rows)
        # fires at COMMIT, after the account: its writes were never counted. Switching every deferrable
        # constraint to IMMEDIATE fires what is pending now, in this transaction (docs, "SET CONSTRAINTS": "any
        # outstanding data modifications that would have been checked at the end of the transaction are instead
        # checked during the execution of the SET CONSTRAINTS command"), and the rest of the batch's at once.
        conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")

    def counted_as(self, conn: Connection, table: sa.Table) -> str:
        name = conn.dialect.identifier_preparer.format_table(table)
        return str(conn.execute(_COUNTED_AS, {"t": name}).scalar() or name)

    def replication_blockers(self, conn: Connection, table: sa.Table, writes: str) -> list[str]:
        name = conn.dialect.identifier_preparer.format_table(table)
        found = []
        for row in conn.execute(_PUBLISHED, {"t": name, "writes": writes}):
            if row.relreplident == "f" or row.has_key:
                continue
            identity = {"n": "NOTHING", "d": "DEFAULT and no primary key",
                        "i": "USING INDEX of an index that is gone"}.get(row.relreplident, row.relreplident)
            found.append(f"{name} is in publication {row.pubname}, which publishes {writes}s, and has no replica "
                         f"identity (REPLICA IDENTITY {identity}), so PostgreSQL refuses the fix's {writes}s on it; "
                         f"run `ALTER TABLE {name} REPLICA IDENTITY FULL` (or add a primary key) first")
        return found

    def privilege_refusal(self, error: BaseException) -> str | None:
        return "SQLSTATE 42501" if getattr(error, "sqlstate", None) == "42501" else None  # insufficient_privilege

    def create_refusal(self, conn: Connection, schema: str | None) -> str | None:
        row = conn.execute(sa.text(
            "SELECT n.nspname, has_schema_privilege(n.oid, 'CREATE') AS allowed FROM pg_catalog.pg_namespace n "
            "WHERE n.nspname = COALESCE(:s, current_schema())"), {"s": schema}).first()
        if row is None or row.allowed:
            return None
        name = conn.dialect.identifier_preparer.quote_schema(str(row.nspname))
        return (f"the fix role may not CREATE in schema {name}, where each fix creates its plan table (and its archive "
                f"and records, dupewatch_*): GRANT CREATE ON SCHEMA {name} TO {self.grantee(conn)}, or set [fix] "
                "schema to a schema it may create in")

    def ddl_triggers(self, conn: Connection, tags: tuple[str, ...] | None = None) -> str | None:
        """Event triggers that fire on the commands the fix, undo and guard run (verified on PostgreSQL 15: a
        `ddl_command_end` trigger inserting a row ran when the fix created its plan table), or on `tags` only."""
        fired = conn.execute(_DDL_EVENT_TRIGGERS, {"tags": list(tags or _FIX_DDL_TAGS)}).all()
        if not fired:
            return None
        named = ", ".join(f"{row.evtname} ({row.evtevent}, {row.function})" for row in fired)
        quoted = conn.dialect.identifier_preparer.quote(str(fired[0].evtname))
        return (f"event trigger(s) {named} fire on it; disable them while it runs (ALTER EVENT TRIGGER {quoted} "
                "DISABLE, then ENABLE: their owner or a superuser may)")

    def row_security_refusal(self, conn: Connection, table: sa.Table) -> str | None:
        name = conn.dialect.identifier_preparer.format_table(table)
        policies = conn.execute(_COMMAND_POLICIES, {"t": name}).all()
        # A row the fix locks (SELECT ... FOR UPDATE) or deletes (a DELETE whose WHERE reads the row) passes the
        # SELECT policies too (docs, CREATE POLICY, "Policies Applied by Command Type"), so only a permissive
        # SELECT policy (it may show rows the others do not let it touch) or a restrictive UPDATE or DELETE one
        # (it narrows what it touches) can part what it reads from what it deletes; a restrictive SELECT policy
        # or a permissive UPDATE or DELETE one cannot.
        if not any(p.permissive == (p.command == "SELECT") for p in policies):
            return None
        role = str(conn.execute(sa.select(sa.func.current_user())).scalar())
        listed = ", ".join(f"{p.polname} ({p.command}{'' if p.permissive else ', restrictive'})" for p in policies)
        return (f"{name} has row-level security that the fix role {role!r} does not bypass, with policies for some "
                f"commands only ({listed}): the rows the fix reads (SELECT) may not be those it may lock (UPDATE) "
                "and delete (DELETE), and a batch would stop at every run; make them one policy FOR ALL, run "
                f"`ALTER ROLE \"{role}\" BYPASSRLS`, or fix as the table's owner")

    def missing_fix_privileges(self, conn: Connection, table: sa.Table) -> list[str]:
        # SELECT ... FOR UPDATE needs UPDATE on some column (column grants count); DELETE is table-wide only.
        row = conn.execute(_FIX_PRIVILEGES, {"t": conn.dialect.identifier_preparer.format_table(table)}).one()
        return [name for name, held in zip(("SELECT", "UPDATE", "DELETE"), row, strict=True) if not held]

    def replication_notes(self, conn: Connection, schemas: list[str | None]) -> list[str]:
        everything = list(conn.execute(_ALL_TABLES_PUBLICATIONS).scalars())
        by_schema = {str(p) for s in schemas for p in conn.execute(_SCHEMA_PUBLICATIONS, {"s": s}).scalars()}
        notes = []
        if everything:
            notes.append(f"publication {', '.join(everything)} is FOR ALL TABLES: the fix's archive, plan and log "
                         "tables (dupewatch_*), with every row it archives, are replicated to its subscribers, "
                         "and PostgreSQL cannot leave a table out of it (a subscriber lacking them may stop "
                         "applying changes); create them on each subscriber first, or publish the application's "
                         "tables by name")
        if by_schema:
            notes.append(f"publication {', '.join(sorted(by_schema))} publishes whole schemas: the fix's dupewatch_* "
                         "tables there and the rows it archives are replicated too; set `[fix] schema` to a "
                         "schema it does not publish")
        return notes


def _server_dump(conn: Connection, setting: str, header: str, send: Callable[[], object],
                 search_path: str | None = None) -> str:
    """The trees PostgreSQL dumps (`setting`, one of the `debug_print_*`) while `send` runs, as this session
    receives them: LOG messages whose first line is `header`, joined ("" if it sent none); under `search_path`
    when given.

    The settings that send them to this session are local to a savepoint rolled back at once, so no later
    statement of the transaction dumps anything. PostgreSQL also writes each dump to its own log."""
    driver: Any = conn.connection.driver_connection
    dumps: list[str] = []

    def keep(diagnostic: Any) -> None:
        if diagnostic.severity_nonlocalized == "LOG" and diagnostic.message_primary == header:
            dumps.append(diagnostic.message_detail or "")

    savepoint = conn.begin_nested()
    driver.add_notice_handler(keep)
    try:
        conn.execute(sa.text("SELECT set_config('client_min_messages', 'log', true), "
                             "set_config('debug_pretty_print', 'off', true), set_config(:setting, 'on', true), "
                             "set_config('search_path', COALESCE(:path, current_setting('search_path')), true)"),
                     {"setting": setting, "path": search_path})
        send()
    finally:
        driver.remove_notice_handler(keep)
        savepoint.rollback()
    return "\n".join(dumps)


def _bound_temp_files(dbapi: Any) -> None:
    """Set `TEMP_FILE_LIMIT_KB` for the session where its role may (superuser, or granted SET on the parameter):
    lower than the server's setting only, never raised; in its own transaction, committed, so that it lasts."""
    may_set = "r.rolsuper"
    if dbapi.info.server_version >= 150000:
        may_set += " OR pg_catalog.has_parameter_privilege('temp_file_limit', 'SET')"
    autocommit = dbapi.autocommit
    dbapi.autocommit = True
    try:
        dbapi.execute(f"SELECT pg_catalog.set_config('temp_file_limit', %s, false) FROM pg_catalog.pg_roles r "
                      f"WHERE r.rolname = current_user AND ({may_set}) AND (SELECT s.setting::bigint NOT BETWEEN 0 "
                      f"AND %s FROM pg_catalog.pg_settings s WHERE s.name = 'temp_file_limit')",
                      (str(TEMP_FILE_LIMIT_KB), TEMP_FILE_LIMIT_KB), prepare=False)
    finally:
        dbapi.autocommit = autocommit


def _refusal(row: Any, *, opaque_refused: bool = True) -> str | None:
    """Why a check must not call the function of a `_CALLED` row, or None; a function declared IMMUTABLE or STABLE
    whose body cannot be read is taken at its declaration when not `opaque_refused`."""
    if row.refused:
        return "it gives the check's transaction an ID"
    if row.queries:
        return ("it runs a query of its own (of the tables and views it is given), which dupewatch cannot vet: a "
                "view it reads may call anything")
    if row.sized:
        return ("an argument, not its input, sets the size of its result, and PostgreSQL does not interrupt LIKE "
                "or position() over such a string: it would run past statement_timeout and the cancel of "
                "dupewatch's deadline")
    if row.sets:
        return (f"it changes a bound of the server's resources while it runs ({row.sets}), past the bounds "
                f"dupewatch's session keeps (memory, temporary files, timeouts)")
    if row.volatility == "v" and not row.harmless:
        return (f"it is VOLATILE (it may act on data, sessions or the server); checks call IMMUTABLE and STABLE "
                f"functions, and {', '.join(HARMLESS_VOLATILE)}")
    if row.body == "opaque" and row.volatility != "v" and opaque_refused:
        declared = "IMMUTABLE" if row.volatility == "i" else "STABLE"
        return (f"it is declared {declared} but written in {row.language}, whose body PostgreSQL does not parse "
                f"before it runs, so nothing can read what it calls, and PostgreSQL does not hold a function to "
                f"its declaration (a {declared} one may call pg_terminate_backend() or take advisory locks, and "
                f"the planner runs it while planning); write it in LANGUAGE sql, or put its expression in the "
                f"check")
    return None


# A SQL function's body as the server parses it when the function runs: its arguments are the columns of a row named
# after the function (`f.arg`, or `arg` where no column of the body's own tables has that name, as PostgreSQL
# resolves them) and the parameters `$1`, `$2`... of the statement, typed as the function's, its body a LATERAL
# sub-select that sees them. A body this cannot parse (several statements, a polymorphic argument) is refused.
_FUNCTION_SOURCE = sa.text("""
SELECT p.proname, p.prosrc, ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) AS t) AS types,
       ARRAY(SELECT a.name FROM unnest(p.proargnames, p.proargmodes) AS a(name, mode)
             WHERE a.mode IS NULL OR a.mode IN ('i', 'b', 'v')) AS names,
       ARRAY(SELECT substr(c, 13) FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\\_path=%') AS search_path
FROM pg_catalog.pg_proc p WHERE p.oid = :oid
""")


def _function_body_tree(conn: Connection, oid: int) -> tuple[str, str | None]:
    """The parse tree of a SQL function's body written as text (`_FUNCTION_SOURCE`), parsed under the function's
    own `search_path` when it sets one, and None; or "" and the server's error when it cannot be parsed so."""
    row = conn.execute(_FUNCTION_SOURCE, {"oid": oid}).one()
    preparer = conn.dialect.identifier_preparer
    names = [name or f"dupewatch_arg{i}" for i, name in enumerate(row.names or [None] * len(row.types), 1)]
    body = re.sub(r"[\s;]+$", "", row.prosrc)
    if row.types:
        values = ", ".join(f"CAST(${i} AS {t})" for i, t in enumerate(row.types, 1))
        columns = ", ".join(preparer.quote(name) for name in names)
        statement = (f"SELECT FROM (VALUES ({values})) AS {preparer.quote(row.proname)} ({columns}), "
                     f"LATERAL (\n{body}\n) AS dupewatch_body")
    else:
        statement = f"SELECT FROM (\n{body}\n) AS dupewatch_body"
    driver: Any = conn.connection.driver_connection
    errors: list[str] = []

    def parse_only() -> None:
        try:
            result = driver.pgconn.prepare(b"", statement.encode(driver.info.encoding))
        except UnicodeEncodeError as exc:
            errors.append(str(exc))
            return
        if result.error_message:
            errors.append(" ".join(result.error_message.decode(driver.info.encoding, "replace").split()))

    tree = _server_dump(conn, "debug_print_rewritten", "rewritten parse tree:", parse_only,
                        row.search_path[-1] if row.search_path else None)
    return (tree, None) if tree and not errors else ("", errors[0] if errors else "PostgreSQL sent no parse tree")


_RELATIONS = sa.text("""
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY (CAST(:relations AS oid[])) ORDER BY c.oid
""")


def _atomic_body_tree(conn: Connection, stored: str) -> tuple[str, str | None]:
    """A BEGIN ATOMIC body's tree (`prosqlbody`), with the rewritten tree of every table and view it reads.

    PostgreSQL stores such a body parsed but not rewritten: a view it reads is not expanded there, nor a row-level
    security policy added, both of which the rewriter does each time the function runs (a view calling
    pg_terminate_backend() ran unseen). So the server is asked to rewrite a statement reading those relations
    (parsed only, as `rewritten_tree` does): its tree holds what their views and policies call. Returns the trees
    and None, or "" and why the server sent no tree."""
    body = Calls()
    body.read(stored)
    preparer = conn.dialect.identifier_preparer
    read = [f"{preparer.quote_schema(schema)}.{preparer.quote(name)} AS dupewatch_relation{i}"
            for i, (schema, name) in enumerate(conn.execute(_RELATIONS, {"relations": _oid_array(body.relations)}))]
    if not read:
        return stored, None
    rewritten = PostgreSQL.rewritten_tree(conn, f"SELECT FROM {', '.join(read)}")
    if not rewritten:
        return "", "PostgreSQL sent no rewritten tree of the tables and views it reads"
    return stored + "\n" + rewritten, None


def _collation_hash(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    """A text (or text array) value under a nondeterministic collation as the hash PostgreSQL computes of it in that
    collation (`hashtextextended`, `hash_array_extended`: the collation is the expression's, derived from its
    column), with two seeds, as `h0:h1` (NULL for NULL). PostgreSQL gives no sort key of such a collation, but its
    hash is of the ICU sort key, the one its hash joins and hashed GROUP BY rely on: values `=` finds equal hash
    equal, whatever their spelling. Values `=` finds apart hash apart but for a collision of both 64-bit hashes,
    which would count two groups as one: a chance of about 10^-27 among a million groups."""
    return _hashed(expr, "hash_array_extended" if isinstance(expr.type, sa.ARRAY) else "hashtextextended")


def _hashed(expr: ColumnElement[Any], function: str) -> ColumnElement[Any]:
    """`expr`'s two 64-bit hashes by `function` (a hash operator class's extended hash: values `=` finds equal hash
    equal), as `h0:h1` (NULL for NULL). An array's also by its dimensions (`array_dims`, '' for an empty one, as
    `h0:h1:[1:2]`): `hash_array_extended` hashes the elements alone, while `=` and GROUP BY find '{1,2}',
    '{{1,2}}' and '[0:1]={1,2}' apart: identified by the hash alone, such groups were one group of all their rows."""
    first, second = (sa.cast(getattr(sa.func, function)(expr, sa.literal_column(seed, sa.BigInteger())), sa.Text())
                     for seed in ("0", "1"))
    hashed = first.concat(":").concat(second)
    if function == "hash_array_extended":
        hashed = hashed.concat(":").concat(sa.func.coalesce(sa.func.array_dims(expr, type_=sa.Text()), ""))
    return sa.type_coerce(hashed, sa.Text())
