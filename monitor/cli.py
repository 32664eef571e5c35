"""The `dupewatch` command line: a thin caller of the engine.

Exit codes: 0 clean, 1 duplicates found, 2 bad input or a check that errored. Errors a user can cause are
one line on stderr, never a traceback. Heavy modules (Textual, APScheduler, prometheus-client) are
imported only by the commands that need them, so `dupewatch check` starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from monitor import __version__, interrupt
from monitor.config import ConfigError, close_matches, config_to_name, find_config_file, load_config
from monitor.words import command, command_naming, counted, remember_config

if TYPE_CHECKING:
    from monitor.config import CheckConfig, Config
    from monitor.daemon import LogFormat
    from monitor.detect import CheckResult
    from monitor.engine import Monitor
    from monitor.fix.records import FixRecord

EXIT_OK, EXIT_DUPLICATES, EXIT_ERROR = 0, 1, 2
EXIT_WARNINGS = 3  # `dupewatch check`: the worst outcome is a check above its `warn_above`
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
NO_CONFIG = ("no config file found: pass --config FILE or create ./dupewatch.toml (`dupewatch config example` prints "
             "every option, documented); to see dupewatch at work first, run `dupewatch demo`")
F = TypeVar("F", bound=Callable[..., Any])  # a click command, decorated with options
P = ParamSpec("P")
R = TypeVar("R")


class UsageProblem(click.ClickException):
    """A one-line error the user can fix; exits 2."""

    exit_code = EXIT_ERROR

    def show(self, file: Any = None) -> None:
        for line in self.format_message().splitlines() or [""]:
            click.echo(f"dupewatch: error: {line}", err=True)


def fail(message: str) -> NoReturn:
    raise UsageProblem(message)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one line and exit code 2."""
    from monitor.db import DatabaseError

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ConfigError, DatabaseError) as exc:
            fail(str(exc))

    return wrapper


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.ensure_object(dict)["config"] = value
    return value


config_option = click.option(
    "--config", "-c", "config_path", metavar="FILE", expose_value=False, callback=_remember_config,
    help="Config file (default: ./dupewatch.toml, then $XDG_CONFIG_HOME/dupewatch/config.toml).",
)


def on_one_fix(command: F) -> F:
    """The arguments of a command acting on one recorded fix (undo, purge, abandon): the config, FIX_ID, --yes and
    --json."""
    for option in reversed((config_option, click.argument("fix_id", metavar="FIX_ID"),
                            click.option("--yes", is_flag=True,
                                         help="Do not ask for confirmation (required without a terminal)."),
                            click.option("--json", "as_json", is_flag=True, help="Print one JSON document."))):
        command = option(command)
    return command


def load_context_config(ctx: click.Context, *, required: bool = True, environment: bool = True,
                        targets: bool = True) -> Config | None:
    """The config the command names or finds, its database URLs checked too (every problem at once).

    `environment=False` checks only the URLs written in the file: commands that use one database (fix, undo,
    guard) must not refuse because the variable of another database is not set in this shell. With `targets`,
    a config whose checks name a source comes back expanded: its sources are listed now, and each such check
    is one check per target, named `CHECK@TARGET` (see monitor/fleet/)."""
    from monitor.db import url_problems

    explicit = ctx.ensure_object(dict).get("config")
    path = find_config_file(explicit)
    if path is None:
        if not required:
            return None
        fail(NO_CONFIG)
    config = load_config(path)
    ctx.call_on_close(remember_config(config_to_name(path)))  # what printed next-step commands name (`command`)
    problems = url_problems(config, environment=environment)
    if problems:
        raise ConfigError(*problems)
    if targets and config.needs_targets:
        config = with_targets(config)
    return config


def with_targets(config: Config) -> Config:
    """`config` over its sources' targets, listed now; a source that cannot be listed is a one-line error."""
    from monitor.db import DatabaseError
    from monitor.fleet import expand
    from monitor.fleet.discover import discover_all

    try:
        return expand(config, discover_all(config))
    except DatabaseError as exc:
        raise ConfigError(f"{config.path or 'config'}: discovery failed: {exc}") from None


class DupewatchGroup(click.Group):
    """Ctrl-C ends a command with one line and exit code 130 (click would say "Aborted!" and exit 1, which
    `dupewatch check` uses for "duplicates found" and `dupewatch fix` for "done, some groups skipped"); a
    subcommand's unknown option or missing argument is one line and exit 2 (click prints its usage around it)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.exceptions.Abort):  # Abort: Ctrl-C or end of input at a prompt
            click.echo("dupewatch: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except click.UsageError as exc:  # a subcommand's arguments: one line, as every other bad input
            usage_error(ctx, exc)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # `dupewatch --bogus`
            usage_error(ctx, exc)


def usage_error(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """Click's usage error as one line naming the command, exit 2."""
    names: list[str] = []
    at = exc.ctx or ctx
    while at.parent is not None:  # the root is `dupewatch`, however Python was asked to run it
        names.insert(0, at.info_name or "")
        at = at.parent
    command = " ".join(["dupewatch", *names])
    click.echo(f"dupewatch: error: {command}: {exc.format_message().rstrip('.')}; `{command} --help` says how "
               "to call it", err=True)
    ctx.exit(EXIT_ERROR)


