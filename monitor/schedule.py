"""Polling: APScheduler runs each check at its own interval, off the caller's thread.

Shared by the dashboard and the daemon. Each database gets its own thread pool, so a database that hangs
or is down never delays another database's checks. Fleet targets (`monitor.fleet`) share one pool per server
instead, of `[fleet] server_connections` workers, and run under the fleet's `Budget` (checks running at once,
one check per target, a refusing server backing off as a whole); their first runs are spread at random over
their interval (at most a minute) so that a restart does not connect to every database at once.

A check never runs twice at once and a late run is
coalesced, not queued. A failing check is retried with exponential backoff and jitter (no reconnect
storm), and returns to its normal interval as soon as it succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import CheckConfig, ConfigError, TargetDatabaseConfig
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet.budget import Budget
from monitor.fleet.targets import target_of
from monitor.history import History

log = logging.getLogger("dupewatch.schedule")

MAX_BACKOFF_SECONDS = 300.0
WORKERS_PER_DATABASE = 2
FIRST_RUN_SPREAD_SECONDS = 60.0  # fleet targets' first runs: at random within their interval, at most this
BUSY_TARGET_RETRY_SECONDS = (0.5, 1.5)  # a check whose target is busy runs again within this

ResultCallback = Callable[[CheckResult], None]
StartCallback = Callable[[str], None]


def backoff_seconds(interval: float, failures: int, rng: random.Random | None = None) -> float:
    """Delay before retrying a check that failed `failures` times in a row: doubling, capped, +-20% jitter."""
    base: float = min(interval * (2 ** max(failures - 1, 0)), max(MAX_BACKOFF_SECONDS, interval))
    return base * (rng or random).uniform(0.8, 1.2)


class Poller:
    """Runs checks on their schedules and hands every result to `on_result` (on a worker thread)."""

    def __init__(self, monitor: Monitor, on_result: ResultCallback, *, history: History | None = None,
                 on_start: StartCallback | None = None, stagger: bool = True) -> None:
        self.monitor = monitor
        self.history = history
        self._on_result = on_result
        self._on_start = on_start
        self._stagger = stagger
        self._failures: dict[str, int] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self.budget = Budget(monitor.config.fleet)
        self._pools = self._executors(monitor)
        self._scheduler = BackgroundScheduler(
            executors=dict(self._pools),
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.paused = False

    @staticmethod
    def _executors(monitor: Monitor) -> dict[str, ThreadPoolExecutor]:
        pools = {}
        for check in monitor.config.checks:
            alias = Poller._executor_of(monitor, check)
            if alias not in pools:
                target = target_of(monitor.config, check)
                size = monitor.config.fleet.server_connections if target is not None else WORKERS_PER_DATABASE
                pools[alias] = ThreadPoolExecutor(size)
        pools["default"] = ThreadPoolExecutor(1)
        return pools

    @staticmethod
    def _executor_of(monitor: Monitor, check: CheckConfig) -> str:
        """A database's own pool, or for a fleet target its server's (the per-server connection cap)."""
        target = target_of(monitor.config, check)
        return f"server {target.server}" if target is not None else check.database

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._schedule_all()
        self._scheduler.start()

    def _schedule_all(self, only_new: bool = False) -> None:
        now = datetime.now().astimezone()
        existing = {job.id for job in self._scheduler.get_jobs()} if only_new else set()
        for index, check in enumerate(self.monitor.config.checks):
            if check.name in existing:
                continue
            if target_of(self.monitor.config, check) is not None and self._stagger:
                delay = timedelta(seconds=random.uniform(0, min(check.interval, FIRST_RUN_SPREAD_SECONDS)))
            else:
                # Spread the first runs over a second so 200 checks don't open 200 connections at once.
                delay = timedelta(milliseconds=index * 5) if self._stagger else timedelta(0)
            self._add_job(check, now + delay)

    def _add_job(self, check: CheckConfig, first_run: datetime) -> None:
        self._scheduler.add_job(
            self._run, IntervalTrigger(seconds=check.interval), args=[check.name], id=check.name,
            name=check.name, executor=self._executor_of(self.monitor, check), next_run_time=first_run,
            replace_existing=True,
        )

    def shutdown(self, wait: bool = False) -> None:
        """Stop scheduling; with `wait`, also wait for runs in flight (without, they are abandoned)."""
        if self._scheduler.running:
            # APScheduler holds its job store lock while waiting for its executors, and a finishing run
            # takes that lock (to back off or report its next run): never wait inside its shutdown.
            self._scheduler.shutdown(wait=False)
        if wait:
            for pool in self._pools.values():
                pool.shutdown(wait=True)

    def reload(self, monitor: Monitor, *, only_new: bool = False) -> None:
        """Swap in a new monitor (a reloaded config): jobs are replaced, runs in flight finish on the old one.
        `only_new`: the checks kept keep their schedule (new fleet targets were discovered, others went)."""
        self.monitor = monitor
        for pool_name, pool in self._executors(monitor).items():
            if pool_name not in self._pools:  # new database: give it its own pool
                self._pools[pool_name] = pool
                self._scheduler.add_executor(pool, alias=pool_name)
        wanted = {c.name for c in monitor.config.checks}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        self._schedule_all(only_new)
        with self._lock:
            self._failures = {k: v for k, v in self._failures.items() if k in wanted}

    # -- control --------------------------------------------------------------------------------

    def run_now(self, name: str | None = None) -> None:
        """Run one check (or all) as soon as possible; a check already running is not run twice."""
        now = datetime.now().astimezone()
        names = [name] if name else [c.name for c in self.monitor.config.checks]
        for check in names:
            try:
                self._scheduler.modify_job(check, next_run_time=now)
            except JobLookupError:
                log.warning("no scheduled check named %s", check)

    def run_once(self, name: str) -> None:
        """Run one check on the caller's thread, outside the schedule (e.g. on request while paused)."""
        self._run(name)

    def pause(self) -> None:
        self._scheduler.pause()
        self.paused = True

    def resume(self) -> None:
        self._scheduler.resume()
        self.paused = False

    def is_running(self, name: str) -> bool:
        with self._lock:
            return name in self._running

    def running(self) -> set[str]:
        """The checks whose query is in flight right now (a shutdown abandons them)."""
        with self._lock:
            return set(self._running)

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name)
        return job.next_run_time if job else None

    def failures(self, name: str) -> int:
        with self._lock:
            return self._failures.get(name, 0)

    # -- the job --------------------------------------------------------------------------------

    def _run(self, name: str) -> None:
        monitor = self.monitor
        try:
            check = monitor.config.check(name)
        except Exception:  # removed by a reload while queued
            return
        target = target_of(monitor.config, check)
        if target is not None:
            self._run_target(monitor, check, target)
            return
        self._run_and_report(monitor, check)

    def _run_target(self, monitor: Monitor, check: CheckConfig, target: TargetDatabaseConfig) -> None:
        """A fleet target's check under the budget; the report (fix totals included) happens inside its slot."""
        wait = self.budget.backing_off(target.server)
        if wait > 0:
            self._on_result(CheckResult(
                check.name, check.database, "error", None, None, 0.0,
                error=f"server {target.server} refused connections: its targets are not tried for another "
                      f"{wait:.0f}s (the whole server backs off)"))
            return
        if not self.budget.claim(check.database):  # another check of the target runs: soon, not beside it
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(check.name, next_run_time=datetime.now().astimezone() + timedelta(
                    seconds=random.uniform(*BUSY_TARGET_RETRY_SECONDS)))
            return
        connect_failed = False
        slot = False
        try:
            self.budget.run_slot()
            slot = True
            result = self._run_and_report(monitor, check)
            connect_failed = result.status == "error" and _connect_failed(monitor, check)
        finally:
            backoff = self.budget.release(check.database, target.server, slot=slot, connect_failed=connect_failed)
        if backoff:
            log.warning("server refused a connection: its targets back off", extra={"fields": {
                "server": target.server, "target": target.target, "retry_in_s": round(backoff, 1)}})

    def _run_and_report(self, monitor: Monitor, check: CheckConfig) -> CheckResult:
        """Run, record and report one check."""
        name = check.name
        with self._lock:
            self._running.add(name)
        try:
            if self._on_start:
                self._on_start(name)
            result = monitor.run(check)
        finally:
            with self._lock:
                self._running.discard(name)
        self._after(check, result)
        if self.history is not None:
            try:
                self.history.record(result)
            except Exception as exc:  # a full disk must not stop monitoring
                log.error("could not record run of %s in history: %s", name, exc)
        self._on_result(result)
        return result

    def _after(self, check: CheckConfig, result: CheckResult) -> None:
        with self._lock:
            if result.status != "error":
                self._failures.pop(check.name, None)
                return
            failures = self._failures.get(check.name, 0) + 1
            self._failures[check.name] = failures
        delay = backoff_seconds(check.interval, failures)
        if delay > check.interval:
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(
                    check.name, next_run_time=datetime.now().astimezone() + timedelta(seconds=delay))


def _connect_failed(monitor: Monitor, check: CheckConfig) -> bool:
    """Whether the check's run found its server refusing connections; False once its target is gone."""
    try:
        return monitor.database_for(check).server_refused
    except (KeyError, ConfigError):
        return False
