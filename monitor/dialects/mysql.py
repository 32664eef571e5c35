"""MariaDB and MySQL (PyMySQL): what is true of them for dupewatch, their differences inside.

- Read-only sessions: `SET SESSION TRANSACTION READ ONLY`; the statement timeout is MariaDB's
  `max_statement_time` (seconds) or MySQL's `max_execution_time` (milliseconds, SELECT only). PyMySQL does not
  enable multi-statements, so one call is one statement. When a detection connection returns to the pool its
  named locks are released (`RELEASE_ALL_LOCKS()`, MariaDB 10.5+ / MySQL 5.7+), then the session rolled back once:
  by the read-only block itself, under the statement deadline (`releases_before_return`), else by the pool's reset.
- A statement is cancelled with `KILL QUERY <connection id>` from a second connection (MariaDB/MySQL docs,
  "KILL"); a frozen server has the connection's socket shut instead. TCP keepalives are switched on at connect.
- Text keys compare by the column's collation: a `_ci` collation already ignores case (and, for most, accents and
  trailing spaces), so `case_insensitive` on such a column is what a plain unique index enforces.
- No row identity (no ctid/rowid), NULL sorts first ascending, no NULLS NOT DISTINCT, no partial indexes;
  expression (functional) index parts only on MySQL 8.0.13+, none on MariaDB.
"""

from __future__ import annotations

import json
import re
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.engine import URL, Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.base import (
    ALL_TABLES,
    DELETED,
    INSERTED,
    UPDATED,
    ChangeCounts,
    CheckConstraint,
    Comparison,
    Dialect,
    NamedLock,
    Refusal,
    UniqueViolation,
)
from monitor.dialects.expressions import AsStored, InCharacterSet, StoredUuid
from monitor.dialects.mysql_polling import MySQLPolling

if TYPE_CHECKING:
    from monitor.live.changes import ChangeStream

_NAME = re.compile(r"[A-Za-z0-9_]+")  # a character set's or collation's name, written into a probe


def _ask_each(conn: Connection, collations: Sequence[tuple[str, str]],
              probe: Callable[[str, str], str]) -> list[bool]:
    """The server's answer to `probe` (a boolean SQL expression) for each (character set, collation): in one
    statement, else (a probe the server refuses) one each, a refused one taken as False."""
    try:
        row = conn.exec_driver_sql("SELECT " + ", ".join(f"({probe(cs, c)})" for cs, c in collations)).one()
        return [bool(v) for v in row]
    except sa.exc.DBAPIError:
        found = []
        for cs, c in collations:
            try:
                found.append(bool(conn.exec_driver_sql(f"SELECT {probe(cs, c)}").scalar()))
            except sa.exc.DBAPIError:
                found.append(False)
        return found


def _pads(conn: Connection, collations: Sequence[tuple[str, str]]) -> list[bool]:
    """Whether each (character set, collation) finds 'x' = 'x ' (PAD SPACE), as the server compares (a refused
    probe taken for NO PAD: identified as before)."""
    return _ask_each(conn, collations, lambda cs, c: f"CONVERT('x' USING {cs}) COLLATE {c} = CONVERT('x ' USING {cs})")

# Characters of the scripts the server's character sets hold beside ASCII (at least one in each 8-bit or
# multi-byte one but ascii): 'x' is the same byte in latin1 as in utf8mb4, so a row IN that meets the column's
# bytes unconverted still finds it; 'é' is not.
_PROBED = ("é", "ß", "ą", "ğ", "\u03b1", "ж", "א", "ع", "ก", "\u0561", "ა", "日", "한")


def _row_in_agrees(conn: Connection, collations: Sequence[tuple[str, str]]) -> list[bool]:
    """Whether, for each (character set, collation), the server's row IN finds a value of it among values sent as
    the connection's text, as `=` does: MariaDB's row IN finds no utf16, utf32 or ucs2 value in
    `((0, 'x'), (1, 'y'))` though `=` finds 'x', and no latin1 'é' (nor a cp932 '日', ...) though it finds a latin1
    'x' (a look-up of known groups by their keys found none of their rows, and every such group of the check was
    counted gone). Asked of 'x' and of the first of `_PROBED` the character set holds (as the server converts it
    there and back). One statement each, else one per pair; a refused probe taken as disagreeing (the look-up by
    `=`, key by key, finds what GROUP BY groups, only slower)."""
    sets = sorted({cs for cs, _ in collations})
    held: dict[str, list[str]] = {cs: [] for cs in sets}
    pairs = [(cs, v) for cs in sets for v in _PROBED]
    try:
        row = conn.exec_driver_sql("SELECT " + ", ".join(
            f"HEX(CONVERT(CONVERT('{v}' USING {cs}) USING utf8mb4)) = HEX(CONVERT('{v}' USING utf8mb4))"
            for cs, v in pairs)).one()
        for (cs, v), kept in zip(pairs, row, strict=True):
            if kept:
                held[cs].append(v)
    except sa.exc.DBAPIError:
        pass  # 'x' alone

    def probe(cs: str, c: str) -> str:
        return " AND ".join(f"(0, CONVERT('{v}' USING {cs}) COLLATE {c}) IN ((0, '{v}'), (1, 'y'))"
                            for v in ["x", *held[cs][:1]])

    return _ask_each(conn, collations, probe)


# SQLAlchemy's MySQL reflection does not parse MariaDB's `PERIOD FOR SYSTEM_TIME (row_start, row_end)` and warns
# on every reflection of a system-versioned table; the columns themselves are reflected, and the fix asks the
# catalog about them (`Catalog.generated_columns`), so the warning would only reach the operator's terminal.
warnings.filterwarnings("ignore", r"Unknown schema content: .*PERIOD FOR SYSTEM_TIME", sa.exc.SAWarning)

# Which functions a statement calls is the server's answer, not ours. `PREPARE` parses and resolves a statement
# without running it, and with the optimizer trace on MariaDB/MySQL records each SELECT of it as the server
# expanded it (`join_preparation.expanded_query`): executable comments (`/*!...*/`) applied, names resolved, every
# call printed `name(`. (`EXPLAIN EXTENDED` is not used: it evaluates constant derived tables while it optimizes,
# `(SELECT GET_LOCK(...)) x` included, and prints the result instead of the call.) The expanded text prints some
# string literals unescaped (`_utf8mb4'\'`), so it is not lexed: every `name(` in it, inside strings and aliases
# too, must be a function known to change nothing; a stray `name(` in a string is refused, never a call missed.
# A name is printed unquoted when MariaDB may write it so (letters, digits, `_`, `$`, any character past U+007F:
# a stored function `9f` or `$f` prints `9f(`), else backquoted (`` `f-`( ``, `` `é`( ``, a backquote in it doubled);
# as any backquote may open one (a string may hold one), a backquoted name is looked for at every backquote, the
# matches overlapping (a zero-width match at each place a call may start). `db.f(`, `` db.`f`( ``: a stored function.
_NAME_CHARACTER = r"[0-9A-Za-z_$\u0080-\U0010ffff]"
_CALL = re.compile(rf"(?=(\.)?(?:`((?:[^`]|``)+)`|(?<!{_NAME_CHARACTER})({_NAME_CHARACTER}+))\s*\()")
_LOCKING = re.compile(r"(?<![A-Za-z0-9_$])(lock\s+in\s+share\s+mode|for\s+share|for\s+update)(?![A-Za-z0-9_$])",
                      re.I)
# The same four words in order anywhere in the statement's own text, whatever lies between them (comments,
# executable comments: `/*!50000LOCK*/ IN/**/SHARE MODE`): a keyword cannot be quoted or escaped, so this finds
# every spelling, and may refuse a statement that only mentions the words.
_LOCKING_WORDS = re.compile(r"(?<![A-Za-z_$])lock(?![\w$]).*?(?<![\w$])in(?![\w$]).*?(?<![\w$])share(?![\w$])"
                            r".*?(?<![\w$])mode(?![\w$])", re.I | re.S)


# A user variable assignment as the server's expansion prints it (`@x:=victim.id`, whatever it was written as:
# `@x := id`, `` @`x` := ``, `@'x' :=`): the only `:=` it prints outside a string, so one inside a string is refused
# too, never an assignment missed.
_ASSIGNMENT = re.compile(r"(?:@\S*?)?:=")

# FOR UPDATE and FOR SHARE in the statement's own text, whatever separates the two words (space, comments, the marks
# of an executable comment: `FOR/**/UPDATE`, `/*!FOR*/ UPDATE`): the expansion leaves them out of a sub-select in a
# WHERE, and only a READ ONLY transaction refuses them at PREPARE, which the fix's writable connection, where a
# `where` is vetted again and runs, is not. There a string holding the two words is refused too.
_BETWEEN_WORDS = r"(?:\s|/\*(?:[^*]|\*(?!/))*\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*M?!\d*|\*/)*"
_FOR_UPDATE_WORDS = re.compile(rf"(?<![\w$])for(?![\w$]){_BETWEEN_WORDS}(?<![\w$])(update|share)(?![\w$])",
                               re.I)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words the expanded text writes before a parenthesis that are syntax, not calls.
