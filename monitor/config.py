"""The TOML configuration: pydantic models, loading, and one-line errors that say what and where.

Validation runs in two layers, as in query-exporter: the schema (types, unknown fields, value ranges),
then cross-references (a check naming an unknown database, duplicate check names, a missing query file).
Both layers report every problem of the file at once, one line each (`FILE: checks[2] ('name').key: ...`),
with "did you mean" suggestions (`difflib`) for unknown fields and names. Table and column names are checked
later, by reflection against the live database (`Monitor.preflight`), before any check runs.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_INTERVAL = 60.0
DEFAULT_FULL_EVERY = 3600.0
DEFAULT_RECOUNT_EVERY = 300.0  # `monitor.incremental.RECOUNT_PERIOD`
MIN_INTERVAL_SECONDS = 0.1  # a check polled faster than this only loads the database; `interval` says so
DEFAULT_STATEMENT_TIMEOUT = 30.0
DEFAULT_METRICS_LISTEN = "127.0.0.1:9641"
CONFIG_FILE_NAME = "dupewatch.toml"
MAX_DURATION_SECONDS = 10 * 366 * 86400.0
MAX_STATEMENT_TIMEOUT_SECONDS = 24 * 86400.0


class ConfigError(Exception):
    """Problems the user can fix in the configuration: one line each, naming what and where.

    `problems` holds the lines; `str()` joins them with newlines (one problem: one line).
    """

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p] or ["invalid configuration"]
        super().__init__("\n".join(self.problems))


def close_matches(word: str, candidates: Any) -> str:
    """`" (did you mean 'x'?)"` when `candidates` holds names close to `word`, else `""`."""
    names = [str(c) for c in candidates]
    found = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if not found:
        return ""
    return f" (did you mean {' or '.join(repr(f) for f in found)}?)"


def printable_name(value: str) -> str:
    """Names end up in tables, logs and metric labels: refuse newlines and control characters."""
    if not value.isprintable():
        raise ValueError("must be printable characters, without newlines, tabs or control characters")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from `30s`, `500ms`, `5m`, `1h`, `2d` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as '30s', '5m' or '1h', got {value!r}")
    if math.isnan(seconds):
        raise ValueError(f"expected a duration such as '30s', '5m' or '1h', got {value!r}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"must be a duration of at most 10 years, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def parse_statement_timeout(value: Any) -> float:
    """A duration the databases can enforce: at least 1 ms (0 would mean no timeout at all on PostgreSQL and
    MySQL) and at most PostgreSQL's limit of 2^31 - 1 ms (about 24 days)."""
    seconds = parse_duration(value)
    if seconds < 0.001:
        raise ValueError(f"must be at least 1ms, got {value!r}")
    if seconds > MAX_STATEMENT_TIMEOUT_SECONDS:
        raise ValueError(f"must be at most 24d (the databases' limit), got {value!r}")
    return seconds


def parse_interval(value: Any) -> float:
    """A polling interval: a duration of at least `MIN_INTERVAL_SECONDS`."""
    seconds = parse_duration(value)
    if seconds < MIN_INTERVAL_SECONDS:
        raise ValueError(f"must be at least {MIN_INTERVAL_SECONDS * 1000:g}ms, got {value!r}")
    return seconds


class Limit(NamedTuple):
    """A threshold: a count of rows, or a percentage of the rows a check read (`percent`)."""

    value: float
    percent: bool

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g}"

    def exceeded(self, rows: int, checked: int | None) -> bool | None:
        """Whether `rows` are above the limit; None when a percentage cannot be judged (rows checked unknown)."""
        if not self.percent:
            return rows > self.value
        if not checked:
            return None if checked is None else False  # an empty table holds no duplicates at all
        return rows * 100 > self.value * checked


