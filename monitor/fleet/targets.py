"""Targets, and a config expanded into one check per target.

A target is one database (and schema) a check runs against. Its identity is the server and database (and schema) it
names, never the config's names for them: what shards hash (`Database.address`), and what run history is keyed by
(`Database.server_place`, with the schema). A check that names a `source` or `match_labels` is a template; `expand`
makes one check per target it selects (every target of its `source`; with `match_labels`, those whose static labels
match, `[databases]` entries included when it names no source), named `CHECK@TARGET` (what `dupewatch fix` and the
logs call it), exported under the template's name with a `target` label, over a database entry
(`TargetDatabaseConfig`) per target. Every other face (engine, scheduler, metrics, dashboard) then runs the expanded
config as it runs any other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import URL

from monitor.config import CheckConfig, Config, SourceConfig, TargetDatabaseConfig
from monitor.db import Database
from monitor.fleet.shard import ALL, Shard

log = logging.getLogger("dupewatch.fleet")

SERIES_LABELS = ("check", "database", "target")


@dataclass(frozen=True)
class Target:
    source: str
    database: str
    schema: str | None
    url: URL
    labels: tuple[tuple[str, str], ...] = ()
    read_only: bool = False

    @property
    def name(self) -> str:
        """The `target` label: the database, or `database/schema`."""
        return self.database if self.schema is None else f"{self.database}/{self.schema}"

    @property
    def key(self) -> str:
        """Its entry in the expanded config's databases."""
        return f"{self.source}:{self.name}"

    @property
    def server(self) -> str:
        return f"{(self.url.host or '').lower()}:{self.url.port or ''}"

    @property
    def identity(self) -> str:
        return f"{self.url.get_backend_name()}://{self.server}/{self.name}"


def static_label_names(config: Config) -> tuple[str, ...]:
    """Every static label name of the config (sources and databases), sorted: each per-check series carries all
    of them, empty where its target has none, because Prometheus wants one label set per metric."""
    names: set[str] = set()
    for source in config.sources.values():
        names.update(source.labels)
    for database in config.databases.values():
        names.update(database.labels)
    return tuple(sorted(names))


def series_labels(config: Config, check: CheckConfig, names: Sequence[str]) -> tuple[str, ...]:
    """The label values of a check's series: check (its template's name), database, target, then `names`."""
    database = config.databases.get(check.database)
    if isinstance(database, TargetDatabaseConfig):
        shown, target = database.database_name, database.target
    else:
        shown = target = check.database
    labels = database.labels if database is not None else {}
    return (check.template, shown, target, *(labels.get(name, "") for name in names))


def target_of(config: Config, check: CheckConfig) -> TargetDatabaseConfig | None:
    """The fleet target a (expanded) check runs on; None for a check of a `[databases]` entry."""
    database = config.databases.get(check.database)
    return database if isinstance(database, TargetDatabaseConfig) else None


def expand(config: Config, targets: Mapping[str, Sequence[Target]], shard: Shard = ALL) -> Config:
    """`config` with every template check replaced by one check per target of its source (those `shard` owns);
    the checks of `[databases]` entries are kept when `shard` owns their database."""
    databases = dict(config.databases)
    checks: list[CheckConfig] = []
    sql = dict(config._sql)
    per_server = _targets_per_server(config, targets, shard)
    for check in config.checks:
        if not check.needs_targets:
            if shard.count == 1 or shard.owns(_database_identity(config, check.database)):
                checks.append(check)
            continue
        for key, name, identity, entry in _selection(config, check, targets, per_server):
            if not shard.owns(identity):
                continue
            if entry is not None:
                databases.setdefault(key, entry)
            made = check.model_copy(update={"name": f"{check.name}@{name}", "database": key})
            made._template = check.name
            checks.append(made)
            if check.name in sql:
                sql[made.name] = sql[check.name]
    expanded = config.model_copy(update={"databases": databases, "checks": checks})
    expanded._path = config._path
    expanded._sql = sql
    return expanded


def selected_sources(config: Config, check: CheckConfig) -> list[str]:
    """The sources a template check selects: its `source`, or every source, whose labels carry its
    `match_labels`."""
    names = [check.source] if check.source is not None else sorted(config.sources)
    return [name for name in names if name in config.sources and check.selects(config.sources[name].labels)]


def selected_databases(config: Config, check: CheckConfig) -> list[str]:
    """The `[databases]` entries a template check selects: by `match_labels`, when it names no source."""
    if check.source is not None or check.match_labels is None:
        return []
    return [name for name, database in config.databases.items()
            if not isinstance(database, TargetDatabaseConfig) and check.selects(database.labels)]


Selected = tuple[str, str, str, TargetDatabaseConfig | None]


def _selection(config: Config, check: CheckConfig, targets: Mapping[str, Sequence[Target]],
               per_server: Mapping[str, int]) -> Iterator[Selected]:
    """(database entry, target name, shard identity, the entry to add for a fleet target) of each target the
    template selects, in every shard (so that every shard agrees): `[databases]` entries first, then each
    source's targets. A place selected twice (two sources, or a source and an entry, naming one database)
    is checked once, as first selected; a target name selected twice for two places keeps the first (logged)."""
    by_labels = check.source is None
    places: set[str] = set()
    names: dict[str, str] = {}
    for name in selected_databases(config, check):
        identity = _database_identity(config, name)
        places.add(identity)
        names[name] = name
        yield name, name, identity, None
    for source_name in selected_sources(config, check):
        source = config.sources[source_name]
        often = _fastest(config, source_name) < config.fleet.close_idle_after
        for target in targets.get(source_name, ()):
            # An idle pooled connection counts against its server's cap like a running one: targets keep one
            # only while their server has no more targets than the cap allows connections.
            pooled = often and per_server.get(target.server, 0) <= config.fleet.server_connections
            entry = _database_config(target, source, pooled)
            if by_labels:
                place = "/".join(Database(target.key, entry).address)
                if place in places:
                    continue
                places.add(place)
                if target.name in names:
                    log.warning("two targets of one check have one name: only the first is checked (select "
                                "them apart with source or match_labels)", extra={"fields": {
                                    "check": check.name, "target": target.name, "first": names[target.name],
                                    "second": target.key}})
                    continue
                names[target.name] = target.key
            yield target.key, target.name, target.identity, entry


def _targets_per_server(config: Config, targets: Mapping[str, Sequence[Target]], shard: Shard) -> dict[str, int]:
    used = {name for check in config.checks if check.needs_targets for name in selected_sources(config, check)}
    counted: dict[str, set[str]] = {}
    for source, found in targets.items():
        if source in used:
            for target in found:
                if shard.owns(target.identity):
                    counted.setdefault(target.server, set()).add(target.identity)
    return {server: len(identities) for server, identities in counted.items()}


def _fastest(config: Config, source: str) -> float:
    return min((c.interval for c in config.checks if c.needs_targets and source in selected_sources(config, c)),
               default=float("inf"))


def _database_config(target: Target, source: SourceConfig, pooled: bool) -> TargetDatabaseConfig:
    return TargetDatabaseConfig(
        url=target.url.render_as_string(hide_password=False), statement_timeout=source.statement_timeout,
        labels=dict(target.labels), read_only=target.read_only, source=target.source, target=target.name,
        database_name=target.database, place_schema=target.schema, server=target.server,
        identity=target.identity, pooled=pooled)


def _database_identity(config: Config, name: str) -> str:
    """A `[databases]` entry's identity for sharding: what its URL names (`Database.address`; no connection)."""
    return "/".join(Database(name, config.databases[name]).address)