_SYNTAX = _names("""
select from where and or not xor in exists as on using join values over union all any some with when then else
case between like is by having distinct interval row except intersect div mod regexp rlike escape binary collate
partition order group window rows range preceding following recursive lateral limit offset
decimal dec numeric int integer signed unsigned double float real datetime nchar varchar json
index key columns path nested for ordinality match against
""")
# MariaDB/MySQL built-in functions that read and compute only. Anything else is refused: GET_LOCK,
# RELEASE_LOCK, BENCHMARK, LOAD_FILE, MASTER_POS_WAIT, NEXTVAL, SETVAL, stored functions, loadable (UDF) ones, and
# those whose result's size an argument sets, not their input (`SIZED_BY_ARGUMENT`).
HARMLESS_FUNCTIONS = _names("""
abs acos adddate addtime default aes_decrypt ascii asin atan atan2 avg bin bit_and bit_count bit_length bit_or bit_xor
cast ceil ceiling char char_length character_length charset chr coalesce coercibility collation compress crc32c
concat concat_ws connection_id conv convert convert_tz cos cot count crc32 cume_dist curdate current_date
current_role current_time current_timestamp current_user curtime database date date_add date_format date_sub
datediff day dayname dayofmonth dayofweek dayofyear decode degrees dense_rank elt encode exp extract
extractvalue field find_in_set first_value floor format format_bytes format_pico_time found_rows from_base64
from_days from_unixtime greatest group_concat hex hour if ifnull inet6_aton inet6_ntoa inet_aton inet_ntoa
insert instr is_free_lock is_ipv4 is_ipv4_compat is_ipv4_mapped is_ipv6 is_used_lock isnull json_array
json_array_append json_array_insert json_arrayagg json_compact json_contains json_contains_path json_depth
json_detailed json_equals json_exists json_extract json_insert json_keys json_length json_loose json_merge
json_merge_patch json_merge_preserve json_normalize json_object json_objectagg json_overlaps json_pretty
json_query json_quote json_remove json_replace json_search json_set json_table json_type json_unquote
json_valid json_value lag last_day last_value lcase lead least left length ln locate log log10 log2 lower
ltrim make_set makedate maketime max md5 median microsecond mid min minute mod month monthname natural_sort_key
now nth_value ntile nullif nvl nvl2 oct octet_length ord percent_rank percentile_cont percentile_disc period_add
period_diff pi position pow power quarter quote radians rand rank regexp_instr regexp_replace regexp_substr
replace reverse right round row_count row_number rtrim schema sec_to_time second sha sha1
sha2 sign sin sleep soundex sqrt std stddev stddev_pop stddev_samp str_to_date strcmp subdate substr
substring substring_index subtime sum sys_guid sysdate tan time time_format time_to_sec timediff timestamp
timestampadd timestampdiff to_base64 to_char to_days to_seconds trim truncate ucase uncompress
uncompressed_length unhex unix_timestamp upper user utc_date utc_time utc_timestamp uuid var_pop var_samp
variance version week weekday weekofyear year yearweek
""")

# A count or width sets the size of their result (REPEAT('a', 16000000), SFORMAT('{:>16000000}', ...),
# WEIGHT_STRING(x AS CHAR(n))), up to max_allowed_packet (16 MB by default); LOCATE over such strings runs without
# looking at max_statement_time or KILL QUERY (measured on MariaDB 10.11: LOCATE over REPEAT('a', 1000000) ran 38 s
# under a 1 s max_statement_time, and returned its result; over REPEAT('a', 400000) a KILL QUERY at 1 s did
# nothing, the statement returned its result at 6 s).
# A cast to BINARY(n) pads with 0x00 bytes to n, which the server's expansion writes as `char(n) charset binary`
# (`CAST(x AS BINARY(n))`, `CONVERT(x, BINARY(n))`, `CHAR(n) CHARACTER SET binary`); a cast to another CHAR(n)
# only truncates.
_PADDED_CAST = re.compile(r"\bas\s+char\s*\(\s*\d+\s*\)\s*charset\s+binary\b", re.I)
# EXPORT_SET(bits, on, off, separator, n) writes n (up to 64) copies of `on` or `off`: 64 times per nesting.
SIZED_BY_ARGUMENT = _names("repeat lpad rpad space sformat weight_string export_set")

# How long the dry run's probe of a table shape (`refused_table_shape`) waits for a metadata lock before it takes the
# server for one it cannot ask: an ALTER TABLE queued behind the planning transaction's own read would otherwise make
# the probe, and so the dry run, wait for it until a timeout.
PROBE_LOCK_WAIT = 2

# The disk an internal temporary table of a detection session's statement may take (MariaDB `tmp_disk_table_size`,
# never raised): a short statement can fill one without end (a recursive CTE repeating a 32 KB row through a join
# took 1.5 GB of disk in 5 s on MariaDB 10.11), bounded otherwise only by max_statement_time, up to 24 days. Past
# it the server stops the statement ("The table '(temporary)' is full"). MySQL has no such session setting.
TEMP_TABLE_DISK_BYTES = 8 * 1024 * 1024 * 1024
# Memory a statement over the whole table may keep one internal temporary table in (`whole_table_statement`):
# the plan's snapshot of 2M rows (two INT/VARCHAR key columns) needed 128-192 MiB.
WHOLE_TABLE_MEMORY = 256 * 1024 * 1024
# The session's sql_mode without the modes refusing dates a table may hold (`SET SESSION sql_mode = ` it, closed
# by `)` or by `, 'ANOTHER_MODE')`): see `prepare_session`. MariaDB keeps TRADITIONAL in @@sql_mode as a mode of
# its own (next to the modes it stands for, listed too), which set again brings NO_ZERO_DATE and NO_ZERO_IN_DATE
# back: it goes as well.
_COPYING_SQL_MODE = ("CONCAT_WS(',', NULLIF(TRIM(BOTH ',' FROM REPLACE(REPLACE(REPLACE(CONCAT(',', @@SESSION.sql_mode, "
                     "','), ',TRADITIONAL,', ','), ',NO_ZERO_IN_DATE,', ','), ',NO_ZERO_DATE,', ',')), ''), "
                     "'ALLOW_INVALID_DATES'")
SORT_LENGTH = 8 * 1024 * 1024  # the largest `max_sort_length` MariaDB and MySQL accept
# A sort whose key is a MEDIUMTEXT, LONGTEXT or LONGBLOB column reserves `max_sort_length` bytes per key, and needs
# room for 15 keys (MERGEBUFF2) or fails with 'Out of sort memory' (error 1038), whatever the values' lengths; the
# default `sort_buffer_size` (2 MiB) held them at a 1 KiB sort length, not at 8 MiB (measured on MariaDB 10.11:
# 32 MiB failed, 128 MiB sorted).
SORT_BUFFER = 16 * SORT_LENGTH

# The server withholds the trace of a statement (empty QUERY and TRACE, INSUFFICIENT_PRIVILEGES = 1) when its
# privilege check of the trace fails for one of the statement's tables: a table the role may read only some
# columns of, a view or stored routine it may not SHOW, and, whatever the role may do (root included), the
# sequence of every sequence function: LASTVAL(s), PREVIOUS VALUE FOR s, NEXTVAL(s), NEXT VALUE FOR s,
# SETVAL(s, n) (measured on MariaDB 10.11.19; a plain `SELECT ... FROM s` is traced). Without the trace nothing
# the statement calls can be seen, so it is refused, saying so. LASTVAL() and PREVIOUS VALUE FOR would only read:
# the value this session last took from the sequence, which in dupewatch's sessions (that never take one) is
# always NULL.
_WITHHELD = ("custom SQL is not allowed in a check: the server withholds its reading of it (its optimizer trace "
             "says insufficient privileges), so what it calls cannot be checked; MariaDB withholds it for every "
             "statement that calls a sequence function (LASTVAL(), PREVIOUS VALUE FOR, NEXTVAL(), NEXT VALUE FOR, "
             "SETVAL()), whatever the role's privileges (LASTVAL() and PREVIOUS VALUE FOR read the value this "
             "session last took from the sequence, always NULL in dupewatch's: read the sequence as a table "
             "instead, SELECT ... FROM the sequence), and for a table the role may read only some columns of, or "
             "a view or stored routine it may not SHOW")
# A stored function declared DETERMINISTIC with constant arguments is a constant to the server, and some built-in
# functions evaluate a constant argument while the statement is prepared, to size their result (`ROUND(x, f())`,
# `TRUNCATE(x, f())`, `SUBSTR(s, 1, f())`; verified on MariaDB 10.11): the PREPARE that vets a statement would run the
# function (which may KILL a session, take GET_LOCK(), SLEEP()), before its reading of the statement can say it calls
# one. A NOT DETERMINISTIC function is no constant and is not run there; one the role may not EXECUTE fails the
# PREPARE before it runs. So a statement naming a stored function the role may run (those `information_schema.ROUTINES`
# shows it) declared DETERMINISTIC, or a view whose definition names one (at any depth), is refused before it is
# prepared (`_deterministic_named`); except the server's own `sys` schema helpers (formatting, reading
# performance_schema), installed with the server under its own definer, as built-in functions. A name is matched as a
# word anywhere in the text, its comments and strings included: no spelling of a call hides the name (a quote inside a
# quoted identifier is written doubled: matched so too), and a word that is not a call only refuses more.
_DETERMINISTIC_FUNCTIONS = sa.text(
    "SELECT ROUTINE_SCHEMA AS schema_name, ROUTINE_NAME AS name"
    " FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' AND IS_DETERMINISTIC = 'YES'"
    " AND NOT (ROUTINE_SCHEMA = 'sys' AND DEFINER IN ('mariadb.sys@localhost', 'mysql.sys@localhost'))"
    " ORDER BY ROUTINE_SCHEMA, ROUTINE_NAME")