def parse_threshold(value: Any) -> Limit:
    """`10` (rows) or "0.5%" (of the rows checked): how many excess rows a check tolerates."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number of rows (10) or a percentage (\"0.5%\"), got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return Limit(float(value), False)
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
        if match:
            percent = float(match.group(1))
            if percent >= 100:
                raise ValueError(f"a percentage must be below 100%, got {value!r}")
            return Limit(percent, True)
        if text.isdigit():
            return Limit(float(int(text)), False)
    raise ValueError(f"expected a number of rows (10) or a percentage (\"0.5%\"), got {value!r}")


Threshold = Annotated[Limit, BeforeValidator(parse_threshold)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_interval)]
StatementTimeout = Annotated[float, BeforeValidator(parse_statement_timeout)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels every per-check series already has, Prometheus reserves (`le`, `quantile`) or attaches to every scraped
# series (`job`, `instance`: a clash is silently renamed `exported_job`): a static label cannot take their names.
RESERVED_LABELS = frozenset({"check", "database", "target", "le", "quantile", "job", "instance"})


def static_labels(value: dict[str, str]) -> dict[str, str]:
    """Static labels (`labels = { env = "prod" }`): Prometheus label names, printable values."""
    for name, text in value.items():
        if name.startswith("__"):
            raise ValueError(f"label name {name!r} is reserved (Prometheus keeps names starting with __)")
        if not LABEL_NAME.match(name):
            raise ValueError(f"label name {name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if name in RESERVED_LABELS:
            raise ValueError(f"label name {name!r} is reserved (every series has it, or Prometheus does)")
        printable_name(text)
    return value


class DatabaseConfig(_Model):
    url: str | None = None
    url_env: str | None = None
    statement_timeout: StatementTimeout = DEFAULT_STATEMENT_TIMEOUT
    # The writing connection used by `dupewatch fix`; detection keeps its read-only one.
    fix_url: str | None = None
    fix_url_env: str | None = None
    # Live mode (monitor/live/): follow the database's change stream; the poll stays as the safety net.
    live: StrictBool = False
    # Fleet mode: static labels on every series of this database's checks, and no fix offered on it.
    labels: dict[str, str] = Field(default_factory=dict)
    read_only: StrictBool = False

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return static_labels(value)

    @model_validator(mode="after")
    def _one_url(self) -> DatabaseConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url' or 'url_env'")
        if self.fix_url is not None and self.fix_url_env is not None:
            raise ValueError("set at most one of 'fix_url' or 'fix_url_env'")
        return self

    def resolved_url(self, name: str) -> str:
        return _url_from(self.url, self.url_env, name, "url_env")

    def resolved_fix_url(self, name: str) -> str:
        if self.fix_url is None and self.fix_url_env is None:
            return self.resolved_url(name)
        return _url_from(self.fix_url, self.fix_url_env, name, "fix_url_env")


class TargetDatabaseConfig(DatabaseConfig):
    """A fleet target as the rest of dupewatch sees it: a database entry made by `monitor.fleet.expand`, never
    written in a file. `place_schema` joins what a run measured (`Database.address` and `Database.server_place`);
    `pooled` False makes its detection connect, run and close (a target checked rarely keeps no connection open)."""

    source: str
    target: str  # the `target` label: the database, or `database/schema`
    database_name: str
    place_schema: str | None = None
    server: str  # host:port: what the per-server connection cap counts
    identity: str  # server + database (+ schema): what shards hash
    pooled: bool = False


def _url_from(url: str | None, env: str | None, database: str, field: str, section: str = "databases") -> str:
    if url is not None:
        return url
    assert env is not None
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"{section}.{database}.{field}: environment variable {env} is not set")
    if not value.strip():
        raise ConfigError(f"{section}.{database}.{field}: environment variable {env} is empty")
    return value.strip()  # a secret mounted from a file ends in a newline, which would end the database's name


DEFAULT_DISCOVERY_INTERVAL = 300.0


def regular_expression(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return value


def discover_value(value: Any) -> str | list[str]:
    """`discover`: "databases", "schemas", or a static list of database names."""
    if isinstance(value, list):
        if not value or not all(isinstance(name, str) and name for name in value):
            raise ValueError("a static list names at least one database, each a non-empty string")
        for name in value:
            printable_name(name)
        if len(set(value)) != len(value):
            raise ValueError("names a database twice")
        return value
    if value not in ("databases", "schemas"):
        raise ValueError(f'expected "databases", "schemas" or a list of database names, got {value!r}')
    return str(value)


DEFAULT_MAX_TARGETS = 5000


class SourceConfig(_Model):
    """`[sources.NAME]`: where fleet targets come from (see monitor/fleet/). A server whose databases are
    discovered, its tenant schemas listed by `schemas_query`, or a static list of database names."""

    url: str | None = None
    url_env: str | None = None
    discover: Annotated[str | list[str], BeforeValidator(discover_value)]
    schemas_query: str | None = None
    include: str | None = None
    exclude: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    every: Interval = DEFAULT_DISCOVERY_INTERVAL
    statement_timeout: StatementTimeout = DEFAULT_STATEMENT_TIMEOUT
    read_only: StrictBool = False
    # A listing longer than this is a failed one (the last good list is kept): a schemas_query that returns row
    # values by mistake must not turn into millions of series.
    max_targets: Annotated[StrictInt, Field(ge=1)] = DEFAULT_MAX_TARGETS

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return static_labels(value)

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: str | None) -> str | None:
        return regular_expression(value)

    @model_validator(mode="after")
    def _consistent(self) -> SourceConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of 'url' or 'url_env'")
        if (self.discover == "schemas") != (self.schemas_query is not None):
            raise ValueError("discover = \"schemas\" needs schemas_query (a SELECT listing the schemas), "
                             "and schemas_query needs discover = \"schemas\"")
        if self.schemas_query is not None and not self.schemas_query.strip():
            raise ValueError("schemas_query must not be empty")
        return self

    def resolved_url(self, name: str) -> str:
        return _url_from(self.url, self.url_env, name, "url_env", "sources")


class FleetConfig(_Model):
    """`[fleet]`: the budgets of a daemon running checks over many targets (see monitor/fleet/budget.py)."""

    max_running: int = Field(default=8, ge=1)  # checks running at once, over all targets
    server_connections: int = Field(default=4, ge=1)  # connections open at once to one server (host:port)
    # A target whose checks run less often than this connects, runs and closes (no pooled connection kept).
    close_idle_after: Duration = 120.0


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*:)[^\s@'\"]*@")


def redact_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it (`scheme://user:password@host`) masked as `***`."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


_REFERENCE_NAME = re.compile(r"^(?P<table>.+)\.(?:\((?P<columns>[^()]+)\)|(?P<column>[^.()]+))$")


def parse_reference_name(name: str) -> tuple[str | None, str, tuple[str, ...]]:
    """A reference as `on_reference` names it: `table.column`, `schema.table.column` or `table.(a,b)`,
    as (schema, table, columns). Raises ValueError saying what is wrong."""
    if '"' in name or "`" in name:  # quoted parts: `"Order"."Customer Id"`, `app.\`weird.table\`.(a, "B")`
        return _quoted_reference_name(name)
    match = _REFERENCE_NAME.match(name.strip())
    if match is None:
        raise ValueError(f"{name!r} is not `table.column`, `schema.table.column` or `table.(a,b)`")
    columns = tuple(c.strip() for c in (match["columns"] or match["column"]).split(","))
    if not all(columns):
        raise ValueError(f"{name!r} names an empty column")
    schema, _, table = match["table"].rpartition(".")
    return (schema or None), table, columns


def _quoted_reference_name(name: str) -> tuple[str | None, str, tuple[str, ...]]:
    from monitor.detect import _quoted_parts  # detect imports this module

    wrong = f"{name!r} is not `table.column`, `schema.table.column` or `table.(a,b)` (quoted where needed)"
    text = name.strip()
    listed = re.match(r"^(?P<table>.+)\.\((?P<columns>[^()]+)\)$", text)
    if listed is not None:
        table_parts = _quoted_parts(listed["table"])
        column_parts = [_quoted_parts(c.strip()) for c in listed["columns"].split(",")]
        if any(p is None or len(p) != 1 for p in column_parts):
            raise ValueError(wrong)
        columns = tuple(p[0] for p in column_parts if p is not None)
    else:
        parts = _quoted_parts(text)
        if parts is None or len(parts) < 2:
            raise ValueError(wrong)
        table_parts, columns = parts[:-1], (parts[-1],)
    if table_parts is None or len(table_parts) not in (1, 2) or not all(table_parts):
        raise ValueError(wrong)
    if not all(columns):
        raise ValueError(f"{name!r} names an empty column")
    return (table_parts[0] if len(table_parts) == 2 else None), table_parts[-1], columns


class CheckConfig(_Model):
    name: str = Field(min_length=1)
    # Exactly one of `database` (a `[databases.X]` entry) or a selector of targets: `source` (a `[sources.X]`:
    # every target of it) and/or `match_labels` (every target, and `[databases]` entry, whose static labels
    # include these; with `source`, only that source's).
    database: str = ""
    source: str | None = Field(default=None, min_length=1)
    match_labels: dict[str, str] | None = None
    description: str | None = None
    # A duplicate check names a table and a key ...
    table: str | None = None
    key: list[str] | None = None
    where: str | None = None
    case_insensitive: StrictBool = False
    trim_whitespace: StrictBool = False
    # "equal": NULLs group together (GROUP BY); "distinct": a row with any NULL key part never counts (UNIQUE);
    # "skip_all_null": a row whose key parts are all NULL never counts, partial NULLs compare equal (GX's rule).
    nulls: Literal["equal", "distinct", "skip_all_null"] = "equal"
    order_by: list[str] | None = None
    keep: Literal["oldest", "newest"] = "oldest"
    timestamp: str | None = None
    # ... a custom check runs SQL from a file (`query`, relative to the config file) or inline (`sql`).
    query: str | None = None
    sql: str | None = None
    interval: Interval = DEFAULT_INTERVAL
    # Incremental detection (table checks): a column that grows for new rows, how often a full pass runs, and
    # within how long every known duplicate group is re-counted (a delete is seen).
    incremental: str | None = Field(default=None, min_length=1)
    full_every: Duration = DEFAULT_FULL_EVERY
    recount_every: Duration = DEFAULT_RECOUNT_EVERY
    # What a check finds: a table check "duplicates", a custom query "violations" (rows breaking an invariant).
    kind: Literal["duplicates", "violations"] | None = None
    # What a fix does with rows of other tables that reference a deleted duplicate (see monitor/fix/refs.py).
    on_reference: dict[str, Literal["repoint", "archive", "refuse"]] = Field(default_factory=dict)
    # Whether a fix merges rows that another unique constraint or index says are different entities.
    merge_distinct: StrictBool = False
    # How much the check tolerates (`monitor.thresholds`): above `warn_above` it warns, above `fail_above` it
    # fails; each is a count of excess (violating) rows, `10`, or a percentage of the rows checked, "0.5%".
    warn_above: Threshold | None = None
    fail_above: Threshold | None = None
    # Set by `monitor.fleet.expand` on a check made for one target: the name of the check it was made from.
    _template: str | None = PrivateAttr(default=None)

    @property
    def template(self) -> str:
        """The name under which the check is configured (and exported): its own, or its template's."""
        return self._template or self.name

    @property
    def selects_targets(self) -> bool:
        """A template, or a check made from one: it selects its targets (a source, labels)."""
        return self.source is not None or self.match_labels is not None

    @property
    def needs_targets(self) -> bool:
        """A template: it selects targets and has not been expanded into one check per target yet."""
        return self.selects_targets and not self.database

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether static `labels` carry every label of `match_labels` (any, without it)."""
        return all(labels.get(name) == value for name, value in (self.match_labels or {}).items())

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        return printable_name(value)

    @field_validator("match_labels")
    @classmethod
    def _match_labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and not value:
            raise ValueError("names at least one label (match_labels = { env = \"prod\" })")
        return value if value is None else static_labels(value)

    @field_validator("table", "query", "sql")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("table")
    @classmethod
    def _table_parts(cls, value: str | None) -> str | None:
        if value is not None:
            parts = table_name_parts(value)
            if any("\0" in part for part in parts or []):
                raise ValueError("a table name cannot contain a NUL character")
            if parts is None or len(parts) > 2 or not all(parts):
                raise ValueError(
                    f"expected TABLE or SCHEMA.TABLE, got {value!r} (quote a name that contains a dot: "
                    "'\"x.y\"', or '`x.y`' on MySQL/MariaDB)")
        return value

    @field_validator("on_reference")
    @classmethod
    def _reference_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            parse_reference_name(name)
        return value

    @field_validator("order_by", mode="before")
    @classmethod
    def _order_by_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("key")
    @classmethod
    def _key_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one column")
            if any(not column for column in value):
                raise ValueError("column names must not be empty")
            if len(set(value)) != len(value):
                raise ValueError("names a column twice")
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> CheckConfig:
        if bool(self.database) == self.selects_targets:
            raise ValueError("set exactly one of 'database' or 'source' (and/or 'match_labels')")
        kinds = [k for k in ("table", "query", "sql") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("set exactly one of 'table' (with 'key'), 'query' (a file) or 'sql'")
        if self.table is not None and self.key is None:
            raise ValueError("a table check needs 'key', the columns that should be unique")
        if self.table is None:
            table_only = ("key", "where", "order_by", "timestamp", "incremental")
            misplaced = [f for f in table_only if getattr(self, f) is not None]
            if misplaced:
                raise ValueError(f"'{misplaced[0]}' applies only to table checks, not custom queries")
        return self

    @model_validator(mode="after")
    def _thresholds(self) -> CheckConfig:
        percent = [f for f in ("warn_above", "fail_above") if getattr(self, f) is not None and getattr(self, f).percent]
        if percent and self.table is None:
            raise ValueError(f"'{percent[0]}' in percent needs a table check (a custom query has no row count to be "
                             "a percentage of); give it in rows")
        if percent and self.incremental is not None:
            raise ValueError(f"'{percent[0]}' in percent cannot apply to an incremental check (its runs read only new "
                             "rows, not the table's row count); give it in rows")
        warn, fail = self.warn_above, self.fail_above
        if warn is not None and fail is not None and warn.percent == fail.percent and warn.value >= fail.value:
            raise ValueError(f"'warn_above' ({warn}) must be below 'fail_above' ({fail})")
        return self

    @property
    def is_custom(self) -> bool:
        return self.table is None

    @property
    def finds(self) -> Literal["duplicates", "violations"]:
        """What the check reports: its `kind`, by default "duplicates" for a table, "violations" for a query."""
        if self.kind is not None:
            return self.kind
        return "violations" if self.is_custom else "duplicates"


def table_name_parts(name: str) -> list[str] | None:
    """The dot-separated parts of a table name, quoted parts unquoted; None when the quoting is malformed."""
    if '"' in name or "`" in name:
        from monitor.detect import _quoted_parts  # detect imports this module

        return _quoted_parts(name)
    return [part.strip() for part in name.split(".")]


class StateConfig(_Model):
    path: Path | None = None
    retention: Duration = 30 * 86400.0


class MetricsConfig(_Model):
    listen: str = DEFAULT_METRICS_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        wrong = f"expected HOST:PORT, got {value!r}"
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(wrong)
        if host.startswith("[") or host.endswith("]") or ":" in host:
            ipv6 = f"expected HOST:PORT with an IPv6 address in brackets, such as [::1]:9641, got {value!r}"
            try:
                ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
            except ValueError:
                raise ValueError(ipv6) from None
            if not (host.startswith("[") and host.endswith("]")):
                raise ValueError(ipv6)
        elif any(not c.isprintable() or c.isspace() or c in "/@?#" for c in host):
            raise ValueError(wrong)
        return value

    @property
    def host(self) -> str:
        """The address to bind; an empty host (`":9641"`) means loopback, like the default, never every interface."""
        return self.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class FixConfig(_Model):
    # Where a fix keeps its own tables (dupewatch_fix, plans, archives, repoint logs): a PostgreSQL schema or a
    # MySQL/MariaDB database that must exist; default: the fixed table's schema (records: the default schema).
    # (`schema_` in Python: pydantic's BaseModel has a `schema` method.)
    schema_: str | None = Field(default=None, min_length=1, alias="schema")
    # How long one batch of a fix aims to take (its row locks are held that long); `--batch-time` overrides it.
    # Batches grow while faster and shrink when slower, within a tenth of the statement timeout.
    batch_time: Duration = 0.5


class Config(_Model):
    databases: dict[str, DatabaseConfig] = Field(default_factory=dict)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    fleet: FleetConfig = FleetConfig()
    checks: list[CheckConfig] = Field(min_length=1)
    state: StateConfig = StateConfig()
    metrics: MetricsConfig | None = None
    fix: FixConfig = FixConfig()
    _path: Path | None = PrivateAttr(default=None)
    _sql: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("databases", "sources")
    @classmethod
    def _printable_database_names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = "database" if info.field_name == "databases" else "source"
        for name in value:
            if not name.isprintable():
                raise ValueError(f"{kind} name {name!r} must be printable characters, without newlines, "
                                 "tabs or control characters")
        return value

    @property
    def needs_targets(self) -> bool:
        """Whether some check runs over the targets of a source and the config has not been expanded yet
        (`monitor.fleet.expand`): it cannot run as it is."""
        return any(c.needs_targets for c in self.checks)

    @property
    def path(self) -> Path | None:
        return self._path

    def check(self, name: str) -> CheckConfig:
        for check in self.checks:
            if check.name == name:
                return check
        raise ConfigError(f"{self._where()}: no check named {name!r}{close_matches(name, self.names)} "
                          f"(have: {', '.join(self.names)})")

    def locate(self, check: str, field: str | None = None) -> str:
        """Where a check's option is in the file, as errors name it: `FILE: checks[2] ('name').field`."""
        index = self.names.index(check) if check in self.names else None
        where = f"{self._where()}: checks[{index}] ({check!r})" if index is not None else \
            f"{self._where()}: check {check!r}"
        return f"{where}.{field}" if field else where

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checks]

    def custom_sql(self, check: CheckConfig) -> str:
        """The SQL text of a custom check, read when the config was loaded."""
        return self._sql[check.name]

    def _where(self) -> str:
        return str(self._path) if self._path else "config"


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config to use: the explicit one, else ./dupewatch.toml, else $XDG_CONFIG_HOME/dupewatch/config.toml."""
    if explicit is not None:
        return Path(explicit)
    local = Path(CONFIG_FILE_NAME)
    if local.is_file():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = xdg / "dupewatch" / "config.toml"
    return candidate if candidate.is_file() else None


def config_to_name(path: Path | None) -> Path | None:
    """The config file a command suggested to the user must name with --config: None when it is the one found
    without --config (./dupewatch.toml, the XDG file), else the file, absolute so it works from any directory."""
    if path is None:
        return None
    found = find_config_file(None)
    if found is not None and found.resolve() == path.resolve():
        return None
    return path.resolve()


def load_config(path: str | os.PathLike[str]) -> Config:
    """The validated config of a TOML file. Raises `ConfigError` listing every problem of the file."""
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    try:
        return config_from_dict(data, path)
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply") from None


def config_from_dict(data: dict[str, Any], path: Path | None = None) -> Config:
    """The validated config of already parsed TOML. Both layers run whatever the other found, so the
    `ConfigError` lists every problem at once, one line each, schema problems first."""
    where = str(path) if path else "config"
    problems: list[str] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(f"{where}: {line}" for line in _describe_all(exc, data))
    base = path.parent if path else Path.cwd()
    problems.extend(f"{where}: {line}" for line in _cross_check(data))
    sql: dict[str, str] = {}
    raw_checks = data.get("checks")
    for index, check in enumerate(raw_checks if isinstance(raw_checks, list) else []):
        if not isinstance(check, dict) or not isinstance(check.get("name"), str):
            continue
        name = check["name"]
        if isinstance(check.get("sql"), str):
            sql[name] = check["sql"]
        elif isinstance(check.get("query"), str) and check["query"].strip():
            text, problem = _read_query(base, check["query"])
            if problem:
                label = f"checks[{index}]" + (f" ({name!r})" if name.isprintable() else "")
                problems.append(f"{where}: {label}.query: {problem}")
            sql[name] = text
    if problems or config is None:
        # A URL pasted where a name or a duration belongs is echoed back: never with its password.
        raise ConfigError(*(redact_url_passwords(line) for line in problems))
    config._path = path
    config._sql = sql
    return config


def _read_query(base: Path, query: str) -> tuple[str, str | None]:
    """The text of a `query` file and None, or "" and what is wrong with it."""
    query_path = base / query
    if query_path.is_dir():
        return "", f"{query!r} is a directory, not a SQL file ({query_path})"
    try:
        text = query_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", f"query file not found: {query_path}"
    except (OSError, UnicodeDecodeError) as exc:
        return "", f"cannot read query file {query_path}: {exc}"
    if not text.strip():
        return "", f"query file is empty: {query_path}"
    return text, None


def _cross_check(data: dict[str, Any]) -> list[str]:
    """Duplicate check names and unknown databases, read from the raw data (so they are found even when
    the schema layer failed)."""
    databases = data.get("databases")
    known = [str(k) for k in databases] if isinstance(databases, dict) else []
    sources = data.get("sources")
    known_sources = [str(k) for k in sources] if isinstance(sources, dict) else []
    checks = data.get("checks")
    problems: list[str] = []
    seen: set[str] = set()
    for index, check in enumerate(checks if isinstance(checks, list) else []):
        if not isinstance(check, dict):
            continue
        name = check.get("name")
        label = f"checks[{index}]" + (f" ({name!r})" if isinstance(name, str) and name.isprintable() else "")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{label}.name: duplicate check name {name!r}")
            seen.add(name)
        database = check.get("database")
        if isinstance(database, str) and isinstance(databases, dict) and database not in databases:
            listed = ", ".join(sorted(known)) or "none defined"
            problems.append(f"{label}.database: unknown database {database!r}"
                            f"{close_matches(database, known)} (known: {listed})")
        source = check.get("source")
        if isinstance(source, str) and source not in known_sources:
            listed = ", ".join(sorted(known_sources)) or "none defined"
            problems.append(f"{label}.source: unknown source {source!r}"
                            f"{close_matches(source, known_sources)} (known: {listed})")
        elif isinstance(check.get("match_labels"), dict) and not check.get("database"):
            problems.extend(_selection_problems(label, check["match_labels"], source, data))
    return problems


def _selection_problems(label: str, wanted: dict[str, Any], source: Any, data: dict[str, Any]) -> list[str]:
    """A `match_labels` that no source (the check's own, when it names one) or `[databases]` entry carries: a
    typo, since static labels are all in the file. An invalid selector is the schema layer's problem."""
    try:
        if not wanted or static_labels(wanted) is not wanted:
            return []
    except (ValueError, TypeError):
        return []
    candidates: list[Any] = []
    for section in ("sources", "databases") if source is None else ("sources",):
        entries = data.get(section)
        if isinstance(entries, dict):
            candidates += [v for k, v in entries.items() if source is None or k == source]
    carried: list[dict[str, Any]] = [c["labels"] for c in candidates
                                     if isinstance(c, dict) and isinstance(c.get("labels"), dict)]
    if any(all(labels.get(k) == v for k, v in wanted.items()) for labels in carried):
        return []
    known = ", ".join(sorted({f"{k}={v}" for labels in carried for k, v in labels.items()})) or "none"
    selector = ", ".join(f"{k}={v}" for k, v in wanted.items())
    if source is not None:
        return [f"{label}.match_labels: source {source!r} does not carry {selector} (its labels: {known})"]
    return [f"{label}.match_labels: no source or database carries {selector} (labels in the file: {known})"]


def _fields_at(loc: list[Any]) -> list[str]:
    """The field names allowed where an unknown field was found (for suggestions)."""
    if not loc:
        return list(Config.model_fields)
    head = loc[0]
    models: dict[str, type[BaseModel]] = {
        "checks": CheckConfig, "databases": DatabaseConfig, "state": StateConfig, "metrics": MetricsConfig,
        "sources": SourceConfig, "fleet": FleetConfig,
    }
    model = models.get(str(head))
    return list(model.model_fields) if model is not None else []


def _describe_all(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """Every validation error as `location: message`, with check names beside their indexes."""
    return [_describe_one(error, data) for error in exc.errors()]


def _describe_one(error: Any, data: dict[str, Any]) -> str:
    parts: list[str] = []
    loc = list(error["loc"])
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]"
            if loc[:i] == ["checks"]:
                name = _check_name(data, item)
                if name:
                    parts[-1] += f" ({name!r})"
        else:
            parts.append(str(item))
    location = ".".join(parts) or "top level"
    kind = error["type"]
    if kind == "extra_forbidden":
        field = str(loc[-1]) if loc else ""
        message = f"unknown field{close_matches(field, _fields_at(loc[:-1]))}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "bool_type":
        message = f"expected true or false (without quotes), got {error.get('input')!r}"
    elif kind == "string_type":  # pydantic says "Input should be a valid string", not what to write
        given = error.get("input")
        shown = str(given).lower() if isinstance(given, bool) else repr(given)
        message = f"expected a string in quotes (see `dupewatch config example`), got {shown}"
    elif kind == "list_type" and loc == ["checks"]:  # `[checks]` for `[[checks]]`: each check is a table
        given = error.get("input")
        shown = "one table [checks]" if isinstance(given, dict) else repr(given)
        message = f"expected each check as a table under [[checks]] (double brackets; see `dupewatch config " \
                  f"example`), got {shown}"
    elif kind == "list_type":  # pydantic says "Input should be a valid list"
        given, field = error.get("input"), str(loc[-1]) if loc else "key"
        example = f'["{given}"]' if isinstance(given, str) and given.isprintable() and not set('"\\') & set(given) \
            else '["a", "b"]'
        message = f"expected a list in brackets, such as {field} = {example}, got {given!r}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message}"


def _check_name(data: dict[str, Any], index: int) -> str | None:
    checks = data.get("checks")
    if isinstance(checks, list) and index < len(checks) and isinstance(checks[index], dict):
        name = checks[index].get("name")
        return name if isinstance(name, str) and name.isprintable() else None
    return None
