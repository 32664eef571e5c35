"""Discovery: the targets of each source, re-listed on its interval.

Asks the server, never a guess: PostgreSQL's `pg_database` (connectable, not a template, CONNECT allowed to
the role), MySQL/MariaDB's `SHOW DATABASES` without the system schemas, or the source's `schemas_query` (its
first column, run read-only in the source URL's database; a value listed twice is one target, an empty one
none), or the static list the config gives; then the `include` / `exclude` regular expressions (searched in the
name).

`Discovery` keeps, per source, the last list that was read successfully: when a listing fails (server down,
query refused) it logs so, counts it (`dupewatch_discovery_up` 0, `dupewatch_discovery_errors_total`) and the
targets it had stay checked; a target missing from a successful listing is dropped (its checks stop and their
series go). A source never listed yet is retried sooner than its interval. Each listing runs on a thread of its
own, so a source whose server hangs delays no other; one past `listing_deadline` counts as failed (said once).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from monitor.config import Config, ConfigError, DatabaseConfig, SourceConfig
from monitor.db import CONNECT_TIMEOUT_SECONDS, DEADLINE_GRACE_SECONDS, Database, DatabaseError, parse_url
from monitor.dialects.base import FleetUnsupported
from monitor.fleet.targets import Target, selected_sources

log = logging.getLogger("dupewatch.fleet")

FIRST_RETRY_SECONDS = 30.0  # a source with no good list yet is tried again this soon (or its interval if shorter)

Targets = dict[str, list[Target]]


def discover(name: str, source: SourceConfig) -> list[Target]:
    """The targets of one source, now. Raises `ConfigError` or `DatabaseError` (one line, password-free)."""
    url = parse_url(source.resolved_url(name), f"sources.{name}.url")
    labels = tuple(sorted(source.labels.items()))
    db = Database(f"sources.{name}", DatabaseConfig(url=url.render_as_string(hide_password=False),
                                                    statement_timeout=source.statement_timeout))
    try:
        if isinstance(source.discover, list):
            names, in_schemas = list(source.discover), False
        else:
            names, in_schemas = _listed(db, source), source.discover == "schemas"
        # A query may list a schema twice, or an empty value: one target each, none for nothing.
        chosen = [n for n in dict.fromkeys(names) if n and _wanted(n, source)]
        if len(chosen) > source.max_targets:
            raise ConfigError(f"sources.{name}: the listing has {len(chosen)} targets, more than max_targets = "
                              f"{source.max_targets} (raise it if that many are meant; a schemas_query returning "
                              f"row values would make a series per value)")
        targets = []
        for value in chosen:
            database, schema = (url.database or "", value) if in_schemas else (value, None)
            try:
                target_url = db.rules.target_url(url, database, schema)
            except FleetUnsupported as exc:
                raise ConfigError(f"sources.{name}.discover: {exc}") from None
            targets.append(Target(name, database, schema, target_url, labels, source.read_only))
        return targets
    finally:
        db.dispose()


def _listed(db: Database, source: SourceConfig) -> list[str]:
    with db.read_only() as conn:
        try:
            if source.schemas_query is not None:
                rows = conn.execute(sa.text(source.schemas_query)).all()
                return [str(row[0]) for row in rows if row and row[0] is not None]
            return db.rules.list_databases(conn)
        except FleetUnsupported as exc:
            raise ConfigError(f"sources.{db.name.removeprefix('sources.')}.discover: {exc}") from None
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None


def _wanted(name: str, source: SourceConfig) -> bool:
    if source.include is not None and re.search(source.include, name) is None:
        return False
    return source.exclude is None or re.search(source.exclude, name) is None


def used_sources(config: Config) -> list[str]:
    """The sources some check selects (an unused source is never discovered)."""
    return sorted({name for check in config.checks if check.needs_targets for name in selected_sources(config, check)})


@dataclass
class SourceState:
    """What is known of one source: its last good list, and how its last listing went."""

    targets: list[Target] | None = None  # None: never listed successfully
    up: bool = False
    last_success: float | None = None
    errors: int = 0
    error: str | None = None
    next_at: float = 0.0


Listener = Callable[[Targets], None]
StatusListener = Callable[[str, SourceState], None]


@dataclass
class _Listing:
    """One listing of a source in flight, on a thread of its own."""

    thread: threading.Thread
    deadline: float  # monotonic time after which it counts as failed (it may still answer later)
    changed: bool = False
    done: bool = False
    notify: bool = False  # its caller stopped waiting: it hands a change to `on_change` itself
    overdue: bool = False  # its deadline passed and that was said


def listing_deadline(source: SourceConfig) -> float:
    """How long a listing may take before it counts as failed: connecting, then its statement."""
    return CONNECT_TIMEOUT_SECONDS + source.statement_timeout + DEADLINE_GRACE_SECONDS


class Discovery:
    """Lists each used source on its own interval, each listing on a thread of its own (a source whose server
    hangs delays no other source's); `on_change` gets every source's targets (the last good lists) whenever one
    of them changed, `on_status` every source's state after each listing. A listing that has not answered
    within `listing_deadline` counts as failed (the last good list is kept); a source is never listed twice at
    once. `refresh()` lists sources now and waits for them, at most until their deadline (the daemon's first
    round)."""

    def __init__(self, config: Config, *, on_change: Listener | None = None, on_status: StatusListener | None = None,
                 lister: Callable[[str, SourceConfig], Sequence[Target]] = discover) -> None:
        self.config = config
        self._on_change = on_change
        self._on_status = on_status
        self._lister = lister
        self._lock = threading.Lock()
        self.states: dict[str, SourceState] = {name: SourceState() for name in used_sources(config)}
        self._listings: dict[str, _Listing] = {}  # sources being listed now
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def targets(self) -> Targets:
        with self._lock:
            return {name: list(state.targets or []) for name, state in self.states.items()}

    def refresh(self, names: Sequence[str] | None = None) -> bool:
        """List the sources (all, or `names`) now, at once, and wait for them (each at most until its deadline);
        returns whether some source's targets changed. One still listing then counts as failed for now, and
        hands its targets to `on_change` when it answers."""
        chosen = names if names is not None else list(self.states)
        started = [(name, self._start(name, notify=False)) for name in chosen]
        changed = False
        for name, listing in started:
            if listing is None:  # already being listed (it reports itself)
                continue
            listing.thread.join(max(listing.deadline - time.monotonic(), 0.0))
            with self._lock:
                finished, listing.notify = listing.done, not listing.done
            if finished:
                changed |= listing.changed
            else:
                self._overdue(name, listing)
        return changed

    def _start(self, name: str, *, notify: bool) -> _Listing | None:
        """A listing of the source on a thread of its own; None when one is in flight."""
        with self._lock:
            if name in self._listings:
                return None
            thread = threading.Thread(target=self._listed, args=(name,), name=f"dupewatch-discovery {name}",
                                      daemon=True)
            listing = self._listings[name] = _Listing(
                thread, time.monotonic() + listing_deadline(self.config.sources[name]), notify=notify)
        thread.start()
        return listing

    def _listed(self, name: str) -> None:
        """The listing thread: list the source, then hand a change on when nobody waits for it."""
        try:
            changed = self._list(name)
        except Exception:  # a bug must not stop discovery for good
            log.exception("discovery failed unexpectedly")
            changed = False
        with self._lock:
            listing = self._listings.pop(name)
            listing.changed, listing.done = changed, True
            notify = listing.notify
        self._wake.set()
        if changed and notify and self._on_change is not None and not self._stopping.is_set():
            self._on_change(self.targets())

    def _overdue(self, name: str, listing: _Listing) -> None:
        """A listing past its deadline: failed, for now (the last good list is kept), said once."""
        with self._lock:
            if listing.overdue or listing.done:
                return
            listing.overdue = True
            state = self.states[name]
            waited = listing_deadline(self.config.sources[name])
            state.up, state.errors = False, state.errors + 1
            state.error = f"sources.{name}: no answer within {waited:g}s (the listing goes on waiting)"
            kept = len(state.targets) if state.targets is not None else 0
        log.error("discovery failed, keeping the last good list of targets", extra={"fields": {
            "source": name, "targets": kept, "error": state.error}})
        self._status(name, state)

    def _list(self, name: str) -> bool:
        source = self.config.sources[name]
        state = self.states[name]
        now = time.time()
        try:
            found = list(self._lister(name, source))
        except (ConfigError, DatabaseError) as exc:
            with self._lock:
                state.up, state.errors, state.error = False, state.errors + 1, str(exc)
                retry = source.every if state.targets is not None else min(source.every, FIRST_RETRY_SECONDS)
                state.next_at = time.monotonic() + retry
            kept = len(state.targets) if state.targets is not None else 0
            log.error("discovery failed, keeping the last good list of targets", extra={"fields": {
                "source": name, "targets": kept, "retry_in_s": round(retry, 1), "error": str(exc)}})
            self._status(name, state)
            return False
        with self._lock:
            before = None if state.targets is None else [t.identity for t in state.targets]
            state.targets, state.up, state.error, state.last_success = found, True, None, now
            state.next_at = time.monotonic() + source.every
            changed = before != [t.identity for t in found]
        if changed:
            gone = sorted(set(before or []) - {t.identity for t in found})
            log.info("targets discovered", extra={"fields": {
                "source": name, "targets": len(found), "removed": len(gone)}})
        self._status(name, state)
        return changed

    def _status(self, name: str, state: SourceState) -> None:
        if self._on_status is not None:
            self._on_status(name, state)

    # -- background ------------------------------------------------------------------------------

    def start(self) -> None:
        """Re-list each source on its interval from now on (once: a started discovery carries on)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="dupewatch-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                idle = {n: s for n, s in self.states.items() if n not in self._listings}
                due = [n for n, s in idle.items() if s.next_at <= now]
                late = [(n, listing) for n, listing in self._listings.items()
                        if listing.deadline <= now and not listing.overdue]
                upcoming = min([*(s.next_at for s in idle.values()),
                                *(listing.deadline for listing in self._listings.values() if not listing.overdue)],
                               default=now + 60.0)
            for name in due:
                self._start(name, notify=True)
            for name, listing in late:
                self._overdue(name, listing)
            if not due and not late:
                self._wake.wait(max(upcoming - now, 0.05))
                self._wake.clear()


def discover_all(config: Config) -> Mapping[str, list[Target]]:
    """Every used source listed once, now (for one-shot commands); a failure is a `ConfigError` or `DatabaseError`."""
    return {name: discover(name, config.sources[name]) for name in used_sources(config)}
