"""Fleet mode without a server: the config contract, expansion into one check per target, shards, the budget
and discovery's last good list."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from monitor.config import ConfigError, FleetConfig, SourceConfig, config_from_dict
from monitor.db import Database, DatabaseError
from monitor.fleet import Discovery, Target, expand, series_labels, shard_from_environment, static_label_names
from monitor.fleet.budget import Budget
from monitor.fleet.discover import SourceState
from monitor.fleet.shard import Shard, parse_shard, shard_of

SERVER = "postgresql://monitor:secret@db.internal:5432/postgres"


def fleet_config(**source: object) -> dict[str, object]:
    return {
        "sources": {"tenants": {"url": SERVER, "discover": "databases", "include": "^tenant_",
                                "labels": {"env": "prod"}, "every": "5m", **source}},
        "databases": {"app": {"url": "postgresql://monitor@app.internal/app", "labels": {"team": "core"}}},
        "checks": [
            {"name": "logins", "source": "tenants", "table": "login_source", "key": ["user_id"], "interval": "10m"},
            {"name": "orders", "database": "app", "table": "orders", "key": ["ref"]},
        ],
    }


def targets(*names: str, schema: bool = False) -> list[Target]:
    url = make_url(SERVER)
    made = []
    for name in names:
        database, tenant = ("app", name) if schema else (name, None)
        made.append(Target("tenants", database, tenant, url.set(database=database), (("env", "prod"),)))
    return made


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config_from_dict(data)
    return raised.value.problems


def test_the_issue_contract_loads():
    config = config_from_dict(fleet_config(exclude="_archive$"))
    source = config.sources["tenants"]
    assert (source.discover, source.include, source.exclude, source.every) == ("databases", "^tenant_",
                                                                               "_archive$", 300.0)
    assert config.checks[0].source == "tenants" and config.checks[0].needs_targets
    assert config.needs_targets
    assert config_from_dict(fleet_config(discover=["a", "b"])).sources["tenants"].discover == ["a", "b"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"discover": "schemas"}, "sources.tenants: discover = \"schemas\" needs schemas_query"),
    ({"schemas_query": "SELECT 1"}, "needs schemas_query"),
    ({"discover": "tables"}, "sources.tenants.discover: expected \"databases\", \"schemas\" or a list"),
    ({"discover": []}, "sources.tenants.discover: a static list names at least one database"),
    ({"include": "(unclosed"}, "sources.tenants.include: not a regular expression"),
    ({"labels": {"check": "x"}}, "sources.tenants.labels: label name 'check' is reserved"),
    ({"labels": {"bad-name": "x"}}, "is not a Prometheus label name"),
    ({"labels": {"job": "x"}}, "sources.tenants.labels: label name 'job' is reserved"),
    ({"labels": {"instance": "x"}}, "sources.tenants.labels: label name 'instance' is reserved"),
    ({"labels": {"le": "x"}}, "sources.tenants.labels: label name 'le' is reserved"),
    ({"labels": {"target": "x"}}, "sources.tenants.labels: label name 'target' is reserved"),
    ({"labels": {"__name__": "x"}}, "sources.tenants.labels: label name '__name__' is reserved"),
    ({"labels": {"": "x"}}, "is not a Prometheus label name"),
    ({"labels": {"9lives": "x"}}, "is not a Prometheus label name"),
    ({"every": "0s"}, "sources.tenants.every: must be a positive duration"),
    ({"evry": "5m"}, "sources.tenants.evry: unknown field (did you mean 'every'?)"),
])
def test_a_bad_source_is_one_line_naming_the_field(change, expected):
    found = problems(fleet_config(**change))
    assert len(found) == 1 and expected in found[0], found


def test_a_check_names_exactly_one_of_database_or_source_and_a_known_source():
    data = fleet_config()
    data["checks"] = [{"name": "a", "source": "tenant", "table": "t", "key": ["k"]},
                      {"name": "b", "source": "tenants", "database": "app", "table": "t", "key": ["k"]},
                      {"name": "c", "table": "t", "key": ["k"]}]
    found = problems(data)
    assert "checks[1] ('b'): set exactly one of 'database' or 'source'" in found[0]
    assert "checks[2] ('c'): set exactly one of 'database' or 'source'" in found[1]
    assert "checks[0] ('a').source: unknown source 'tenant' (did you mean 'tenants'?) (known: tenants)" in found[2]


def test_expansion_makes_one_check_per_target_exported_under_the_template_with_target_and_static_labels():
    config = config_from_dict(fleet_config())
    expanded = expand(config, {"tenants": targets("tenant_1", "tenant_2")})
    assert expanded.names == ["logins@tenant_1", "logins@tenant_2", "orders"]
    names = static_label_names(expanded)
    assert names == ("env", "team")  # every static label name, on every series
    labelled = {c.name: series_labels(expanded, c, names) for c in expanded.checks}
    assert labelled == {"logins@tenant_1": ("logins", "tenant_1", "tenant_1", "prod", ""),
                        "logins@tenant_2": ("logins", "tenant_2", "tenant_2", "prod", ""),
                        "orders": ("orders", "app", "app", "", "core")}
    assert not expanded.needs_targets and config.needs_targets  # the template is left as it was


def test_schema_targets_are_database_slash_schema_and_measure_another_place():
    config = config_from_dict(fleet_config(discover="schemas", schemas_query="SELECT s FROM t"))
    expanded = expand(config, {"tenants": targets("acme", "globex", schema=True)})
    assert [series_labels(expanded, c, ())[2] for c in expanded.checks[:2]] == ["app/acme", "app/globex"]
    places = {tuple(Database(c.database, expanded.databases[c.database]).address) for c in expanded.checks[:2]}
    assert len(places) == 2  # their runs are kept apart in the history


def test_rarely_checked_targets_and_crowded_servers_keep_no_pooled_connection():
    config = config_from_dict(fleet_config())  # interval 10m, above close_idle_after (2m)
    rare = expand(config, {"tenants": targets("tenant_1")}).databases["tenants:tenant_1"]
    data = fleet_config()
    data["checks"][0]["interval"] = "30s"  # type: ignore[index]
    often = expand(config_from_dict(data), {"tenants": targets("tenant_1")}).databases["tenants:tenant_1"]
    assert (rare.pooled, often.pooled) == (False, True)  # type: ignore[attr-defined]
    data["fleet"] = {"server_connections": 2}  # three targets on one server: idle connections would pass the cap
    crowded = expand(config_from_dict(data), {"tenants": targets("tenant_1", "tenant_2", "tenant_3")})
    assert not any(d.pooled for d in crowded.databases.values() if hasattr(d, "pooled"))
    db = Database("tenants:tenant_1", rare)
    try:
        assert type(db.engine.pool).__name__ == "NullPool"
    finally:
        db.dispose()


@pytest.mark.parametrize(("spec", "expected"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 / 4 ", Shard(1, 4))])
def test_shard_specs(spec, expected):
    assert parse_shard(spec, "--shard") == expected


@pytest.mark.parametrize(("spec", "message"), [("3/3", "--shard: shard 3 of 3 does not exist"),
                                               ("1/0", "does not exist"), ("a/b", "--shard: expected I/N")])
def test_a_bad_shard_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(spec, "--shard")


def test_shard_from_option_then_environment_then_statefulset_ordinal():
    env = {"DUPEWATCH_SHARD": "1/2", "DUPEWATCH_SHARDS": "5", "POD_NAME": "dupewatch-3"}
    assert shard_from_environment("0/4", env) == Shard(0, 4)
    assert shard_from_environment(None, env) == Shard(1, 2)
    assert shard_from_environment(None, {"DUPEWATCH_SHARDS": "5", "POD_NAME": "dupewatch-3"}) == Shard(3, 5)
    assert shard_from_environment(None, {}) == Shard(0, 1)
    with pytest.raises(ConfigError, match="POD_NAME 'dupewatch' does not end in -<ordinal>"):
        shard_from_environment(None, {"DUPEWATCH_SHARDS": "2", "POD_NAME": "dupewatch"})
    with pytest.raises(ConfigError, match="shard 3 of 3 does not exist"):
        shard_from_environment(None, {"DUPEWATCH_SHARDS": "3", "POD_NAME": "dupewatch-3"})


def test_shards_split_targets_exactly_once_and_stably():
    config = config_from_dict(fleet_config())
    fleet = targets(*(f"tenant_{i}" for i in range(300)))
    owned = Counter(name for i in range(3)
                    for name in expand(config, {"tenants": fleet}, Shard(i, 3)).names)
    assert all(count == 1 for count in owned.values()) and len(owned) == 301  # 300 targets and `orders`
    assert shard_of("postgresql://db:5432/tenant_1", 3) == shard_of("postgresql://db:5432/tenant_1", 3)
    per_shard = Counter(shard_of(t.identity, 3) for t in fleet)
    assert min(per_shard.values()) > 60  # a hash, not everything in one shard


def test_budget_one_check_per_target_and_a_refusing_server_backs_off_as_a_whole():
    budget = Budget(FleetConfig(max_running=2))
    assert budget.claim("t1") and not budget.claim("t1") and budget.claim("t2")
    budget.run_slot()
    assert budget.release("t1", "db:5432", slot=True, connect_failed=True) > 0
    assert budget.backing_off("db:5432") > 0 and budget.backing_off("other:5432") == 0
    assert budget.claim("t1")
    budget.release("t1", "db:5432", slot=False, connect_failed=False)
    assert budget.backing_off("db:5432") > 0  # a round that never ran says nothing of the server
    budget.run_slot()
    budget.release("t1", "db:5432", slot=True, connect_failed=False)
    assert budget.backing_off("db:5432") == 0  # a connection that succeeded ends it


def test_budget_caps_checks_running_at_once():
    budget = Budget(FleetConfig(max_running=2))
    budget.run_slot()
    budget.run_slot()
    third = threading.Thread(target=budget.run_slot)
    third.start()
    third.join(0.2)
    assert third.is_alive()  # waits for a slot
    budget.release("a", "s", slot=True, connect_failed=False)
    third.join(5)
    assert not third.is_alive() and budget.peak_running == 2


def test_discovery_keeps_the_last_good_list_when_a_listing_fails_and_says_so():
    config = config_from_dict(fleet_config())
    answers: list[object] = [targets("tenant_1", "tenant_2"), DatabaseError("server down"), targets("tenant_1")]
    seen = []

    def lister(_name: str, _source: SourceConfig) -> list[Target]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    discovery = Discovery(config, lister=lister, on_status=lambda name, state: seen.append((state.up, state.error)))
    assert discovery.refresh()
    assert not discovery.refresh()  # failed: nothing changed
    assert [t.name for t in discovery.targets()["tenants"]] == ["tenant_1", "tenant_2"]
    assert seen[-1] == (False, "server down")
    assert discovery.refresh()  # tenant_2 disappeared
    assert [t.name for t in discovery.targets()["tenants"]] == ["tenant_1"]
    assert seen[-1] == (True, None)


def test_an_unset_source_variable_is_a_config_problem_naming_the_source(monkeypatch: pytest.MonkeyPatch):
    from monitor.db import url_problems

    monkeypatch.delenv("DW_FLEET_UNIT_UNSET", raising=False)
    config = config_from_dict(fleet_config(url=None, url_env="DW_FLEET_UNIT_UNSET"))
    assert url_problems(config) == ["sources.tenants.url_env: environment variable DW_FLEET_UNIT_UNSET is not set"]
    assert url_problems(config, environment=False) == []  # commands using one database do not refuse


def selector_config(**check: object) -> dict[str, object]:
    data = fleet_config()
    data["sources"] = {
        "eu": {"url": SERVER, "discover": "databases", "labels": {"env": "prod", "region": "eu"}},
        "us": {"url": "postgresql://monitor@us.internal/postgres", "discover": "databases",
               "labels": {"env": "prod", "region": "us"}},
        "staging": {"url": SERVER, "discover": "databases", "labels": {"env": "staging", "region": "eu"}},
    }
    data["databases"] = {"app": {"url": "postgresql://monitor@app.internal/app", "labels": {"env": "prod"}},
                         "other": {"url": "postgresql://monitor@app.internal/other"}}
    data["checks"] = [{"name": "logins", "table": "login_source", "key": ["user_id"], **check}]
    return data


def listed(source: str, server: str, *names: str, labels: tuple[tuple[str, str], ...] = ()) -> list[Target]:
    url = make_url(server)
    return [Target(source, name, None, url.set(database=name), labels) for name in names]


def test_a_check_selects_its_targets_by_labels_across_sources_and_databases():
    from monitor.fleet.discover import used_sources

    config = config_from_dict(selector_config(match_labels={"env": "prod"}))
    assert used_sources(config) == ["eu", "us"]  # staging is never listed
    found = {"eu": listed("eu", SERVER, "t1", labels=(("env", "prod"), ("region", "eu"))),
             "us": listed("us", "postgresql://monitor@us.internal/postgres", "t2",
                          labels=(("env", "prod"), ("region", "us")))}
    expanded = expand(config, found)
    assert expanded.names == ["logins@app", "logins@t1", "logins@t2"]  # a [databases] entry carrying env=prod too
    names = static_label_names(expanded)
    labelled = {c.name: series_labels(expanded, c, names) for c in expanded.checks}
    assert labelled == {"logins@app": ("logins", "app", "app", "prod", ""),
                        "logins@t1": ("logins", "t1", "t1", "prod", "eu"),
                        "logins@t2": ("logins", "t2", "t2", "prod", "us")}


def test_a_label_selector_with_a_source_narrows_that_source_only():
    config = config_from_dict(selector_config(source="eu", match_labels={"region": "eu"}))
    from monitor.fleet.discover import used_sources

    assert used_sources(config) == ["eu"]
    expanded = expand(config, {"eu": listed("eu", SERVER, "t1")})
    assert expanded.names == ["logins@t1"]


def test_a_place_two_sources_list_is_checked_once_and_a_clashing_name_only_once():
    config = config_from_dict(selector_config(match_labels={"region": "eu"}))
    found = {"eu": listed("eu", SERVER, "t1", "t2"), "staging": listed("staging", SERVER, "t1", "t3")}
    assert expand(config, found).names == ["logins@t1", "logins@t2", "logins@t3"]  # t1: one server, once
    config = config_from_dict(selector_config(match_labels={"env": "prod"}))
    clash = {"eu": listed("eu", SERVER, "app"), "us": listed("us", "postgresql://monitor@us.internal/x", "t2")}
    expanded = expand(config, clash)
    assert expanded.names == ["logins@app", "logins@t2"]  # the entry `app`, not the eu server's database `app`
    assert expanded.check("logins@app").database == "app"
    every = Counter(n for i in range(3) for n in expand(config, clash, Shard(i, 3)).names)
    assert every == Counter(expanded.names)  # the shards agree which one is checked


@pytest.mark.parametrize(("check", "expected"), [
    ({"match_labels": {"env": "prd"}},
     "checks[0] ('logins').match_labels: no source or database carries env=prd (labels in the file: env=prod, "
     "env=staging, region=eu, region=us)"),
    ({"source": "us", "match_labels": {"region": "eu"}},
     "checks[0] ('logins').match_labels: source 'us' does not carry region=eu (its labels: env=prod, region=us)"),
    ({"match_labels": {}}, "checks[0] ('logins').match_labels: names at least one label"),
    ({"match_labels": {"job": "x"}}, "label name 'job' is reserved"),
    ({"database": "app", "match_labels": {"env": "prod"}}, "set exactly one of 'database' or 'source'"),
])
def test_a_bad_label_selector_is_one_line(check, expected):
    found = problems(selector_config(**check))
    assert len(found) == 1 and expected in found[0], found


def test_a_server_out_of_connections_takes_as_many_checks_at_once_as_it_was_taking(
        monkeypatch: pytest.MonkeyPatch):
    from monitor.fleet import budget as budgets

    budget = Budget(FleetConfig(max_running=8, server_connections=4))

    def done(target: str, *, connect_failed: bool = False, exhausted: bool = False) -> None:
        budget.run_slot()
        budget.release(target, "db:5432", slot=True, connect_failed=connect_failed, entered=True, exhausted=exhausted)

    assert all(budget.enter_server("db:5432", 0) for _ in range(4))
    assert not budget.enter_server("db:5432", 0)  # the cap
    # Two are connected; the third and fourth are refused: the server takes two of ours.
    done("t3", connect_failed=True, exhausted=True)
    done("t4", connect_failed=True, exhausted=True)
    assert budget.server_limit("db:5432") == 2
    assert not budget.enter_server("db:5432", 0.05)  # two still run
    done("t1", connect_failed=False)
    waiting = threading.Thread(target=budget.enter_server, args=("db:5432", 30))
    assert budget.enter_server("db:5432", 0)  # one finished: one more may run, no more
    assert not budget.enter_server("db:5432", 0)
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()  # waits, unconnected, for a running one to finish
    done("t2", connect_failed=False)
    waiting.join(5)
    assert not waiting.is_alive()
    assert budget.enter_server("other:5432", 0)  # another server keeps its own cap
    monkeypatch.setattr(budgets, "SERVER_LIMIT_RECOVERY_SECONDS", 0.0)
    done("t5", connect_failed=False)
    assert budget.enter_server("db:5432", 0) and budget.server_limit("db:5432") == 3  # one more, tried again
    done("t5", connect_failed=True, exhausted=False)
    assert budget.server_limit("db:5432") == 3  # a server down, not out of connections, keeps its limit


def test_fleet_rounds_first_runs_are_spread_over_their_interval_at_most_a_minute():
    """A restart does not hit every database at once: each target's first round at random within its interval
    (a minute at most), the schedule read before anything runs."""
    from datetime import datetime

    from monitor.engine import Monitor
    from monitor.schedule import FIRST_RUN_SPREAD_SECONDS, Poller

    data = fleet_config()
    data["checks"] = [{"name": "logins", "source": "tenants", "table": "t", "key": ["k"], "interval": "10m"},
                      {"name": "often", "source": "tenants", "table": "t", "key": ["k"], "interval": "20s"}]
    config = expand(config_from_dict(data), {"tenants": targets(*(f"tenant_{i}" for i in range(100)))})
    monitor = Monitor(config)
    poller = Poller(monitor, lambda _result: None)
    poller._scheduler.start(paused=True)  # scheduled, never run
    try:
        now = datetime.now().astimezone()
        poller._schedule_all()
        firsts: dict[str, list[float]] = {"logins": [], "often": []}
        for check in config.checks:
            when = poller.next_run(check.name)
            assert when is not None
            firsts[check.template].append((when - now).total_seconds())
    finally:
        poller.shutdown()
        monitor.close()
    for template, limit in (("logins", FIRST_RUN_SPREAD_SECONDS), ("often", 20.0)):
        delays = firsts[template]
        assert all(-1 < d <= limit + 1 for d in delays), (template, min(delays), max(delays))
        assert max(delays) - min(delays) > limit / 2  # spread, not all at once
        assert len({round(d, 3) for d in delays}) > 90


def test_a_database_named_like_a_schema_target_is_told_apart_by_the_database_label():
    """`target` is `database/schema`: a database whose name has a slash (`app/acme`) has the same target label
    as the schema `acme` of `app`; the `database` label tells their series apart."""
    data = fleet_config()
    data["sources"] = {"dbs": {"url": SERVER, "discover": "databases", "labels": {"env": "prod"}},
                       "schemas": {"url": SERVER, "discover": "schemas", "schemas_query": "SELECT s FROM t",
                                   "labels": {"env": "prod"}}}
    data["checks"] = [{"name": "logins", "match_labels": {"env": "prod"}, "table": "t", "key": ["k"]}]
    config = config_from_dict(data)
    url = make_url(SERVER)
    found = {"dbs": [Target("dbs", "app/acme", None, url.set(database="app/acme"), (("env", "prod"),))],
             "schemas": [Target("schemas", "app", "acme", url.set(database="app"), (("env", "prod"),))]}
    expanded = expand(config, found)
    assert expanded.names == ["logins@app/acme"]  # one check name: the first selected is checked, logged
    data["checks"] = [{"name": f"logins-{s}", "source": s, "table": "t", "key": ["k"]} for s in ("dbs", "schemas")]
    expanded = expand(config_from_dict(data), found)
    labelled = {series_labels(expanded, c, ())[1:] for c in expanded.checks}
    assert labelled == {("app/acme", "app/acme"), ("app", "app/acme")}  # (database, target): two series


def test_a_target_named_with_a_newline_stays_on_one_log_line():
    """PostgreSQL allows a newline in a database name; its log fields are quoted, so no line is forged."""
    import logging

    from monitor.daemon import PlainFormatter, _Redactor

    record = logging.LogRecord("dupewatch", logging.INFO, __file__, 1, "check finished", None, None)
    record.fields = {"check": "logins@tenant\nERROR", "status": "ok"}
    line = PlainFormatter(_Redactor()).format(record)
    assert "\n" not in line and 'check="logins@tenant\\nERROR"' in line


def test_a_listing_longer_than_max_targets_fails_and_the_last_good_list_is_kept():
    from monitor.fleet.discover import discover

    config = config_from_dict(fleet_config(discover=["tenant_1", "tenant_2", "tenant_3"], max_targets=2))
    source = config.sources["tenants"]
    with pytest.raises(ConfigError, match=r"sources\.tenants: the listing has 3 targets, more than max_targets = 2"):
        discover("tenants", source)
    answers = [targets("tenant_1", "tenant_2")]

    def lister(name: str, listed: SourceConfig) -> list[Target]:
        return answers.pop(0) if answers else discover(name, listed)

    discovery = Discovery(config, lister=lister)
    assert discovery.refresh()
    assert not discovery.refresh()  # three targets: refused, the two kept
    assert [t.name for t in discovery.targets()["tenants"]] == ["tenant_1", "tenant_2"]
    assert "max_targets" in (discovery.states["tenants"].error or "")


def test_max_targets_must_be_a_positive_whole_number():
    with pytest.raises(ConfigError, match="max_targets"):
        config_from_dict(fleet_config(max_targets=0))


def test_a_round_that_waited_its_whole_interval_for_its_server_is_reported_as_its_checks_error():
    """A server taking fewer checks at once than rounds are due: a round that waited its whole interval for a
    place says so as each of its checks' result (with the server and the wait), instead of vanishing."""
    from monitor.engine import Monitor
    from monitor.schedule import Poller

    data = fleet_config()
    data["fleet"] = {"server_connections": 1}
    data["checks"] = [{"name": "logins", "source": "tenants", "table": "t", "key": ["k"], "interval": "0.3s"}]
    config = expand(config_from_dict(data), {"tenants": targets("tenant_1")})
    monitor = Monitor(config)
    results = []
    poller = Poller(monitor, results.append, stagger=False)
    try:
        server = targets("tenant_1")[0].server
        assert poller.budget.enter_server(server, 0)  # the one place the server has is taken
        poller.run_once("logins@tenant_1")
        [result] = results
        assert result.name == "logins@tenant_1" and result.status == "error" and result.error is not None
        assert result.error.startswith(f"waited 0.3s for a connection to server {server}"), result.error
        assert poller.failures("logins@tenant_1") == 1
    finally:
        poller.shutdown()
        monitor.close()