_VIEW_DEFINITIONS = sa.text(
    "SELECT TABLE_SCHEMA AS schema_name, TABLE_NAME AS name, VIEW_DEFINITION AS definition"
    " FROM information_schema.VIEWS WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema',"
    " 'sys') ORDER BY TABLE_SCHEMA, TABLE_NAME")


def _named(name: str, text: str) -> bool:
    """Whether `name` occurs in `text` as a word (not inside a longer identifier), in any letter case; a quote in
    it also as a quoted identifier writes it, doubled (`a``b`, and "a""b" under ANSI_QUOTES)."""
    spellings = {name, name.replace("`", "``"), name.replace('"', '""')}
    return any(re.search(rf"(?<![\w$]){re.escape(spelled)}(?![\w$])", text, re.I) is not None
               for spelled in spellings)


# The server finds a stored function by a name equal to the called one under its names' collation (mysql.proc.name,
# utf8mb3_general_ci), which folds accents as well as letter case: `advro_ki(...)` runs `advro_kï` (MariaDB 10.11). So
# the server compares each word of a text with the functions' names, as it would resolve a call.
_FOLDED_NAMES = sa.text(
    "SELECT DISTINCT n.v AS name"
    " FROM JSON_TABLE(:names, '$[*]' COLUMNS (v VARCHAR(64) CHARACTER SET utf8mb4 PATH '$')) AS n"
    " JOIN JSON_TABLE(:words, '$[*]' COLUMNS (v VARCHAR(1024) CHARACTER SET utf8mb4 PATH '$')) AS w"
    " ON CONVERT(n.v USING utf8mb3) COLLATE utf8mb3_general_ci = CONVERT(w.v USING utf8mb3) COLLATE utf8mb3_general_ci")


def _functions_named(conn: Connection, names: list[str], text: str) -> set[str]:
    """Those of `names` (stored functions) `text` names: as `_named` matches them, or as a word the server takes
    for the name when it resolves a call (`_FOLDED_NAMES`)."""
    found = {name for name in names if _named(name, text)}
    words = sorted(set(re.findall(r"[\w$]+", text)))
    if words and len(found) < len(set(names)):
        found |= set(conn.execute(_FOLDED_NAMES, {"names": json.dumps(sorted(set(names))),
                                                  "words": json.dumps(words)}).scalars())
    return found


def _deterministic_named(conn: Connection, statement: str) -> tuple[str, str | None] | None:
    """The first DETERMINISTIC stored function (`schema.name`) the statement names, itself or through the views it
    names (then the outermost such view's name), or None."""
    functions = conn.execute(_DETERMINISTIC_FUNCTIONS).all()
    if not functions:
        return None
    names = [function.name for function in functions]
    named = _functions_named(conn, names, statement)
    for function in functions:
        if function.name in named:
            return f"{function.schema_name}.{function.name}", None
    views = conn.execute(_VIEW_DEFINITIONS).all()
    # each view reaching a function (directly, or through views already found), until no more are found
    reaching: dict[str, str] = {}
    calls_of: dict[str, set[str]] = {}  # the functions each view's definition names
    grew = True
    while grew:
        grew = False
        for view in views:
            if view.name in reaching:
                continue
            if view.name not in calls_of:
                calls_of[view.name] = _functions_named(conn, names, view.definition or "")
            calls = calls_of[view.name]
            found = next((f"{f.schema_name}.{f.name}" for f in functions if f.name in calls),
                         None) or next((reaching[v] for v in reaching if _named(v, view.definition or "")), None)
            if found is not None:
                reaching[view.name] = found
                grew = True
    return next(((function, view) for view, function in reaching.items() if _named(view, statement)), None)


# A view the statement reads (named as a word, as `_deterministic_named` matches them; another database's view only
# with its database's name also there) is read by the server as this role may not: a SQL SECURITY DEFINER view whose
# definer is another account runs what it calls as that account, so the PREPARE that vets a statement reading it runs
# a DETERMINISTIC function the definer may run (`_deterministic_named`) that this role may not see in
# information_schema.ROUTINES; and a view whose definition this role may not read (information_schema.VIEWS shows it
# empty without SHOW VIEW) may call one it may run. Both are refused before the statement is prepared, at any depth
# (the views a readable definition names). The server withholds its reading of both anyway (measured on MariaDB
# 10.11: its optimizer trace says insufficient privileges for a statement reading a DEFINER view of another definer,
# whatever the role may SELECT and SHOW, and for one reading a view it may not SHOW), so neither refuses a check that
# ran before; its one exception, a role holding every global privilege (then it sees every routine and definition),
# is kept (`SHOW GRANTS`: ALL PRIVILEGES ON *.*).
_VIEWS_READ = sa.text(
    "SELECT TABLE_SCHEMA AS schema_name, TABLE_NAME AS name, VIEW_DEFINITION AS definition,"
    " DEFINER AS definer, SECURITY_TYPE = 'DEFINER'"
    " AND CAST(DEFINER AS BINARY) <> CAST(CURRENT_USER() AS BINARY) AS foreign_definer,"
    " TABLE_SCHEMA = DATABASE() AS here"
    " FROM information_schema.VIEWS WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema',"
    " 'sys') ORDER BY TABLE_SCHEMA, TABLE_NAME")


def _all_privileges(conn: Connection) -> bool:
    """Whether the session holds every global privilege (the server prints them as ALL PRIVILEGES ON *.*)."""
    return any(str(grant).upper().startswith("GRANT ALL PRIVILEGES ON *.* TO ")
               for grant in conn.exec_driver_sql("SHOW GRANTS").scalars())


def _view_refused(conn: Connection, statement: str, grantee: Callable[[Connection], str]) -> str | None:
    """Why a view the statement reads (`_VIEWS_READ`), itself or through the views it reads, is refused, or None."""
    views = conn.execute(_VIEWS_READ).all()
    reached = [v for v in views if _named(v.name, statement) and (v.here or _named(v.schema_name, statement))]
    through: dict[tuple[str, str], str] = {}  # each view reached through another: the outermost one named
    seen = {(v.schema_name, v.name) for v in reached}
    everything: bool | None = None
    for view in reached:  # grows: the views each readable definition names
        key = (view.schema_name, view.name)
        outer = f" (read through view {through[key]})" if key in through else ""
        if view.foreign_definer:
            if everything is None:
                everything = _all_privileges(conn)
            if not everything:
                # (a role's view: DEFINER `role@`; no one connects as a role, and a login granted it is another
                # account)
                role = view.definer.endswith("@")
                definer = f"role {view.definer[:-1]}" if role else view.definer
                remedy = "" if role else f"connect as {view.definer}, or "
                return (f"view {view.schema_name}.{view.name}{outer} is not allowed in a check: it is SQL SECURITY "
                        f"DEFINER with definer {definer}, so the server runs what it calls as {definer}, "
                        f"stored functions this role may not see included, and may run a DETERMINISTIC one while it "
                        f"only prepares the statement, before dupewatch can read what it calls (the server withholds "
                        f"its reading of such a view from another account); {remedy}have the view made SQL SECURITY "
                        f"INVOKER")
        if not view.definition:
            preparer = conn.dialect.identifier_preparer
            quoted = f"{preparer.quote_identifier(view.schema_name)}.{preparer.quote_identifier(view.name)}"
            return (f"view {view.schema_name}.{view.name}{outer} is not allowed in a check: this role may not read "
                    f"its definition (SHOW VIEW), so what it calls cannot be checked before the server prepares the "
                    f"statement, which may run a DETERMINISTIC stored function it calls; GRANT SHOW VIEW ON "
                    f"{quoted} TO {grantee(conn)}")
        for inner in views:
            inner_key = (inner.schema_name, inner.name)
            if inner_key not in seen and _named(inner.name, view.definition) and (
                    inner.schema_name == view.schema_name or _named(inner.schema_name, view.definition)):
                seen.add(inner_key)
                through[inner_key] = through.get(key, f"{view.schema_name}.{view.name}")
                reached.append(inner)
    return None


UNKNOWN_COLUMN = 1054  # ER_BAD_FIELD_ERROR: "Unknown column 'x' in 'WHERE'"
_CONFLICTS = {1213: "deadlock (MySQL error 1213)", 1205: "lock wait timeout (MySQL error 1205)"}


# Rows the session's statements wrote, trigger bodies included (MariaDB docs, "Server Status Variables":
# Handler_write, Handler_update, Handler_delete; internal temporary tables count apart, as Handler_tmp_*). InnoDB's
# foreign key actions are not counted: what they reach must be visible in the catalog (`unseen_references`).
_HANDLER_COUNTS = {"Handler_write": INSERTED, "Handler_update": UPDATED, "Handler_delete": DELETED}
_SESSION_COUNTS = sa.text("SHOW SESSION STATUS WHERE Variable_name IN ('Handler_write', 'Handler_update', "
                          "'Handler_delete')")
# A system-versioned table (MariaDB) keeps a deleted row as history: its DELETE is counted as an UPDATE (of
# row_end), and its UPDATE as an UPDATE and a write (the history row). Measured on MariaDB 10.11.
_VERSIONED = sa.text("SELECT TABLE_TYPE = 'SYSTEM VERSIONED' AS versioned, "
                     "CREATE_OPTIONS LIKE '%partitioned%' AS partitioned, "
                     "(SELECT MAX(p.PARTITION_METHOD) FROM information_schema.PARTITIONS p WHERE p.TABLE_SCHEMA = "
                     "t.TABLE_SCHEMA AND p.TABLE_NAME = t.TABLE_NAME) AS method FROM information_schema.TABLES t"
                     " WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t")