@click.group(cls=DupewatchGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(__version__, prog_name="dupewatch")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Watch production databases for duplicate rows; explain, fix and guard against them.

    Without a subcommand, opens the live dashboard. New here? `dupewatch demo` shows it at work on a
    built-in database, no server or config needed.
    """
    ctx.ensure_object(dict)
    interrupt.install()  # a Ctrl-C a driver takes for a statement's error is raised again (monitor/interrupt.py)
    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty, no colour (the subcommands inherit it)
        ctx.color = False
    if ctx.invoked_subcommand is None:
        ctx.invoke(tui)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--full", is_flag=True, help="Run incremental checks as a full pass of their table.")
@click.argument("checks", nargs=-1, metavar="[CHECK]...")
@click.pass_context
@user_errors
def check(ctx: click.Context, as_json: bool, full: bool, checks: tuple[str, ...]) -> None:
    """Run the checks once (all, or those named) and report.

    Incremental checks use and update the state store the daemon and dashboard use ([state] path), so
    repeated runs read only new rows. Exit code 0 when clean, 1 when duplicates or violations were found (above
    `fail_above`, for a check that sets it), 3 when the worst is a check above its `warn_above`, 2 on bad input
    or a check error. DURATION is the query alone; --json adds setup_ms, the connecting and
    reflecting before it.
    """
    from monitor.db import url_problems
    from monitor.engine import Monitor

    try:
        template = load_context_config(ctx, environment=False, targets=False)
        assert template is not None
        config = with_targets(template) if template.needs_targets else template
        chosen = chosen_checks(config, checks, template)
        # The variables of the databases the chosen checks use (another database's may be unset here).
        problems = url_problems(config, databases={c.database for c in chosen})
        if problems:
            raise ConfigError(*problems)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"checks": [], "error": str(exc), "problems": exc.problems}))
        raise
    state = open_state(config) if any(c.incremental for c in chosen) else None
    monitor = Monitor(config, state=state)
    try:
        # Unknown tables and columns of every chosen check, before any check runs.
        problems = monitor.preflight(chosen)
        if problems:
            if as_json:
                click.echo(json.dumps({"checks": [], "error": "\n".join(problems), "problems": problems}))
            raise ConfigError(*problems)
        results = monitor.run_many(chosen, full=full)
        notices = live_notices(config, monitor, {c.database for c in chosen})
    finally:
        monitor.close()
        if state is not None:
            state.close()
    if as_json:
        entries = [check_entry(config, r) for r in results]
        click.echo(json.dumps({"checks": entries}, indent=2, default=str))
    else:
        print_results(results)
    print_index_advice(results)
    print_notes(results)
    for notice in notices:
        click.echo(f"dupewatch: {notice}", err=True)
    for name in targetless_checks(config, template):
        if not checks or name in checks:
            click.echo(f"dupewatch: check {name!r} ran on no target (its source lists none)", err=True)
    sys.exit(exit_code(results))


def chosen_checks(config: Config, names: Sequence[str], template: Config | None = None) -> list[CheckConfig]:
    """The checks named (all when none): a fleet check's name chooses it on every target. `template` is the
    config as written: a fleet check whose selection has no target runs nowhere, and when nothing is left to
    run that is a one-line error naming them."""
    if not names:
        chosen = list(config.checks)
    else:
        chosen = []
        for name in names:
            found = [c for c in config.checks if c.name != name and c.template == name]
            if not found and template is not None and name in targetless_checks(config, template):
                continue
            if not found:
                refuse_unknown_target(config, name)
            chosen.extend(found or [config.check(name)])
    if not chosen and template is not None:
        empty = [n for n in targetless_checks(config, template) if not names or n in names]
        raise ConfigError(f"{config.path or 'config'}: nothing to run: no target for "
                          + ", ".join(f"check {n!r}" for n in empty)
                          + " (its source lists none, or none matches its include, exclude or match_labels)")
    return chosen


def refuse_unknown_target(config: Config, name: str) -> None:
    """A fleet check named without one of its targets (`CHECK`, or `CHECK@TARGET` with a target it does not
    run on): a `ConfigError` naming a few of its targets, not the hundreds the generic message would list."""
    if any(c.name == name for c in config.checks):
        return
    made = [c for c in config.checks if c.name != c.template]
    for template in sorted({c.template for c in made}, key=len, reverse=True):
        targets = sorted(c.name[len(template) + 1:] for c in made if c.template == template)
        some = ", ".join(targets[:3]) + (", ..." if len(targets) > 3 else "")
        if name == template:
            raise ConfigError(f"check {name!r} runs on {counted(len(targets), 'target')}: name one, as "
                              f"CHECK@TARGET ({name}@{targets[0]}; targets: {some})")
        if name.startswith(template + "@"):
            target = name[len(template) + 1:]
            raise ConfigError(f"check {template!r} has no target {target!r}{close_matches(target, targets)} "
                              f"({counted(len(targets), 'target')}: {some})")
    if made:
        names = sorted({c.template for c in config.checks})
        raise ConfigError(f"{config.path or 'config'}: no check named {name!r}{close_matches(name, names)} "
                          f"(have: {', '.join(names)}; a fleet check is named CHECK@TARGET)")


def targetless_checks(config: Config, template: Config) -> list[str]:
    """The fleet checks of `template` that the expanded `config` runs on no target."""
    made = {c.template for c in config.checks}
    return [c.name for c in template.checks if c.needs_targets and c.name not in made]


def check_entry(config: Config, result: CheckResult) -> dict[str, Any]:
    """One entry of `check --json`: the run, plus the check as configured and the target it ran on (one entry
    per check and target)."""
    from monitor.fleet import series_labels

    check_config = config.check(result.name)
    name, database, target = series_labels(config, check_config, ())
    return {**result.as_json(), "check": name, "target": target, "target_database": database,
            "labels": dict(config.databases[check_config.database].labels)}


def open_state(config: Config) -> Any:
    """The state store shared with the daemon and the dashboard; a one-line error when it cannot open."""
    import sqlite3

    from monitor.history import History, default_state_path

    path = Path(config.state.path or default_state_path()).expanduser()
    try:
        return History(path, config.state.retention)
    except (OSError, sqlite3.Error) as exc:
        fail(f"state path {path}: cannot open the state file: {exc}")


def live_notices(config: Config, monitor: Any, databases: set[str]) -> list[str]:
    """What `live = true` cannot do on these databases (SQLite: no stream, it keeps polling), one line each."""
    from monitor.live import polling_notices

    return polling_notices(config, monitor, databases)


def print_index_advice(results: Sequence[CheckResult]) -> None:
    """Once per check, on stderr (so `--json` stays one document): the index that would make it fast."""
    for result in results:
        if result.index_advice:
            click.echo(f"dupewatch: {result.name}: without an index its incremental runs read more than the new "
                       f"rows; create it with: {result.index_advice}", err=True)


def print_notes(results: Sequence[CheckResult]) -> None:
    """What incremental runs have to say (rows in the future, late rows waiting for the full pass, why a run was
    a full pass), one line each on stderr."""
    for result in results:
        for note in result.notes:
            click.echo(f"dupewatch: {result.name}: {note}", err=True)


@main.group(name="config", short_help="Check a config file.")
def config_group() -> None:
    """Work with the config file."""


@config_group.command()
def example() -> None:
    """Print config.example.toml: every option, documented, with its default (`> dupewatch.toml` to start one)."""
    click.echo(example_config(), nl=False)


def example_config() -> str:
    """The text of config.example.toml: packaged beside the code in a wheel, at the checkout's root otherwise."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "config.example.toml", package.parent / "config.example.toml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise UsageProblem("config.example.toml is not installed with this copy of dupewatch")


@config_group.command()
@config_option
@click.option("--offline", is_flag=True,
              help="Do not connect: check the file alone (fields, names, query files, URLs written in it).")
@click.pass_context
@user_errors
def validate(ctx: click.Context, offline: bool) -> None:
    """Check a config file and report every problem at once, one line each; exit 0 valid, 2 not.

    Without --offline it also connects to each database and checks that the tables and columns the checks
    name exist (read-only, nothing runs); a database that cannot be reached is a problem too. Suitable
    for CI and for the systemd unit's ExecReload guard.
    """
    from monitor.db import url_problems

    explicit = ctx.ensure_object(dict).get("config")
    path = find_config_file(explicit)
    if path is None:
        fail(NO_CONFIG)
    config = load_config(path)
    problems = url_problems(config, environment=not offline)
    problems.extend(_custom_query_problems(config))
    if not offline and not problems:
        problems.extend(_database_problems(config))
    if problems:
        raise ConfigError(*problems)
    click.echo(f"{path}: valid ({counted(len(config.checks), 'check')}"
               f"{', not connected' if offline else ''})")


def _custom_query_problems(config: Config) -> list[str]:
    """Custom SQL that is not a SELECT, found without connecting."""
    from monitor.detect import CheckDefinitionError, ensure_select

    problems = []
    for check in config.checks:
        if check.is_custom:
            try:
                ensure_select(config.custom_sql(check))
            except CheckDefinitionError as exc:
                problems.append(f"{config.locate(check.name, 'query' if check.query else 'sql')}: {exc}")
    return problems


def _database_problems(config: Config) -> list[str]:
    """Unknown tables and columns, and databases that cannot be reached (once each, naming their checks)."""
    from monitor.db import DatabaseError
    from monitor.engine import Monitor

    monitor = Monitor(config)
    problems: list[str] = []
    try:
        for name in config.databases:
            checks = [c.name for c in config.checks if c.database == name]
            try:
                with monitor.database(name).read_only():
                    pass
            except DatabaseError as exc:
                problems.append(f"{config.path}: databases.{name}: {exc} (checks: {', '.join(checks) or 'none'})")
        problems.extend(monitor.preflight(stored_values=True))
    finally:
        monitor.close()
    return problems


def exit_code(results: Sequence[CheckResult]) -> int:
    """2 when a check errored, else 1 when one failed (found anything, or more than its `fail_above`), else 3
    when one is above its `warn_above`, else 0."""
    if any(r.status == "error" for r in results):
        return EXIT_ERROR
    outcomes = {r.outcome or ("fail" if r.found else "ok") for r in results}
    if "fail" in outcomes:
        return EXIT_DUPLICATES
    if "warn" in outcomes:
        return EXIT_WARNINGS
    return EXIT_OK


_STATUS_COLOURS = {"ok": "green", "duplicates": "yellow", "violations": "yellow", "error": "red"}
_OUTCOME_COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}