def test_a_server_limit_change_is_handed_on_and_exported(monkeypatch: pytest.MonkeyPatch):
    from prometheus_client import CollectorRegistry

    from monitor.fleet import budget as budgets
    from monitor.metrics import MetricsExporter

    changes: list[tuple[str, int]] = []
    budget = Budget(FleetConfig(max_running=8, server_connections=4), lambda s, n: changes.append((s, n)))
    assert all(budget.enter_server("db:5432", 0) for _ in range(3))
    for target in ("t2", "t3"):
        budget.run_slot()
        budget.release(target, "db:5432", slot=True, connect_failed=True, entered=True, exhausted=True)
    assert changes == [("db:5432", 2), ("db:5432", 1)]  # as many as were running beside each refusal
    budget.run_slot()
    budget.release("t1", "db:5432", slot=True, connect_failed=True, entered=True, exhausted=True)
    assert len(changes) == 2  # a refusal that leaves the limit as it was is no change
    monkeypatch.setattr(budgets, "SERVER_LIMIT_RECOVERY_SECONDS", 0.0)
    assert budget.enter_server("db:5432", 0)
    assert changes[-1] == ("db:5432", 2)  # one more, tried again

    config = expand(config_from_dict(fleet_config()), {"tenants": targets("tenant_1")})
    exporter = MetricsExporter(config, registry=CollectorRegistry(), process_metrics=False)
    exporter.servers({"db:5432": 4, "other:5432": 4}, 4)
    exporter.server_limit("db:5432", 2, 4)
    text = exporter.metrics.exposition().decode()
    assert 'dupewatch_server_connection_limit{server="db:5432"} 2.0' in text
    assert 'dupewatch_server_connections_limited{server="db:5432"} 1.0' in text
    assert 'dupewatch_server_connections_limited{server="other:5432"} 0.0' in text
    exporter.servers({"db:5432": 2}, 4)  # other's targets went: its series go
    assert "other:5432" not in exporter.metrics.exposition().decode()