_VERSIONED_COUNTS = {DELETED: ((ALL_TABLES, UPDATED),), UPDATED: ((ALL_TABLES, UPDATED), (ALL_TABLES, INSERTED))}
# Every foreign key of the server, whoever may see its table (PROCESS privilege): MariaDB, then MySQL 8.
_ALL_FOREIGN_KEYS = ("INNODB_SYS_FOREIGN", "INNODB_FOREIGN")


def fix_lock_name(table: str) -> str:
    """The named lock of a table's fix (`monitor.fix.locks` holds it while a fix runs)."""
    return "dupewatch_fix_" + sha256(table.encode()).hexdigest()[:32]


def is_mariadb(dbapi: Any) -> bool:
    return "mariadb" in str(dbapi.get_server_info()).lower()


# The server's answers to a call of a name that is no built-in function, no loadable (UDF) one and no stored function
# of the current database: ER_SP_DOES_NOT_EXIST ("FUNCTION db.r does not exist"), and for a name no routine may have
# ER_SP_WRONG_NAME ("Incorrect routine name ' AS '": one ending in a space) and ER_TOO_LONG_IDENT (over 64
# characters). The last two answer the text between two backquoted names (`` `a` AS `(b)` ``), read as a name.
NO_SUCH_FUNCTION_ERRORS = frozenset({1305, 1458, 1059})


def _is_function(conn: Connection, name: str) -> bool:
    """Whether the server resolves an unqualified call of `name` (as the expansion prints it: plain, or backquoted) to
    a function: built in, loadable, or stored in the current database, as it resolves a call in the statement (a
    stored function of another database is printed qualified). Asked by preparing `SELECT name()`, which runs
    nothing; any answer but `NO_SUCH_FUNCTION_ERRORS` (a wrong argument count, a syntax error) is taken for a function.
    The expansion prints a common table expression's column list as `name(column, ...)` (`WITH RECURSIVE r(n) AS
    (...)`), which no function of that name makes a call."""
    conn.exec_driver_sql("SET @dupewatch_called = %s", (f"SELECT {name}()",))
    try:
        conn.exec_driver_sql("PREPARE dupewatch_called FROM @dupewatch_called")
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        return next(iter(getattr(exc.orig, "args", ())), None) not in NO_SUCH_FUNCTION_ERRORS
    finally:
        conn.exec_driver_sql("SET @dupewatch_called = NULL")
    conn.exec_driver_sql("DEALLOCATE PREPARE dupewatch_called")
    return True


# The current database's stored functions: the server calls one for an unqualified name that is none of its own
# built-in functions, also a name dupewatch knows as a harmless built-in of another server or version (FORMAT_BYTES
# is MySQL's, CRC32C MariaDB 10.8's, NVL2 not MySQL's) or as syntax (LATERAL, which MariaDB does not have).
_STORED_HERE = sa.text("SELECT ROUTINE_NAME FROM information_schema.ROUTINES"
                       " WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'FUNCTION' ORDER BY ROUTINE_NAME")


def _session_read_only(conn: Connection) -> bool:
    """Whether the session's transactions are READ ONLY (`SET SESSION TRANSACTION READ ONLY`, as detection sessions
    are): MySQL 8 names the setting `transaction_read_only`, MariaDB 10.11 `tx_read_only`."""
    try:
        return bool(conn.exec_driver_sql("SELECT @@SESSION.transaction_read_only").scalar())
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        return bool(conn.exec_driver_sql("SELECT @@SESSION.tx_read_only").scalar())


def _collect_expanded(node: Any, into: list[str], views: list[str]) -> None:
    """The trace's expanded queries into `into`, and the names (or aliases) of the views it reads into `views`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expanded_query" and isinstance(value, str):
                into.append(value)
            elif key == "view" and isinstance(value, dict):
                views.append(str(value.get("table")))
            else:
                _collect_expanded(value, into, views)
    elif isinstance(node, list):
        for value in node:
            _collect_expanded(value, into, views)


# The views whose definition, as the server stores it, holds a locking clause. A read-only transaction refuses FOR
# UPDATE but not LOCK IN SHARE MODE, and the expansion of a statement reading a view leaves the view's clause out:
# a TEMPTABLE view `... LOCK IN SHARE MODE` held shared row locks on the rows a check read, which kept the
# application's UPDATE waiting (lock wait timeout, MariaDB 10.11).
_LOCKING_VIEWS = sa.text(r"""
SELECT TABLE_NAME FROM information_schema.VIEWS
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')
  AND VIEW_DEFINITION REGEXP :locking