def format_duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def print_results(results: Sequence[CheckResult]) -> None:
    """The human table of `dupewatch check`, then one line per error."""
    from monitor.thresholds import format_percent

    headers = ("CHECK", "DATABASE", "STATUS", "OUTCOME", "GROUPS", "EXCESS ROWS", "EXCESS %", "DURATION")
    rows = [
        (r.name, r.database, r.status, r.outcome or "-",
         "-" if r.groups is None else f"{r.groups:,}",
         "-" if r.excess_rows is None else f"{r.excess_rows:,}",
         format_percent(r.excess_percent) or "-",
         format_duration(r.duration_ms))
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    numeric = {4, 5, 6, 7}

    def line(cells: Sequence[str], result: CheckResult | None = None) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            if i == 2 and result is not None:
                text = click.style(text, fg=_STATUS_COLOURS.get(result.status), bold=result.status != "ok")
            if i == 3 and result is not None and result.outcome:
                text = click.style(text, fg=_OUTCOME_COLOURS[result.outcome], bold=result.outcome != "ok")
            out.append(text)
        return "  ".join(out).rstrip()

    click.echo(click.style(line(headers), bold=True))
    for result, row in zip(results, rows, strict=True):
        click.echo(line(row, result))
    errors = error_lines(results)
    if errors:
        click.echo()
        for names, error in errors:
            click.echo(click.style(f"{names}: ", fg="red", bold=True) + error, err=False)


def error_lines(results: Sequence[CheckResult]) -> list[tuple[str, str]]:
    """The errors of a run as (checks, error) lines: an error shared by several checks (a database that
    cannot be reached) once, naming them all; the check's name is not repeated inside its error."""
    by_error: dict[str, list[str]] = {}
    for r in results:
        if r.error:
            by_error.setdefault(r.error.removeprefix(f"check {r.name!r}: "), []).append(r.name)
    return [(", ".join(names), error) for error, names in by_error.items()]


@main.command(short_help="The built-in demo: five real race incidents, no setup needed.")
@click.option("--once", is_flag=True, help="Run the checks once and print the table instead of the dashboard.")
@click.option("--no-racer", is_flag=True, help="Do not keep reproducing the races in the background.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to build the demo database (default: the per-user data directory).")
@click.option("--reset", is_flag=True, help="Remove the demo's database and run history, then exit.")
@click.option("--print-config", is_flag=True,
              help="Print the demo's config (building its database if missing) for the other commands "
                   "(`check`, `fix`, `undo`, `daemon` with --config FILE), then exit.")
@user_errors
def demo(once: bool, no_racer: bool, directory: Path | None, reset: bool, print_config: bool) -> None:
    """The embedded SQLite demo: one table per real incident, no server or config needed.

    It writes its database and the dashboard's run history under the per-user data directory
    (~/.local/share/dupewatch/demo on Linux) unless --dir says otherwise; --reset removes them.
    """
    from monitor.demo import demo_config, demo_config_toml, demo_dir

    def build_demo(database: Path) -> Path:
        """The demo database built, or one line naming the directory as the user gave it (or the default)."""
        from monitor.demo import build_demo as build

        try:
            return build(database)
        except OSError as exc:
            where = f"--dir {directory}" if directory is not None else str(database.parent)
            fail(f"{where}: cannot write the demo database there: {exc.strerror or exc}")

    if reset:
        reset_demo(directory or demo_dir())
        return
    if print_config:  # e.g. `dupewatch demo --print-config > demo.toml && dupewatch daemon --config demo.toml`
        database = (directory or demo_dir()) / "demo.sqlite"
        if not database.is_file():
            build_demo(database)
        click.echo(demo_config_toml(database.resolve()), nl=False)
        return
    from monitor.tui import has_terminal

    path = build_demo((directory or demo_dir()) / "demo.sqlite")
    config = demo_config(path)
    if once or not has_terminal():
        if not once:
            click.echo("dupewatch: no terminal for the live dashboard; printing the figures once "
                       "(`dupewatch demo --once`)", err=True)
        run_demo_once(config, path)
        return
    from monitor.tui.app import run_dashboard

    if config.state.path is not None:
        # The demo database was just rebuilt: runs recorded against the previous one would draw a false trend.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{config.state.path}{suffix}").unlink(missing_ok=True)
    sys.exit(run_dashboard(config, racer_path=None if no_racer else path, demo=True))


DEMO_FILES = ("demo.sqlite", "state.sqlite", "daemon-state.sqlite")


def reset_demo(directory: Path) -> None:
    """Remove the files `dupewatch demo` wrote in `directory` (its database, with any fix archives in it, and
    the run history), and the directory when nothing else is left in it."""
    removed = []
    for name in DEMO_FILES:
        for suffix in ("", "-wal", "-shm", "-journal"):
            file = directory / f"{name}{suffix}"
            if file.is_file():
                file.unlink()
                removed.append(file.name)
    with contextlib.suppress(OSError):  # absent, or holds files the demo did not write
        directory.rmdir()
    if removed:
        click.echo(f"dupewatch demo: removed {', '.join(removed)} from {directory}")
    else:
        click.echo(f"dupewatch demo: nothing to remove in {directory}")


def run_demo_once(config: Config, path: Path) -> None:
    from monitor.engine import Monitor

    click.echo(click.style("dupewatch demo", bold=True)
               + f": five real race-condition incidents, planted in {path}\n")
    monitor = Monitor(config)
    try:
        results = monitor.run_many()
    finally:
        monitor.close()
    print_results(results)
    click.echo()
    for check_config in config.checks:
        click.echo(click.style(f"{check_config.name}: ", bold=True) + (check_config.description or ""))
    click.echo("\nRun `dupewatch demo` for the live dashboard, or `dupewatch check --config FILE` "
               "on your own database (`dupewatch config example` prints every option).")


@main.command()
@config_option
@click.pass_context
@user_errors
def tui(ctx: click.Context) -> None:
    """Open the live dashboard."""
    config = load_context_config(ctx, required=False)
    if config is None:
        fail(NO_CONFIG)
    from monitor.tui.app import DashboardStartError, run_dashboard

    try:
        code = run_dashboard(config)
    except DashboardStartError as exc:
        fail(str(exc))
    sys.exit(code)


# -- fix, fixes, undo, guard: thin callers of monitor.fix ------------------------------------------

FIX_BATCH_SIZE = 5000  # groups per transaction; monitor.fix.DEFAULT_BATCH_SIZE (not imported: keeps startup light)


# What is known after an unexpected error (a bug) in each command of the fix machinery.
# `{fixes}` and `{guard}` stand for those commands as the user must type them (`words.command`).
_AFTER_A_BUG = {
    "fix": "the open batch was rolled back; `{fixes}` shows where the fix stands",
    "fix --dry-run": "a dry run: nothing changed",
    "fix, before its first batch": "no batch had begun; `{fixes}` shows where the fix stands",
    "undo": "the undo's transaction was rolled back, nothing changed",
    "guard": "`{guard}` again shows whether the index is there",
    "purge": "`{fixes}` shows whether the fix is purged",
    "abandon": "`{fixes}` shows whether the fix is abandoned",
}


def _after_a_bug(command: str, options: dict[str, Any]) -> str | None:
    """`_AFTER_A_BUG` of a fix that is a dry run, or began no batch in this process (`execute.batches_begun`)."""
    if command != "fix":
        return None
    if options.get("dry_run"):
        return _AFTER_A_BUG["fix --dry-run"]
    execute = sys.modules.get("monitor.fix.execute")
    if execute is None or not execute.batches_begun():
        return _AFTER_A_BUG["fix, before its first batch"]
    return None


def fix_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Refusals and rolled-back batches of the fix machinery: one line, exit 2. An unexpected error (a bug)
    too, saying what is known of the command's state (see `_AFTER_A_BUG`)."""
    known = _AFTER_A_BUG.get(func.__name__)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from monitor.db import DatabaseError
        from monitor.detect import CheckDefinitionError
        from monitor.fix import FixError

        try:
            return func(*args, **kwargs)
        except (FixError, CheckDefinitionError) as exc:
            fail(str(exc))
        except (click.exceptions.Exit, click.ClickException, ConfigError, DatabaseError):
            raise
        except BrokenPipeError:  # `dupewatch fix X --dry-run | head`: the reader left; nothing to report
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's own advice for EPIPE
            raise SystemExit(2) from None
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            state = _after_a_bug(func.__name__, kwargs) or known
            if state:
                state = state.format(fixes=command("fixes"), guard=command("guard", str(kwargs.get("check_name"))))
            fail(f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} ("
                 f"{state + '; ' if state else ''}please report this)")

    return wrapper


def _duration_option(flag: str) -> Callable[[click.Context, click.Parameter, str | None], float | None]:
    """A click callback reading a DURATION option (`2s`, `500ms`): a bad value is one line naming `flag`, exit 2."""

    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
        from monitor.config import parse_duration

        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            fail(f"{flag}: {exc}")

    return parse


_lock_timeout = _duration_option("--lock-timeout")


lock_timeout_option = click.option(
    "--lock-timeout", "lock_timeout", metavar="DURATION", callback=_lock_timeout,
    help="If building the unique index concurrently does not succeed, take the table's write lock (waiting at "
         "most DURATION, e.g. 2s) and build it with the application's writes paused.")


def _echo_guard_round(line: str) -> None:
    click.echo(f"  guard {line}", err=True)


def interactive() -> bool:
    """Whether an operator can be asked to confirm (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm_by_name(name: str, what: str) -> bool:
    answer = click.prompt(f"Type the check name ({name}) to {what}", default="", show_default=False, err=True)
    return answer.strip() == name


def _echo_lines(lines: Sequence[str], *, err: bool = False) -> None:
    for line in lines:
        click.echo(line, err=err)


@main.command(short_help="Delete a check's duplicates safely (preview with --dry-run).")
@config_option
@click.argument("check_name", metavar="CHECK")
@click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"Duplicate groups per transaction, every batch (no sizing by time); with --batch-time, the "
                   f"most a batch takes. [default: {FIX_BATCH_SIZE} at most]")
@click.option("--batch-time", "batch_time", metavar="DURATION", callback=_duration_option("--batch-time"),
              help="How long each batch (one transaction holding its rows' locks) aims to take, e.g. 0.5s: the "
                   "first batch is small, the next grow while fast and shrink when slow. [default: [fix] "
                   "batch_time, 0.5s]")
@click.option("--add-constraint", is_flag=True,
              help="Afterwards add the unique index (see `dupewatch guard`), fixing duplicates that arrive "
                   "meanwhile, in up to 3 rounds.")
@lock_timeout_option
@click.option("--merge-distinct", is_flag=True,
              help="Also merge groups whose rows differ on another unique constraint or index (the schema says "
                   "they are different entities; left out without this, or the check's merge_distinct).")
@click.pass_context
@user_errors
@fix_errors
def fix(ctx: click.Context, check_name: str, dry_run: bool, as_json: bool, yes: bool, batch_size: int | None,
        batch_time: float | None, add_constraint: bool, lock_timeout: float | None, merge_distinct: bool) -> None:
    """Delete a check's duplicate rows safely: keep one per group, archive the rest, repoint references.

    Exit code 0 when done, 1 when done but some groups were left out by the plan (rows another unique
    constraint says are distinct) or changed meanwhile and were skipped (or the constraint could not be
    added), 2 when refused or stopped (nothing of the current batch changed).
    With --dry-run: 0, or 2 when something blocks the fix.

    The fix role (`fix_url`) needs SELECT, INSERT, UPDATE, DELETE on the table and on every table referencing
    it, and CREATE where the fix keeps its own tables (beside the table, or `[fix] schema`): dupewatch_fix,
    dupewatch_fix_reference, dupewatch_plan_<id>, dupewatch_archive_<table>, dupewatch_repoint_<id>_<n>. See
    the README, "The fix's tables, and who can read them".
    """
    from monitor import fix as fixing
    from monitor.engine import Monitor
    from monitor.fix.render import plan_lines, report_lines

    config = load_context_config(ctx, environment=False)
    assert config is not None
    refuse_unknown_target(config, check_name)
    chosen = next((c for c in config.checks if c.name == check_name), None)
    if chosen is not None and config.databases[chosen.database].read_only:
        fail(f"{config.locate(chosen.name)}: runs on a read-only target (read_only = true on its database or "
             "source): no fix")
    if lock_timeout is not None and not add_constraint:
        fail("--lock-timeout applies to the unique index: use it with --add-constraint "
             f"(or `{command('guard', check_name)}`)")
    monitor = Monitor(config)
    guard = None
    try:
        fixing.target.target(monitor, check_name)  # refuses custom query checks before anything else
        if dry_run:
            pending = fixing.find_unfinished(monitor, check_name)
            if pending is not None:  # what `fix --yes` runs is that fix, not the plan below
                click.echo(f"note: fix {pending.fix_id} of {check_name!r} ({pending.state}, started "
                           f"{pending.created_at} by {pending.os_user}) is unfinished: "
                           f"{pending.groups + pending.skipped:,} of {counted(pending.total_groups, 'group')} done; "
                           f"`{command('fix', check_name, '--yes')}` resumes it, not the plan below "
                           f"(`{command('undo', pending.fix_id)}` puts back what its batches did)", err=True)
            plan = fixing.make_plan(monitor, check_name, merge_distinct=merge_distinct)
            if add_constraint and (refusal := _guard_refusal(monitor, check_name, lock_timeout)):
                plan.blockers.append(f"--add-constraint: {refusal}")
            if as_json:
                click.echo(json.dumps(plan.as_json(), indent=2, default=str))
            else:
                _echo_lines(plan_lines(plan))
            sys.exit(EXIT_ERROR if plan.blockers else EXIT_OK)
        if not yes and not interactive():
            fail(f"refusing to fix {check_name!r} without confirmation: no terminal to confirm on and no --yes "
                 f"(review the plan with `{command('fix', check_name, '--dry-run')}`); nothing changed")
        if add_constraint and (refusal := _guard_refusal(monitor, check_name, lock_timeout)):
            raise fixing.FixRefused(f"{refusal}; nothing changed (fix without --add-constraint to remove the "
                                    "duplicates only)")
        confirmed = None if yes else _confirmed_plan(monitor, check_name, merge_distinct)

        def show_progress(p: fixing.FixProgress) -> None:
            click.echo(f"  {p.groups_done:,}/{counted(p.groups_total, 'group')}: {p.deleted:,} deleted, "
                       f"{p.repointed:,} repointed, {p.skipped:,} skipped", err=True)

        report = fixing.run_fix(monitor, check_name, confirmed, batch_size=batch_size, batch_time=batch_time,
                                progress=None if as_json else show_progress, merge_distinct=merge_distinct)
        if add_constraint and report.state == "done":
            guard = _guard_after(monitor, check_name, report, lock_timeout=lock_timeout, batch_size=batch_size,
                                 progress=None if as_json else show_progress,
                                 on_round=None if as_json else lambda r: _echo_guard_round(r.line()))
    finally:
        monitor.close()
    if as_json:
        click.echo(json.dumps({**report.as_json(), **({"guard": guard.as_json()} if guard else {})}, indent=2))
    else:
        _echo_lines(report_lines(report, config=config_to_name(config.path)))
    incomplete = report.skipped or report.state != "done" or (add_constraint and not report.constraint)
    sys.exit(EXIT_DUPLICATES if incomplete else EXIT_OK)


def _guard_refusal(monitor: Any, check_name: str, lock_timeout: float | None) -> Any:
    """`guard_refusal`: why `--add-constraint` would be refused whatever the fix deletes, or None."""
    from monitor.fix.guard import guard_refusal

    return guard_refusal(monitor, check_name, lock_timeout=lock_timeout)


def _guard_after(monitor: Any, check_name: str, report: Any, **options: Any) -> Any:
    """`guard_after_fix`; a failure it does not report itself (the database went away, a bug) must not read as
    if the fix had been rolled back: the fix is committed."""
    from monitor.db import DatabaseError
    from monitor.fix.guard import guard_after_fix

    try:
        return guard_after_fix(monitor, check_name, report, **options)
    except Exception as exc:
        cause = str(exc) if isinstance(exc, DatabaseError) else \
            f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (please report this)"
        fail(f"fix {report.fix_id} of {check_name!r} is done and committed ({counted(report.deleted, 'row')} "
             f"deleted and archived; `{command('undo', report.fix_id)}` restores them), but adding the unique index "
             f"failed: {cause}")


def _confirmed_plan(monitor: Any, check_name: str, merge_distinct: bool) -> Any:
    """On a terminal: show what will happen and have the operator type the check's name."""
    from monitor import fix as fixing
    from monitor.fix.render import plan_lines

    pending = fixing.find_unfinished(monitor, check_name)
    if pending is not None:
        click.echo(f"fix {pending.fix_id} of {check_name!r} ({pending.state}, started {pending.created_at} by "
                   f"{pending.os_user}) is unfinished: {pending.groups + pending.skipped:,} of "
                   f"{counted(pending.total_groups, 'group')} done; confirming resumes it.", err=True)
        if not confirm_by_name(check_name, "resume it"):
            fail("not confirmed; nothing changed")
        return None
    plan = fixing.prepare_fix(monitor, check_name, merge_distinct=merge_distinct)
    _echo_lines(plan_lines(plan), err=True)
    assert plan.fix_id is not None  # prepare_fix records the snapshot under a fix id
    if plan.blockers or not plan.groups:
        fixing.discard_fix(monitor, check_name, plan.fix_id)
        if plan.blockers:
            fail(f"check {check_name!r} cannot be fixed: {plan.blockers[0]}")
        click.echo(f"check {check_name!r} has no duplicates; nothing to do", err=True)
        sys.exit(EXIT_OK)
    if not confirm_by_name(check_name, "delete these rows"):
        fixing.discard_fix(monitor, check_name, plan.fix_id)
        fail("not confirmed; nothing changed")
    return plan


@main.group(short_help="Past fixes, newest first; purge or abandon one.",
            invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@user_errors
@fix_errors
def fixes(ctx: click.Context, as_json: bool) -> None:
    """List past fixes (newest first) recorded in the configured databases.

    `dupewatch fixes purge FIX_ID` deletes a done, undone or abandoned fix's archived rows and drops its logs;
    `dupewatch fixes abandon FIX_ID` gives up an unfinished fix, keeping what its batches did undoable."""
    if ctx.invoked_subcommand is not None:
        return
    from monitor.engine import Monitor
    from monitor.fix import list_fixes
    from monitor.fix.render import RECORD_HEADERS, record_cells

    config = load_context_config(ctx, environment=False)
    assert config is not None
    monitor = Monitor(config)
    try:
        found = list_fixes(monitor)
    finally:
        monitor.close()
    if as_json:
        click.echo(json.dumps({"fixes": [{"database": db, **r.as_json()} for db, r in found]}, indent=2))
        return
    if not found:
        click.echo("no fixes recorded")
        return
    rows = [record_cells(db, r) for db, r in found]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(RECORD_HEADERS)]
    for cells in (RECORD_HEADERS, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


@fixes.command(short_help="Delete a fix's archived rows and drop its logs (no undo after).")
@on_one_fix
@click.pass_context
@user_errors
@fix_errors
def purge(ctx: click.Context, fix_id: str, yes: bool, as_json: bool) -> None:
    """Delete what a done, undone or abandoned fix kept for undo: its rows in the archives (after an undo, copies
    of the restored rows) and its repoint logs. The fix's record stays in `dupewatch fixes`; it can no longer be
    undone. Exit code 0 when purged, 2 when refused (a fix that is not done, undone or abandoned, no confirmation,
    something firing on its DDL that writes rows)."""
    from monitor.fix.purge import PURGEABLE, purge_fix

    def confirm(record: FixRecord) -> None:
        if record.state in PURGEABLE or not interactive():  # (else purge_fix refuses it, saying why)
            _confirm_fix_command(record, "purge", yes, "its archived rows and logs are deleted"
                                 + ("; it can no longer be undone" if record.state != "undone" else ""))

    report = _on_recorded_fix(ctx, fix_id, confirm, purge_fix)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo(f"fix {report.fix_id} purged: {counted(report.archived_rows, 'archived row')} deleted, "
                   f"{counted(report.logs_dropped, 'log table')} dropped")


@fixes.command(short_help="Give up an unfinished fix; what its batches did stays archived and undoable.")
@on_one_fix
@click.pass_context
@user_errors
@fix_errors
def abandon(ctx: click.Context, fix_id: str, yes: bool, as_json: bool) -> None:
    """Give up an unfinished fix (planned, running, stopped or failed) that cannot go on, say one whose plan table
    is gone: it is recorded as abandoned and its plan table, if any is left, dropped. Nothing else is deleted: the
    rows its committed batches deleted stay in the archive, `dupewatch undo FIX_ID` still restores them, and the
    next `dupewatch fix` of the check plans afresh. Exit code 0 when abandoned, 2 when refused (a fix that is not
    unfinished, one running in another process, no confirmation)."""
    from monitor.fix.abandon import abandon_fix, refuse_unless_abandonable

    def confirm(record: FixRecord) -> None:
        refuse_unless_abandonable(record)
        _confirm_fix_command(record, "abandon", yes,
                             f"{counted(record.deleted, 'row')} deleted so far; it will never be resumed; what its "
                             f"batches did stays archived (`{command('undo', record.fix_id)}` restores it)")

    report = _on_recorded_fix(ctx, fix_id, confirm, abandon_fix)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo(f"fix {report.fix_id} abandoned ({counted(report.deleted, 'row')} deleted by its batches, kept "
                   f"in the archive: `{command('undo', report.fix_id)}` restores them); "
                   f"`{command('fix', report.check)}` plans afresh")


def _on_recorded_fix(ctx: click.Context, fix_id: str, confirm: Callable[[FixRecord], None],
                     act: Callable[[Monitor, str], R]) -> R:
    """`act(monitor, fix_id)` once `confirm(record)` has let it; an unknown fix id is said before any confirmation
    is asked for."""
    from monitor.engine import Monitor
    from monitor.fix.undo import find_fix

    config = load_context_config(ctx, environment=False)
    assert config is not None
    monitor = Monitor(config)
    try:
        confirm(find_fix(monitor, fix_id)[1])
        return act(monitor, fix_id)
    finally:
        monitor.close()


def _confirm_fix_command(record: FixRecord, verb: str, yes: bool, what: str) -> None:
    """Ask the operator to type the check's name before `verb` (purge, abandon) changes fix `record`, saying
    `what` it does; refused in one line without a terminal and without --yes."""
    if yes:
        return
    if not interactive():
        fail(f"refusing to {verb} {record.fix_id} without confirmation: no terminal to confirm on and no --yes; "
             "nothing changed")
    click.echo(f"fix {record.fix_id} of {record.check_name!r} on {record.table_name} ({record.state}): {what}",
               err=True)
    if not confirm_by_name(record.check_name, f"{verb} it"):
        fail("not confirmed; nothing changed")


@main.command(short_help="Restore the rows a fix deleted.")
@on_one_fix
@click.option("--drop-constraint", is_flag=True,
              help="First drop the check's unique index uq_dupewatch_<check> (added by `fix --add-constraint` or "
                   "`guard`), which would refuse the restored duplicates.")
@click.pass_context
@user_errors
@fix_errors
def undo(ctx: click.Context, fix_id: str, yes: bool, as_json: bool, drop_constraint: bool) -> None:
    """Restore the rows a fix deleted (original keys) and point references back, in one transaction.

    A refusal names the unique constraint the database reports and says whether dupewatch added it; only
    dupewatch's own guard is dropped, with --drop-constraint."""
    from monitor.engine import Monitor
    from monitor.fix import undo_fix
    from monitor.fix.undo import find_fix

    config = load_context_config(ctx, environment=False)
    assert config is not None
    monitor = Monitor(config)
    try:
        _db, record = find_fix(monitor, fix_id)  # an unknown id says so before asking for a confirmation
        if not yes and not interactive():
            fail(f"refusing to undo {fix_id} without confirmation: no terminal to confirm on and no --yes; "
                 "nothing changed")
        if not yes:
            click.echo(f"fix {record.fix_id} of {record.check_name!r} on {record.table_name}: "
                       f"{counted(record.archived, 'row')} to restore, "
                       f"{counted(record.repointed, 'reference')} to point back",
                       err=True)
            if not confirm_by_name(record.check_name, "undo it"):
                fail("not confirmed; nothing changed")
        report = undo_fix(monitor, fix_id, drop_constraint=drop_constraint)
    finally:
        monitor.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        dropped = f"; unique index {report.constraint_dropped} dropped" if report.constraint_dropped else ""
        defaulted = (f"; column(s) added since the fix took their default in the restored rows: "
                     f"{', '.join(report.defaulted)}" if report.defaulted else "")
        click.echo(f"fix {report.fix_id} undone: {report.restored_said()}{dropped}{defaulted}{report.left_said()}")


@main.command(short_help="Add the unique index that keeps a check's duplicates out.")
@config_option
@click.argument("check_name", metavar="CHECK")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--lock-timeout", "lock_timeout", metavar="DURATION", callback=_lock_timeout,
              help="Build a plain CREATE UNIQUE INDEX under the table's write lock, waiting at most DURATION "
                   "(e.g. 2s) for it; the application's writes wait while it builds.")
@click.pass_context
@user_errors
@fix_errors
def guard(ctx: click.Context, check_name: str, as_json: bool, lock_timeout: float | None) -> None:
    """Add the unique index that stops the check's duplicates from coming back (needs none left).

    Exit code 0 when the index was added or a valid, matching one is present; 2 when refused (duplicates,
    an index of that name that does not match, an interrupted build, a lock not granted in time).
    """
    from monitor.engine import Monitor
    from monitor.fix import add_guard

    config = load_context_config(ctx, environment=False)
    assert config is not None
    refuse_unknown_target(config, check_name)
    assert config is not None
    monitor = Monitor(config)
    try:
        report = add_guard(monitor, check_name, lock_timeout=lock_timeout)
    finally:
        monitor.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    state = "added" if report.created else "already present"
    click.echo(f"unique index {report.index_name} {state}: {report.statement}")
    _echo_lines([f"  note: {note}" for note in report.notes])


# -- audit, init: thin callers of monitor.audit ----------------------------------------------------

def _audit_options(func: F) -> F:
    func = click.option("--budget", default="60s", show_default=True, metavar="DURATION",
                        help="Time for the whole audit (catalog and measurements), e.g. 30s, 2m.")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(func)
    func = click.option("--schema", "schemas", multiple=True, metavar="NAME",
                        help="A schema (MySQL/MariaDB: a database) to audit; repeat for more. "
                             "Default: the connection's default schema.")(func)
    func = click.option("--source", "sources", multiple=True, metavar="DIR",
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help="The application's code (Python, Ruby): its get_or_create-style lookups are "
                             "checked against the unique indexes; repeat for more.")(func)
    func = click.option("--url", envvar="DUPEWATCH_URL", required=True, metavar="URL",
                        help="The database URL (default: $DUPEWATCH_URL).")(func)
    return func


@main.command(short_help="Find duplicate risks nobody wrote a check for.")
@_audit_options
@click.option("--write", "write_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write a config watching every finding to FILE (never overwrites).")
@user_errors
def audit(url: str, sources: tuple[Path, ...], schemas: tuple[str, ...], as_json: bool, budget: str,
          write_path: Path | None) -> None:
    """Audit a database's catalog for tables that can hold race duplicates, and measure them (read-only).

    Exit code 0 when no duplicates were found, 1 when a finding has duplicates (or is an invalid unique
    index), 2 on bad input or an unreachable database.
    """
    run_audit_command(url, schemas, as_json, budget, write_path, sources=sources)


@main.command(short_help="Audit a database and write ./dupewatch.toml.")
@_audit_options
@user_errors
def init(url: str, sources: tuple[Path, ...], schemas: tuple[str, ...], as_json: bool, budget: str) -> None:
    """The same as `dupewatch audit --write dupewatch.toml`, except that it exits 0 once the file is written
    (duplicates found or not), so that `dupewatch init --url URL && dupewatch` opens the dashboard on it."""
    from monitor.config import CONFIG_FILE_NAME

    run_audit_command(url, schemas, as_json, budget, Path(CONFIG_FILE_NAME), init=True, sources=sources)


def _url_given_as() -> str:
    """How the user gave the database URL: `--url`, or `$DUPEWATCH_URL` when it came from the environment."""
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("url") if context is not None else None
    return "$DUPEWATCH_URL" if source == click.core.ParameterSource.ENVIRONMENT else "--url"


def run_audit_command(url: str, schemas: Sequence[str], as_json: bool, budget: str, write_path: Path | None,
                      *, init: bool = False, sources: Sequence[Path] = ()) -> None:
    from monitor.audit import run_audit
    from monitor.audit.report import URL_ENV, config_text, table_lines, write_config
    from monitor.config import parse_duration

    try:
        seconds = parse_duration(budget)
    except ValueError as exc:
        fail(f"--budget: {exc}")
    # Errors name what the user typed: `init` writes its file without a --write flag.
    written = str(write_path) if init else f"--write {write_path}"
    instead = "remove it, or write another file with `dupewatch audit --write FILE`" if init else \
        "choose another name or remove it"
    if write_path is not None and write_path.exists():
        fail(f"{written}: file exists; refusing to overwrite it ({instead})")
    # (a URL read from a file ends in a newline, which would end the database's name)
    report = run_audit(url.strip(), list(schemas), seconds, sources=list(sources), given_as=_url_given_as())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        _echo_lines([f"dupewatch: note: {n}" for n in report.notes], err=True)
    else:
        _echo_lines(table_lines(report, shorten=sys.stdout.isatty()))
    if write_path is not None:
        text = config_text(report)
        if text is None and init:
            # exit 0 here would let `dupewatch init && dupewatch` fail on a config that does not exist
            fail(f"nothing to watch: no finding justifies a check, so {write_path} was not written; "
                 "write a check by hand (`dupewatch config example` prints every option, documented)")
        if text is None:
            click.echo(f"dupewatch: nothing to watch, {write_path} not written", err=True)
        else:
            try:
                write_config(write_path, text)
            except FileExistsError:
                fail(f"{written}: file exists; refusing to overwrite it ({instead})")
            except OSError as exc:
                fail(f"{written}: {exc.strerror or exc}")
            click.echo(f"dupewatch: wrote {write_path}; it reads the database URL from ${URL_ENV}: "
                       f"`{command_naming(write_path)}` opens the dashboard on it", err=True)
            if init:
                sys.exit(EXIT_OK)
    sys.exit(EXIT_DUPLICATES if report.has_duplicates else EXIT_OK)


@main.command(short_help="Run the checks unattended and serve Prometheus metrics.")
@config_option
@click.option("--log-format", type=click.Choice(["plain", "json"]), default="plain", show_default=True,
              help="Log lines on stderr: `key=value` text, or one JSON object per line.")
@click.option("--shard", "shard_spec", metavar="I/N", default=None,
              help="Run only the targets of shard I of N (I from 0), by a stable hash of each target; default "
                   "$DUPEWATCH_SHARD, or $DUPEWATCH_SHARDS with the ordinal of $POD_NAME (a StatefulSet pod).")
@click.pass_context
@user_errors
def daemon(ctx: click.Context, log_format: LogFormat, shard_spec: str | None) -> None:
    """Run every check on its schedule with no terminal and serve Prometheus metrics.

    Metrics are served on `[metrics] listen` (default 127.0.0.1:9641). SIGHUP reloads the config (an
    invalid one is logged and the running one kept); SIGTERM or SIGINT stops within seconds, exit 0.
    """
    from monitor.daemon import DaemonStartError, run
    from monitor.fleet import shard_from_environment

    shard = shard_from_environment(shard_spec)
    config = load_context_config(ctx, targets=False)  # the daemon lists its sources itself, and again later
    assert config is not None
    try:
        code = run(config, log_format, shard)
    except DaemonStartError as exc:
        fail(str(exc))
    # Queries abandoned in flight keep their worker threads, which a normal exit would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