def test_a_listing_past_its_deadline_counts_as_failed_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch):
    """A listing that outlives its deadline (a driver that does not bound the wait) is a failed listing for now:
    `dupewatch_discovery_up` 0 and its last good list kept, while the other sources are listed on time."""
    import importlib

    discovery_module = importlib.import_module("monitor.fleet.discover")

    release = threading.Event()
    first = threading.Event()

    def lister(name: str, _source: SourceConfig) -> list[Target]:
        if name == "silent" and first.is_set():
            release.wait(30)  # hangs, past its deadline
        if name == "silent":
            first.set()
        return []

    monkeypatch.setattr(discovery_module, "listing_deadline", lambda _source: 0.5)
    config = config_from_dict({
        "sources": {"fast": {"url": "postgresql://u@fast.invalid/db", "discover": "databases", "every": "0.2s"},
                    "silent": {"url": "postgresql://u@silent.invalid/db", "discover": "databases", "every": "0.2s"}},
        "checks": [{"name": "a", "source": "fast", "table": "t", "key": ["k"]},
                   {"name": "b", "source": "silent", "table": "t", "key": ["k"]}],
    })
    seen: list[tuple[str, bool, str | None]] = []
    changed = threading.Condition()

    def on_status(name: str, state: SourceState) -> None:
        with changed:
            seen.append((name, state.up, state.error))
            changed.notify_all()

    discovery = Discovery(config, on_status=on_status, lister=lister)
    try:
        assert discovery.refresh()  # both listed once
        discovery.start()
        with changed:
            assert changed.wait_for(lambda: any(n == "silent" and e for n, _, e in seen), 5), seen
            before = sum(n == "fast" for n, _, _ in seen)
            assert changed.wait_for(lambda: sum(n == "fast" for n, _, _ in seen) >= before + 3, 5), seen
            silent = [(up, error) for n, up, error in seen if n == "silent"]
        assert silent[-1][0] is False and "no answer within 0.5s" in (silent[-1][1] or ""), silent
        assert len(silent) == 2  # listed once, then one listing in flight (overdue): never two at once
        assert discovery.targets()["silent"] == []  # its last good list kept
    finally:
        release.set()
        discovery.stop()