ORDER BY TABLE_SCHEMA, TABLE_NAME
""")
_LOCKING_CLAUSE = ("(^|[^[:alnum:]_$])(lock[[:space:]]+in[[:space:]]+share[[:space:]]+mode|for[[:space:]]+update"
                   "|for[[:space:]]+share)([^[:alnum:]_$]|$)")


EPOCH = datetime(1970, 1, 1)  # the binary log's TIMESTAMPs arrive as naive UTC datetimes
SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})



def _sha256(value: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.func.sha2(value, 256)


def _quoted_account(part: str) -> str:
    """A user or host name as an account name quotes it (`'app'`), a quote doubled."""
    return "'" + part.replace("'", "''") + "'"

class MySQL(MySQLPolling, Dialect):
    name = "mysql"
    change_stream_absent = ""
    fix_isolation_level = "READ COMMITTED"  # locking reads see the latest rows; INSERT ... SELECT takes no locks
    partial_index = False
    joined_batch_writes = True
    column_probe_runs_query = True
    transactional_ddl = False  # DDL commits the open transaction implicitly
    column_names_fold = True  # `Email` and `email` are one column, on every platform
    write_refused_markers = ("read only transaction",)

    @contextmanager
    def bounded_read(self, conn: Connection, seconds: float, lock_seconds: float) -> Iterator[None]:
        """Session variables (MariaDB's max_statement_time, MySQL's max_execution_time, lock_wait_timeout for
        metadata locks, innodb_lock_wait_timeout), set back as they were after the transaction."""
        if conn.in_transaction():  # what the pool's checkout ran
            conn.rollback()
        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
        limit = "max_statement_time" if mariadb else "max_execution_time"
        names = (limit, "lock_wait_timeout", "innodb_lock_wait_timeout")
        before = conn.execute(sa.text(", ".join(f"SELECT @@SESSION.{n}" if i == 0 else f"@@SESSION.{n}"
                                                 for i, n in enumerate(names)))).one()
        conn.commit()
        bound = seconds if mariadb else int(seconds * 1000)
        whole = max(1, int(lock_seconds))  # whole seconds
        conn.exec_driver_sql(f"SET SESSION {limit} = {bound}, lock_wait_timeout = {whole}, "
                             f"innodb_lock_wait_timeout = {whole}")
        conn.commit()
        try:
            with conn.begin():
                self.read_only_planning(conn)
                yield
        finally:
            conn.rollback()
            conn.execute(sa.text(f"SET SESSION {limit} = :a, lock_wait_timeout = :b, "
                                 "innodb_lock_wait_timeout = :c"), dict(zip("abc", before, strict=True)))
            conn.commit()

    # -- connections ----------------------------------------------------------------------------

    def list_databases(self, conn: Connection) -> list[str]:
        """`SHOW DATABASES` (only those the user has some privilege on) without the system schemas."""
        names = conn.exec_driver_sql("SHOW DATABASES").scalars()
        return sorted(str(n) for n in names if str(n).lower() not in SYSTEM_SCHEMAS)

    def connect_refusal(self, exc: BaseException) -> Refusal | None:
        """By the server's error code (in every language): too many connections (1040), the user's
        `max_user_connections` (1203 for the server's setting, 1226 for the account's); can't connect (2003),
        unknown host (2005), lost the connection (2013), the user rejected (1045: on every database alike); an
        unknown or forbidden database (1049, 1044). Any other: None (the server is asked)."""
        args: tuple[Any, ...] = tuple(getattr(getattr(exc, "orig", exc), "args", ()))
        code = args[0] if args and isinstance(args[0], int) else None
        if code in (1040, 1203, 1226):
            return "exhausted"
        if code in (1045, 2003, 2005, 2013):
            return "server"
        return "database" if code in (1044, 1049) else None

    def database_refusal(self, conn: Connection, database: str) -> str | None:
        """Whether the user sees the database (`information_schema.SCHEMATA` shows those it has some privilege
        on, as `SHOW DATABASES` does)."""
        seen = conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
                            {"name": database}).scalar()
        return None if seen else "it does not exist, or the user has no privilege on it"

    def target_url(self, url: URL, database: str, schema: str | None) -> URL:
        """A schema is a database here: a tenant schema is the database the target connects to."""
        return url.set(database=schema if schema is not None else database)

    def connect_args(self, url: URL, *, read_only: bool, timeout: float, connect_timeout: float) -> dict[str, Any]:
        """PyMySQL's `connect_timeout` bounds the TCP connect only: a server that accepts and never greets (a
        listener that never accepts, a frozen server) would hang the handshake's reads for good. `read_timeout`
        bounds them too, until `prepare_session` lifts it (statements have their own deadline)."""
        return {"connect_timeout": connect_timeout, "read_timeout": connect_timeout, "charset": "utf8mb4"}

    def prepare_session(self, dbapi: Any, *, read_only: bool, timeout: float, client_deadline: float) -> None:
        # The handshake's bound (`connect_args`) lifted for a detection session, whose statements have their own
        # deadline (`monitor.db`); a fix's session keeps one, past the server's own timeout: a batch whose answer
        # never comes (server hung, network partition) fails there, rolled back, instead of waiting for good
        # (PyMySQL bounds each socket read and write; the server ends a statement at `timeout` itself).
        # The server answers a statement it ended at `timeout` only once it has undone what the statement changed,
        # which may take about as long again (measured on 10.11: +1.85 s at a 3 s limit): a bound at the deadline
        # alone made a batch cut by the statement timeout a lost connection, not a timeout to retry smaller.
        bound = None if read_only else client_deadline + timeout
        dbapi._read_timeout = dbapi._write_timeout = bound
        sock = getattr(dbapi, "_sock", None)  # PyMySQL has no keepalive option
        if isinstance(sock, socket.socket) and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # A writing session creates dupewatch's own tables (archive, plan, logs, records): in InnoDB whatever the
        # server's default engine, so that a rolled-back batch rolls back their rows too (a MyISAM archive kept
        # the copies of a rolled-back batch, and undo then refused forever: "the archive holds 2 of its 1 rows").
        # Both copy rows (a plan's snapshot, its internal temporary tables; the archive) and a writing one writes
        # them back (undo) as they were: a date the table holds though the session's mode refuses it (`2020-02-31`
        # under ALLOW_INVALID_DATES, `0000-00-00` without MySQL 8's NO_ZERO_DATE, as legacy applications wrote them)
        # is copied as it is, not refused ("Incorrect date value"); a 0 in an AUTO_INCREMENT column (a row loaded by
        # a mysqldump, which sets NO_AUTO_VALUE_ON_ZERO for that reason) is inserted as 0, not as the next value.
        # A detection session reads consistently, never locking: under a server's SERIALIZABLE default InnoDB adds
        # LOCK IN SHARE MODE to every read of a transaction (READ ONLY too), and a check's scan held shared locks on
        # the rows it read, the application's UPDATE of one waiting (`Lock wait timeout exceeded`).
        statements = ["SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"] if read_only else [
            "SET SESSION default_storage_engine = InnoDB"]
        statements.append(f"SET SESSION sql_mode = {_COPYING_SQL_MODE}" + (
            ")" if read_only else ", 'NO_AUTO_VALUE_ON_ZERO')"))
        if is_mariadb(dbapi):
            statements.append(f"SET SESSION max_statement_time = {timeout:.3f}")
            if read_only:
                # CAST: LEAST() of the unsigned maximum (the default) and a number is set as 1024 bytes.
                statements.append(f"SET SESSION tmp_disk_table_size = CAST(LEAST(@@tmp_disk_table_size, "
                                  f"{TEMP_TABLE_DISK_BYTES}) AS UNSIGNED)")
        else:
            statements.append(f"SET SESSION max_execution_time = {int(timeout * 1000)}")
        cursor = dbapi.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
        dbapi.commit()

    pings_by_protocol = True  # COM_PING: 0.06 ms against 0.24 ms for SELECT 1 through SQLAlchemy (PyMySQL)

    # A read-only block ends its session with `DO RELEASE_ALL_LOCKS()` then one `ROLLBACK` (PyMySQL sends it
    # whether or not a transaction is open), both under the statement deadline: four commands a checkout (COM_PING,
    # the statement, these two) where the block's rollback, the release and the pool's rollback made five.
    releases_before_return = True

    def release_session(self, dbapi: Any) -> None:
        cursor = dbapi.cursor()
        try:
            cursor.execute("DO RELEASE_ALL_LOCKS()")  # no result set to send and decode: 0.039 ms CPU, SELECT 0.058
        finally:
            cursor.close()

    def reset_session(self, dbapi: Any, *, rolled_back_after: bool) -> None:
        self.release_session(dbapi)
        if not rolled_back_after:  # PyMySQL sends ROLLBACK whether or not a transaction is open: once is enough
            dbapi.rollback()

    def reflected_column_name(self, name: str) -> str:
        """SQLAlchemy's MySQL reflection reads names from SHOW CREATE TABLE and leaves a backtick in a column name
        doubled (`a``b`), so every statement naming that column would fail; use the real name."""
        return name.replace("``", "`")

    def change_stream(self, database: str, url: URL) -> ChangeStream:
        from monitor.live.mysql import BinlogStream

        return BinlogStream(database, url, self)

    def cancel(self, dbapi: Any, url: URL, timeout: float) -> None:
        import pymysql

        args = url.translate_connect_args(username="user", database="database")
        killer = pymysql.connect(**args, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
        try:
            with killer.cursor() as cursor:
                cursor.execute("KILL QUERY %s", (int(dbapi.thread_id()),))
        finally:
            killer.close()

    def socket_fileno(self, dbapi: Any) -> int | None:
        sock = getattr(dbapi, "_sock", None)
        return sock.fileno() if isinstance(sock, socket.socket) else None

    def conflict(self, error: BaseException) -> str | None:
        """ER_LOCK_DEADLOCK (1213: InnoDB rolled the transaction back) and ER_LOCK_WAIT_TIMEOUT (1205: by default
        only the statement was rolled back; the fix rolls back the whole batch before trying again)."""
        import pymysql

        code = error.args[0] if isinstance(error, pymysql.err.MySQLError) and error.args else None
        return _CONFLICTS.get(code) if isinstance(code, int) else None

    def privilege_refusal(self, error: BaseException) -> str | None:
        """ER_TABLEACCESS_DENIED_ERROR (1142), ER_COLUMNACCESS_DENIED_ERROR (1143), ER_DBACCESS_DENIED_ERROR (1044),
        ER_SPECIFIC_ACCESS_DENIED_ERROR (1227), ER_PROCACCESS_DENIED_ERROR (1370)."""
        import pymysql

        code = error.args[0] if isinstance(error, pymysql.err.MySQLError) and error.args else None
        return f"error {code}" if code in (1142, 1143, 1044, 1227, 1370) else None

    def row_size_refusal(self, error: BaseException) -> bool:
        """ER_TOO_BIG_ROWSIZE (1118): a table's columns, not counting BLOB and TEXT, may hold more than 65,535
        bytes (InnoDB's page-size limit, under innodb_strict_mode, is refused with the same code)."""
        import pymysql

        return isinstance(error, pymysql.err.MySQLError) and bool(error.args) and error.args[0] == 1118

    def refused_table_shape(self, conn: Connection, select: str) -> str | None:
        """The server's own answer: a TEMPORARY InnoDB table of that shape (the archive's engine), created (no
        implicit commit, visible to no other session) and dropped at once, on a session of its own (the planning
        transaction is READ ONLY, where MariaDB refuses even a temporary table). The row-size limit is the SQL
        layer's for every engine, and InnoDB strict mode's. Where the server cannot be asked without leaving a trace
        or a wait, None (the fix itself then refuses in the same words): a role without CREATE TEMPORARY TABLES; a
        binary log that would record the two statements (a format other than ROW, and a role that may not switch
        its session's logging off), which replicas would run; a metadata lock the session would wait for (an ALTER
        TABLE queued behind the planning transaction's own read: `PROBE_LOCK_WAIT` seconds); any other refusal."""
        with conn.engine.connect() as probe:
            try:
                logged = probe.exec_driver_sql("SELECT @@log_bin AND @@binlog_format <> 'ROW'").scalar()
                if logged:
                    probe.exec_driver_sql("SET SESSION sql_log_bin = 0")
                probe.exec_driver_sql(f"SET SESSION lock_wait_timeout = {PROBE_LOCK_WAIT}")
                probe.exec_driver_sql(f"CREATE TEMPORARY TABLE dupewatch_shape_probe ENGINE=InnoDB AS {select}")
            except sa.exc.DBAPIError as exc:
                error = exc.orig or exc
                if self.row_size_refusal(error):
                    return str(error.args[-1] if error.args else error)
                return None
            finally:
                probe.rollback()
            probe.exec_driver_sql("DROP TEMPORARY TABLE dupewatch_shape_probe")
        return None

    def grantee(self, conn: Connection) -> str:
        """CURRENT_USER() is `name@host`, the account the server matched (`'app'@'%'`), not the client's host."""
        account = str(conn.execute(sa.text("SELECT CURRENT_USER()")).scalar())
        name, _, host = account.rpartition("@")
        return f"{_quoted_account(name)}@{_quoted_account(host)}"

    def create_refusal(self, conn: Connection, schema: str | None) -> str | None:
        """The server's own answer: PREPARE of a CREATE TABLE in the database checks the CREATE privilege (and
        creates nothing, nor commits the open transaction, as executing DDL would); grants on a pattern
        (`app\\_%`.*), global ones and roles are the server's to match, not read from the grant tables. In the
        dry run's read-only transaction the PREPARE is refused as a write, after the privilege check (measured on
        MariaDB 10.11: a role without CREATE gets error 1142 there, one with it 1792), so that refusal says the
        privilege is there."""
        database = schema or conn.execute(sa.text("SELECT DATABASE()")).scalar()
        if database is None:
            return None
        preparer = conn.dialect.identifier_preparer
        probe = f"CREATE TABLE {preparer.quote_schema(str(database))}.dupewatch_create_probe (a INT)"
        try:
            conn.execute(sa.text("PREPARE dupewatch_create_probe FROM :probe"), {"probe": probe})
        except sa.exc.DBAPIError as exc:
            code = self.privilege_refusal(exc.orig or exc)
            if code is None and self.is_write_refused(str(exc.orig or exc)):
                return None
            if code is None:
                raise
            return (f"the fix role may not CREATE in database {preparer.quote_schema(str(database))}, where each fix "
                    f"creates its plan table (and its archive and records, dupewatch_*) ({code}): GRANT CREATE ON "
                    f"{preparer.quote_schema(str(database))}.* TO {self.grantee(conn)}, or set [fix] schema to a "
                    "database it may create in")
        conn.execute(sa.text("DEALLOCATE PREPARE dupewatch_create_probe"))
        return None

    def row_digest(self, columns: Sequence[ColumnElement[Any]]) -> ColumnElement[Any] | None:
        """SHA-256 of each value (its bytes; 'N' for NULL, which no digest spells), joined, and SHA-256 of that: a
        fixed size per column, so a wide row's digest stays far below `max_allowed_packet` (past it CONCAT_WS is
        NULL). Not MD5(): MySQL in FIPS mode returns NULL for it (9.x moved it to a component), and a NULL digest
        compares equal to nothing, so a rewriting trigger would pass unseen; SHA2() is FIPS-approved everywhere.
        The outer digest is cut to its first 32 hex digits (128 bits, MD5's size): a repoint log created by a fix
        that logged MD5 has a 32-character digest column, and resuming that fix logs into it."""
        if not columns:
            return None
        return sa.func.left(_sha256(sa.func.concat_ws(",", *[sa.func.coalesce(_sha256(c), "N") for c in columns])),
                            32)

    def is_timeout(self, message: str) -> bool:
        return "max_statement_time" in message or "maximum statement execution time" in message.lower()

    def refused_call(self, conn: Connection, statement: str) -> str | None:
        """The first call in the server's expansion of `statement` that is not in `HARMLESS_FUNCTIONS`, or a
        shared row lock (FOR UPDATE is refused by the read-only transaction itself, already at PREPARE); or, before
        any statement is prepared, a stored function the server may run while it prepares one
        (`_deterministic_named`), or a view it would read as this role may not (`_view_refused`)."""
        named = _deterministic_named(conn, statement)
        if named is not None:
            function, view = named
            through = f" (through view {view})" if view else ""
            return (f"stored function {function}(){through} is not allowed in a check: it is declared DETERMINISTIC, "
                    f"so the server may run it while it only prepares the statement (ROUND(x, f()), SUBSTR(s, 1, "
                    f"f())), before dupewatch can read what the statement calls; leave it out of the check, or "
                    f"connect with a role that may SELECT but not EXECUTE stored functions")
        refused_view = _view_refused(conn, statement, self.grantee)
        if refused_view is not None:
            return refused_view
        queries, withheld, views = self.expanded_queries(conn, statement)
        if withheld:
            return _WITHHELD
        if not queries:
            return ("custom SQL is not allowed in a check: the server's reading of it is missing or larger than its "
                    "optimizer trace keeps (optimizer_trace_max_mem_size)")
        expanded = "\n".join(queries)
        # The expansion prints LOCK IN SHARE MODE in a derived table but not in a WHERE sub-select, so the
        # statement's own words are read too.
        locking = _LOCKING.search(expanded)
        # FOR UPDATE/SHARE the PREPARE of a read-only session would have refused; on a writable one (the fix's, where
        # a `where` is vetted again) the words decide
        written = _FOR_UPDATE_WORDS.search(statement) if not _session_read_only(conn) else None
        if locking or written or _LOCKING_WORDS.search(statement):
            clause = " ".join(locking.group(1).split()).upper() if locking \
                else f"FOR {written.group(1).upper()}" if written else "LOCK IN SHARE MODE"
            return f"{clause} is not allowed in a check: it locks the rows it reads"
        if views:
            for name in conn.execute(_LOCKING_VIEWS, {"locking": _LOCKING_CLAUSE}).scalars():
                if re.search(rf"(?<![\w$])`?{re.escape(name)}`?(?![\w$])", expanded, re.I):
                    return (f"view {name} is not allowed in a check: its definition locks the rows it reads (LOCK "
                            f"IN SHARE MODE, FOR UPDATE), which a read-only transaction does not stop")
        assigned = _ASSIGNMENT.search(expanded)
        if assigned:
            return (f"{assigned.group(0)} (a user variable assignment) is not allowed in a check: the variable stays "
                    f"set in the session after the check, for every later statement on its pooled connection (the "
                    f"fix's among them); use the value where it is computed")
        if _PADDED_CAST.search(expanded):
            return ("CAST(... AS BINARY(n)) is not allowed in a check: an argument, not its input, sets the size of "
                    "its result (it pads to n bytes), and the server does not interrupt LOCATE over such a string: "
                    "it would run past max_statement_time and the KILL QUERY of dupewatch's deadline")
        known: set[str] = set()  # the names read as syntax or as a harmless built-in function
        functions: dict[str, bool] = {}  # the server's answer for each other name (`_is_function`)
        for match in _CALL.finditer(expanded):
            qualifier, quoted, plain = match.groups()
            name = plain if plain is not None else quoted.replace("``", "`")
            if qualifier:
                return (f"{name}() is not allowed in a check: it is a stored function, and the server does not say "
                        f"what a stored function calls")
            if plain is not None and plain.lower() in SIZED_BY_ARGUMENT:
                return (f"{name}() is not allowed in a check: an argument, not its input, sets the size of its "
                        f"result, and the server does not interrupt LOCATE over such a string: it would run "
                        f"past max_statement_time and the KILL QUERY of dupewatch's deadline")
            if plain is not None and (plain.lower() in _SYNTAX or plain.lower() in HARMLESS_FUNCTIONS):
                known.add(plain)
                continue
            printed = plain if plain is not None else f"`{quoted}`"
            if printed not in functions:
                functions[printed] = _is_function(conn, printed)
            if functions[printed]:
                return (f"{name}() is not allowed in a check: it is not one of the built-in functions known to "
                        f"change nothing (locks, waits, files, sequences and stored functions are refused)")
        stored = list(conn.execute(_STORED_HERE).scalars()) if known else []
        shadowing = sorted(_functions_named(conn, stored, " ".join(sorted(known)))) if stored else []
        if shadowing:
            return (f"{shadowing[0]}() is not allowed in a check: the database has a stored function of that name, "
                    f"which the server calls in place of a built-in function it does not have (FORMAT_BYTES is "
                    f"MySQL's, CRC32C MariaDB 10.8's), and it does not say what a stored function calls; rename the "
                    f"stored function")
        return None

    def unknown_column(self, conn: Connection, statement: str) -> str | None:
        """The server's error 1054 (unknown column) when it prepares `statement` with ANSI_QUOTES on, so that
        `"staus"` is the column it names and not the string 'staus'. The session's sql_mode is restored."""
        mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one()
        conn.exec_driver_sql("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'ANSI_QUOTES')")
        try:
            conn.exec_driver_sql("SET @dupewatch_vetted = %s", (statement,))
            conn.exec_driver_sql("PREPARE dupewatch_vetted FROM @dupewatch_vetted")
            conn.exec_driver_sql("DEALLOCATE PREPARE dupewatch_vetted")
        except sa.exc.DBAPIError as exc:
            args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
            if len(args) > 1 and args[0] == UNKNOWN_COLUMN:
                return f"{args[1]} (a double-quoted name is a column here: write a string in single quotes)"
            return None  # not a name: running the statement reports it as the server words it
        finally:
            conn.exec_driver_sql("SET SESSION sql_mode = %s", (mode,))
            conn.exec_driver_sql("SET @dupewatch_vetted = NULL")
        return None

    @staticmethod
    def expanded_queries(conn: Connection, statement: str) -> tuple[list[str], bool, list[str]]:
        """Each SELECT of `statement` as the server expanded it while preparing it (prepared, not run), [] when
        the trace was cut short; whether the server withheld the trace (`INSUFFICIENT_PRIVILEGES`, see
        `_WITHHELD`); and the names or aliases of the views it reads."""
        conn.exec_driver_sql("SET @dupewatch_vetted = %s", (statement,))
        conn.exec_driver_sql("SET SESSION optimizer_trace = 'enabled=on'")
        try:
            conn.exec_driver_sql("PREPARE dupewatch_vetted FROM @dupewatch_vetted")
            conn.exec_driver_sql("DEALLOCATE PREPARE dupewatch_vetted")
            trace, missing, withheld = conn.exec_driver_sql(
                "SELECT TRACE, MISSING_BYTES_BEYOND_MAX_MEM_SIZE, INSUFFICIENT_PRIVILEGES "
                "FROM information_schema.OPTIMIZER_TRACE").one()
        finally:
            conn.exec_driver_sql("SET SESSION optimizer_trace = 'enabled=off'")
            conn.exec_driver_sql("SET @dupewatch_vetted = NULL")
        queries: list[str] = []
        views: list[str] = []
        if trace and not missing and not withheld:
            _collect_expanded(json.loads(trace), queries, views)
        return queries, bool(withheld), views

    # -- fixes ----------------------------------------------------------------------------------

    @contextmanager
    def whole_table_statement(self, conn: Connection) -> Iterator[None]:
        """The plan's window functions over the whole table (the snapshot, the dry run's preview queries) run in
        internal temporary tables, which spill to Aria files in `tmpdir` beyond `tmp_table_size` and
        `max_heap_table_size` (16 MiB by default): the 2M-row snapshot took 12-24 s there against 3.5-4 s in memory
        (MariaDB 10.11, measured), and any mariadbd starting with the same tmpdir deletes those files under the
        running statement. Inside this context the session may keep up to `WHOLE_TABLE_MEMORY` per temporary
        table; a larger table still spills, as before.

        A window's PARTITION BY compares a TEXT or BLOB value by its first `max_sort_length` bytes only (1024 by
        default; GROUP BY and `=` compare whole values): two long texts alike in their first KiB were one group of
        the plan. Inside this context the session compares up to `SORT_LENGTH` bytes (the server's maximum), and its
        `sort_buffer_size` is at least `SORT_BUFFER`, which a sort of such keys needs."""
        before = conn.exec_driver_sql(
            "SELECT @@SESSION.tmp_table_size, @@SESSION.max_heap_table_size, @@SESSION.max_sort_length, "
            "@@SESSION.sort_buffer_size").one()
        restore = {"t": int(before[0]), "h": int(before[1]), "s": int(before[2]), "b": int(before[3])}
        conn.execute(sa.text("SET SESSION tmp_table_size = GREATEST(:t, :m), max_heap_table_size = GREATEST(:h, :m), "
                             "max_sort_length = GREATEST(:s, :l), sort_buffer_size = GREATEST(:b, :sb)"),
                     {**restore, "m": WHOLE_TABLE_MEMORY, "l": SORT_LENGTH, "sb": SORT_BUFFER})
        try:
            yield
        finally:
            if not conn.invalidated:
                conn.execute(sa.text("SET SESSION tmp_table_size = :t, max_heap_table_size = :h, "
                                     "max_sort_length = :s, sort_buffer_size = :b"), restore)

    def server_identity(self, conn: Connection) -> list[str]:
        """MySQL's `server_uuid`, else (MariaDB has none) the server's host name and port as it reports them;
        and the default database."""
        uuid = conn.exec_driver_sql("SHOW GLOBAL VARIABLES LIKE 'server_uuid'").first()
        if uuid is not None and uuid[1]:
            server = ["server_uuid", str(uuid[1])]
        else:
            host, port = conn.exec_driver_sql("SELECT @@hostname, @@port").one()
            server = ["host", str(host), str(port)]
        return [*server, str(conn.exec_driver_sql("SELECT DATABASE()").scalar() or "")]

    def as_stored(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A `TIME` as the `timedelta` PyMySQL returns and binds back exactly: SQLAlchemy makes it a time of day,
        which has no `-838:59:59` or `25:00:00`. A `SET` as the text the server returns (`a,b`, its members in
        definition order): SQLAlchemy makes it a Python set, bound back as its members in any order (`b,a`),
        which `=` compares as other text."""
        if isinstance(expr.type, sa.Time | mysql_types.SET):
            return sa.type_coerce(expr, AsStored())
        return super().as_stored(expr)

    def stream_value(self, column: sa.Column[Any], value: Any) -> ColumnElement[Any]:
        """The binary log holds a `TIMESTAMP` as seconds since the epoch, which python-mysql-replication gives as a
        naive UTC datetime: bound as that instant (`FROM_UNIXTIME`, in the session's time zone as the column is
        read), not as a local time of the session's zone. A `BIT` comes as the text of its bits (`'101'`, which
        `=` would compare as the number 101): bound as its number. A `BINARY(n)` comes without the zero bytes
        that pad it to n (the log strips them; one of zero bytes only comes as the empty text): bound padded, as
        stored. A MariaDB `UUID` comes as its 16 stored bytes, stripped the same way: padded, and converted to the
        column's type by the server, which reads them as it stores them (`StoredUuid`)."""
        if isinstance(column.type, mysql_types.BIT) and isinstance(value, str):  # its bits, '101'
            return sa.literal(int(value, 2) if value else 0, sa.BigInteger())
        if isinstance(column.type, sa.BINARY | sa.Uuid) and value == "":
            value = b""
        if isinstance(column.type, sa.BINARY) and isinstance(value, bytes) and column.type.length:
            return super().stream_value(column, value.ljust(column.type.length, b"\0"))
        if isinstance(column.type, sa.Uuid) and isinstance(value, bytes):
            return sa.type_coerce(StoredUuid(value.ljust(16, b"\0")), column.type)
        if isinstance(column.type, sa.TIMESTAMP) and isinstance(value, datetime) and value.tzinfo is None:
            since = value - EPOCH
            if not since:  # the zero TIMESTAMP, logged as 0 seconds: an instant no TIMESTAMP holds (its first is 1 s)
                return sa.literal("0000-00-00 00:00:00", column.type)
            seconds = Decimal(since.days * 86400 + since.seconds) + Decimal(since.microseconds).scaleb(-6)
            return sa.func.from_unixtime(sa.literal(seconds, sa.Numeric(20, 6)), type_=column.type)
        return super().stream_value(column, value)

    def stream_values_plain(self, column: sa.Column[Any]) -> bool:
        """Not a `BIT`, `BINARY(n)`, `UUID` or `TIMESTAMP`: the binary log gives those otherwise than stored
        (`stream_value`)."""
        return not isinstance(column.type, mysql_types.BIT | sa.BINARY | sa.Uuid | sa.TIMESTAMP)

    def named_lock(self, key: str) -> NamedLock:
        name = fix_lock_name(key)
        return NamedLock(sa.text("SELECT GET_LOCK(:n, 0)").bindparams(n=name),
                         sa.text("SELECT RELEASE_LOCK(:n)").bindparams(n=name), f"lock {name}")

    def exact(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """Text as stored: by collation `a` and `A ` are equal, yet such rows are not identical."""
        if isinstance(column.type, sa.String):
            return sa.cast(column, sa.LargeBinary)
        return column

    def expression_index(self, version: tuple[int, ...], server: str = "") -> bool:
        if "mariadb" in server.lower():
            return False  # no functional key parts (a generated column would change the table's shape)
        return version >= (8, 0, 13)

    def column_collations(self, conn: Connection, table: sa.Table) -> dict[str, str | None]:
        """From information_schema.COLUMNS: a column that inherits the table's collation has none in reflection."""
        query = sa.text("SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table")
        rows = conn.execute(query, {"schema": table.schema, "table": table.name})
        return {str(name): (str(collation) if collation else None) for name, collation in rows}

    def counter_identity(self, table: sa.Table) -> sa.Column[Any] | None:
        """The AUTO_INCREMENT column (reflection marks it `autoincrement=True`, from information_schema's EXTRA;
        a table has at most one, NOT NULL, leading some index)."""
        return next((c for c in table.columns if c.autoincrement is True), None)

    def non_transactional_engine(self, conn: Connection, table: sa.Table) -> str | None:
        """information_schema.ENGINES says which engines support transactions (InnoDB: YES; MyISAM, Aria,
        MEMORY, CSV, ARCHIVE: NO). A partitioned table reports its partitions' engine."""
        query = sa.text("SELECT t.ENGINE FROM information_schema.TABLES t JOIN information_schema.ENGINES e "
                        "ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) "
                        "AND t.TABLE_NAME = :table AND e.TRANSACTIONS <> 'YES'")
        engine = conn.execute(query, {"schema": table.schema, "table": table.name}).scalar()
        return str(engine) if engine else None

    def unrollable_tables(self, conn: Connection, limit: int = 3) -> tuple[list[str], int]:
        """information_schema.TABLES joined with ENGINES.TRANSACTIONS = 'NO' (MyISAM, Aria, MEMORY, CSV...), in
        every schema but the system ones: MariaDB keeps no catalog of the tables a trigger body writes, so any of
        them may be one. information_schema lists only the tables the role has a privilege on."""
        rows = conn.execute(sa.text(
            "SELECT t.TABLE_SCHEMA AS s, t.TABLE_NAME AS n, t.ENGINE AS e FROM information_schema.TABLES t "
            "JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE WHERE e.TRANSACTIONS = 'NO' "
            "AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
            "AND t.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
            "ORDER BY t.TABLE_SCHEMA, t.TABLE_NAME")).all()
        return [f"{r.s}.{r.n} ({r.e})" for r in rows[:limit]], len(rows)

    def rollback_kept(self, conn: Connection) -> bool:
        """ER_WARNING_NOT_COMPLETE_ROLLBACK (1196, "Some non-transactional changed tables couldn't be rolled
        back"), the ROLLBACK's own warning."""
        try:
            return any(int(r[1]) == 1196 for r in conn.exec_driver_sql("SHOW WARNINGS"))
        except sa.exc.DBAPIError:
            return False

    def violated_check(self, exc: BaseException) -> str | None:
        """ER_CONSTRAINT_FAILED (4025): `CONSTRAINT `no_self` failed for `db`.`friendship``, which the driver
        raises as an OperationalError, not an IntegrityError."""
        args = getattr(getattr(exc, "orig", None) or exc, "args", ())
        if not args or args[0] != 4025:
            return None
        match = re.search(r"CONSTRAINT [`]?((?:[^`]|``)+?)[`]? failed for (.+)$", str(args[-1]), re.S)
        if not match:
            return "a CHECK constraint"
        return f"CHECK constraint {match.group(1).replace('``', '`')} of {match.group(2).replace('`', '').strip()}"

    def check_constraints(self, conn: Connection, table: sa.Table) -> list[CheckConstraint]:
        """information_schema.CHECK_CONSTRAINTS.CHECK_CLAUSE, the condition as the server writes it back: MariaDB
        lists a table's constraints and its columns' (`a INT CHECK (a > 0)`, named after the column) by TABLE_NAME;
        MySQL 8 names the table in TABLE_CONSTRAINTS only, which also says whether it is ENFORCED."""
        if getattr(conn.dialect, "is_mariadb", False):
            query = sa.text("SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                            "WHERE CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table "
                            "ORDER BY CONSTRAINT_NAME")
        else:
            query = sa.text("SELECT cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS tc "
                            "JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = "
                            "tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
                            "WHERE tc.CONSTRAINT_TYPE = 'CHECK' AND tc.ENFORCED = 'YES' "
                            "AND tc.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND tc.TABLE_NAME = :table "
                            "ORDER BY cc.CONSTRAINT_NAME")
        rows = conn.execute(query, {"schema": table.schema, "table": table.name})
        return [CheckConstraint(str(name), str(clause)) for name, clause in rows]

    def declared_types(self, conn: Connection, table: sa.Table) -> dict[str, str]:
        """information_schema.COLUMNS.COLUMN_TYPE (`point`, `inet6`, `uuid`: types SQLAlchemy does not reflect)."""
        query = sa.text("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table")
        rows = conn.execute(query, {"schema": table.schema, "table": table.name})
        return {str(name): str(kind) for name, kind in rows}

    def compared_apart(self, conn: Connection, table: sa.Table) -> dict[str, Comparison]:
        """The text columns whose collation pads with spaces ('x' = 'x  ': PAD SPACE, every collation but the
        `_nopad_` ones on MariaDB and MySQL 8's `_0900_` ones), as the server compares under each collation
        (information_schema.COLLATIONS has no PAD_ATTRIBUTE on MariaDB 10.11): `WEIGHT_STRING` keeps trailing
        spaces on MariaDB, so a group identified by it depended on the spelling GROUP BY returned."""
        query = sa.text("SELECT COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table "
                        "AND COLLATION_NAME IS NOT NULL")
        columns = [(str(n), str(cs), str(c)) for n, cs, c in
                   conn.execute(query, {"schema": table.schema, "table": table.name})]
        collations = sorted({(cs, c) for _, cs, c in columns if _NAME.fullmatch(cs) and _NAME.fullmatch(c)})
        if not collations:
            return {}
        padded = {pair for pair, pads in zip(collations, _pads(conn, collations), strict=True) if pads}
        apart = {pair for pair, agrees in zip(collations, _row_in_agrees(conn, collations), strict=True)
                 if not agrees}
        return {name: Comparison("pad space" if (cs, c) in padded else "character set", name=c,
                                 row_in=(cs, c) not in apart, character_set=cs if (cs, c) in apart else "")
                for name, cs, c in columns if (cs, c) in padded or (cs, c) in apart}

    def row_in_operand(self, value: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """In the column's character set and collation (`InCharacterSet`) where the server's row IN does not find
        the column's values as `=` does (`_row_in_agrees`)."""
        if comparison is None or comparison.row_in or not comparison.character_set:
            return value
        return InCharacterSet(value, comparison.character_set, comparison.name)

    def group_identity(self, expr: ColumnElement[Any], comparison: Comparison | None = None) -> ColumnElement[Any]:
        """A text value's sort key under its collation (`WEIGHT_STRING`): 'Ann' and 'ann' under a `_ci`
        collation are one group, as GROUP BY and `=` say, though Python sees two spellings; under a collation
        that pads with spaces (`compared_apart`), of the value without its trailing spaces ('x' = 'x ', which
        `WEIGHT_STRING` tells apart on MariaDB). A `BIT` as its number (`k + 0`): read through a subquery the
        server returns it as the text of that number, which the BIT type reads as bytes (192 as 3225906), so a
        group found that way was another than the known one."""
        if isinstance(expr.type, mysql_types.BIT):
            return sa.type_coerce(expr, sa.BigInteger()) + 0
        if isinstance(expr.type, sa.String) and not isinstance(expr.type, sa.Enum):
            if comparison is not None and comparison.kind == "pad space":
                expr = sa.func.rtrim(expr, type_=expr.type)  # spaces only, as the padding compares
            return sa.func.weight_string(expr, type_=sa.LargeBinary())
        return expr

    def plain_index_enforces_case_insensitive(self, collation: str | None) -> bool:
        """`*_ci` collations compare case-insensitively (MariaDB docs, "Setting Character Sets and
        Collations"); `_cs`, `_bin` and binary ones do not. None (unknown) is not assumed to."""
        return bool(collation) and str(collation).lower().endswith("_ci")

    def violated_unique(self, exc: sa.exc.DBAPIError) -> UniqueViolation:
        """ER_DUP_ENTRY: `Duplicate entry 'x' for key 'users_email_key'` (MySQL 8: `'users.users_email_key'`)."""
        match = re.search(r"^Duplicate entry .* for key '(?:[^'.]*\.)?([^']+)'\s*$",
                          str(getattr(exc.orig, "args", ("", ""))[-1]), re.S)
        return UniqueViolation(match.group(1) if match else None)

    def enforces_foreign_keys(self, conn: Connection) -> bool:
        """`@@foreign_key_checks`, which a session may turn off."""
        return bool(conn.exec_driver_sql("SELECT @@foreign_key_checks").scalar())

    def violated_foreign_key(self, exc: sa.exc.DBAPIError) -> str | None:
        """ER_ROW_IS_REFERENCED_2 (1451, a referred value changed or deleted) and ER_NO_REFERENCED_ROW_2 (1452, a
        referring value with no row): `... a foreign key constraint fails (`db`.`t`, CONSTRAINT `fk` FOREIGN KEY
        ...)`; 1216/1217, their forms without the details, name none."""
        args = getattr(exc.orig, "args", ())
        if not args or args[0] not in (1451, 1452, 1216, 1217):
            return None
        match = re.search(r"CONSTRAINT `((?:[^`]|``)+)`", str(args[-1]))
        return match.group(1).replace("``", "`") if match else ""

    def index_options(self, *, where: ColumnElement[bool] | None, nulls_not_distinct: bool) -> dict[str, Any]:
        if where is not None:
            raise ValueError("MySQL/MariaDB have no partial indexes")
        return {}

    # -- a batch's account ----------------------------------------------------------------------

    def counted_under(self, conn: Connection, table: sa.Table, kind: str) -> tuple[tuple[str, str], ...]:
        shape = conn.execute(_VERSIONED, {"s": table.schema, "t": table.name}).first()
        versioned, partitioned = (bool(shape.versioned), bool(shape.partitioned)) if shape else (False, False)
        if versioned and partitioned and shape is not None and shape.method == "SYSTEM_TIME" and kind == DELETED:
            # PARTITION BY SYSTEM_TIME: a deleted row moves from the current partition to a history one, an
            # update for the partition handler, a delete and a write beneath it (MariaDB 10.11, measured).
            return ((ALL_TABLES, DELETED), (ALL_TABLES, UPDATED), (ALL_TABLES, INSERTED))
        counts = _VERSIONED_COUNTS[kind] if versioned and kind in _VERSIONED_COUNTS else \
            super().counted_under(conn, table, kind)
        # MariaDB's partition handler counts each row it writes, and so does the partition's own handler beneath
        # it: every row of a partitioned table is counted twice (a DELETE of 2 rows adds 4 to Handler_delete).
        return counts * 2 if partitioned and getattr(conn.dialect, "is_mariadb", False) else counts

    def changes_so_far(self, conn: Connection) -> ChangeCounts:
        return {(ALL_TABLES, _HANDLER_COUNTS[str(name)]): int(value) for name, value in conn.execute(_SESSION_COUNTS)}

    def unseen_references(self, conn: Connection, table: sa.Table) -> str | None:
        """information_schema lists only the foreign keys of tables the role has a privilege on, and InnoDB's
        ON DELETE and ON UPDATE reach the others all the same (uncounted: see `_HANDLER_COUNTS`). With PROCESS
        the role reads every foreign key from InnoDB's own list; with a global SELECT it sees every table."""
        schema = table.schema or str(conn.execute(sa.text("SELECT DATABASE()")).scalar_one())
        granted = set(conn.execute(sa.text(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")).scalars())
        visible = conn.execute(sa.text(
            "SELECT COUNT(DISTINCT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME) FROM "
            "information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_SCHEMA = :s AND REFERENCED_TABLE_NAME = :t"),
            {"s": schema, "t": table.name}).scalar_one()
        if "PROCESS" in granted:
            names = conn.execute(sa.text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema' "
                "AND TABLE_NAME IN ('INNODB_SYS_FOREIGN', 'INNODB_FOREIGN')")).scalars().all()
            for source in (n for n in _ALL_FOREIGN_KEYS if n in names):
                every = conn.execute(sa.text(f"SELECT FOR_NAME FROM information_schema.{source} "
                                             "WHERE LOWER(REF_NAME) = LOWER(:r)"), {"r": f"{schema}/{table.name}"})
                children = sorted(str(n).replace("/", ".") for n in every.scalars())
                if len(children) > int(visible):
                    return (f"{len(children) - int(visible)} foreign key(s) referring to {table.name!r} are on "
                            f"tables the fix role has no privilege on (among {', '.join(children)}): their ON "
                            "DELETE and ON UPDATE actions would act unseen; grant the fix role SELECT, UPDATE on "
                            "them")
                return None
        if "SELECT" in granted:
            return None
        return (f"the fix role cannot see every foreign key that may refer to {table.name!r}: information_schema "
                "hides the tables it has no privilege on, and their ON DELETE and ON UPDATE actions would act "
                "unseen; grant it PROCESS (dupewatch then reads every foreign key from InnoDB) or SELECT on *.*")