def test_the_targets_of_a_server_failing_at_once_ask_it_why_once(monkeypatch: pytest.MonkeyPatch):
    """No storm of questions: a server-wide answer is shared by its other targets failing at the same moment;
    an answer about one database is that database's own."""
    import importlib

    from monitor.config import TargetDatabaseConfig
    from monitor.fleet.refusal import Refusals, Verdict

    refusal = importlib.import_module("monitor.fleet.refusal")
    config = expand(config_from_dict(fleet_config()), {"tenants": targets(*(f"tenant_{i}" for i in range(6)))})
    asked: list[str | None] = []
    answer = Verdict("server")

    def ask(db: Database, _url: object, database: str) -> Verdict:
        asked.append(database)
        return answer

    monkeypatch.setattr(refusal, "ask", ask)
    refusals = Refusals()
    entries = [(name, d) for name, d in config.databases.items() if isinstance(d, TargetDatabaseConfig)]
    verdicts: list[Verdict] = []
    threads = [threading.Thread(target=lambda n=name, d=entry: verdicts.append(
        refusals.why(config, d, Database(n, d), OSError("no answer")))) for name, entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert verdicts == [answer] * 6 and len(asked) == 1
    answer = Verdict("database", "it does not exist")
    other = Refusals()
    for name, entry in entries[:2]:
        assert other.why(config, entry, Database(name, entry), OSError("refused")) == answer
    assert len(asked) == 3  # each database asked about its own refusal


@pytest.mark.parametrize("how", ["its query cancelled", "its database looked up after"])
def test_a_check_whose_target_discovery_removed_while_it_ran_ends_in_one_line(how: str, monkeypatch: pytest.MonkeyPatch,
                                                                             caplog: pytest.LogCaptureFixture,
                                                                             tmp_path: Path):
    """Discovery removes a target (and cancels its queries) while one of its checks runs: the run ends in one
    line saying so, never a traceback (the daemon logs one line per failed check) nor an exception out of `run`."""
    import logging

    import sqlalchemy as sa

    from monitor.engine import CheckResult, Monitor
    from monitor.history import History
    from monitor.schedule import Poller

    template = config_from_dict(fleet_config())
    both = expand(template, {"tenants": targets("tenant_1", "tenant_2")})
    monitor = Monitor(both)
    doomed = next(c for c in both.checks if c.database == "tenants:tenant_2")
    figures = monitor._figures

    def removed_meanwhile(check, timing):
        monitor.retarget(expand(template, {"tenants": targets("tenant_1")}))
        if how == "its query cancelled":
            raise sa.exc.OperationalError("SELECT ...", {}, Exception("canceling statement due to user request"))
        return figures(check, timing)

    monkeypatch.setattr(monitor, "_figures", removed_meanwhile)
    history = History(tmp_path / "history.sqlite")
    reported: list[CheckResult] = []
    poller = Poller(monitor, reported.append, history=history)
    try:
        with caplog.at_level(logging.DEBUG):
            poller._run_and_report(monitor, doomed)
    finally:
        poller.shutdown()
        monitor.close()
    [result] = reported  # said (the daemon logs it in one line), not recorded: the target has no history any more
    assert history._conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    assert result.status == "error" and result.error is not None
    assert result.error == "database 'tenants:tenant_2' left the config while its check ran (a reload or fleet " \
                           "discovery removed it; its queries were cancelled)"
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
