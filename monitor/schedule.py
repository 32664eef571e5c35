"""Polling: APScheduler runs each check at its own interval, off the caller's thread.

Shared by the dashboard and the daemon. Each database gets its own thread pool, so a database that hangs
or is down never delays another database's checks. Fleet targets (`monitor.fleet`) share one pool per server
instead, of `[fleet] server_connections` workers, and run under the fleet's `Budget` (checks running at once,
one check per target, a refusing server backing off as a whole). A target's checks of one interval are one job,
a round, that runs them one after the other on one connection (`Database.holding`); the rounds' first runs are
spread at random over their interval (at most a minute) so that a restart does not connect to every database
at once.

A check never runs twice at once and a late run is
coalesced, not queued. A failing check is retried with exponential backoff and jitter (no reconnect
storm), and returns to its normal interval as soon as it succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import CheckConfig, ConfigError, TargetDatabaseConfig
from monitor.detect import CheckResult
from monitor.engine import DatabaseRemoved, Monitor
from monitor.fleet.budget import Budget
from monitor.fleet.refusal import Refusals, Verdict
from monitor.fleet.targets import target_of
from monitor.history import History

log = logging.getLogger("dupewatch.schedule")

MAX_BACKOFF_SECONDS = 300.0
WORKERS_PER_DATABASE = 2
FIRST_RUN_SPREAD_SECONDS = 60.0  # fleet targets' first runs: at random within their interval, at most this
BUSY_TARGET_RETRY_SECONDS = (0.5, 1.5)  # a check whose target is busy runs again within this
SERVER_WAIT_SECONDS = 60.0  # a round waits at most this (or its interval) for its server to take one more check

ResultCallback = Callable[[CheckResult], None]
StartCallback = Callable[[str], None]


def backoff_seconds(interval: float, failures: int, rng: random.Random | None = None) -> float:
    """Delay before retrying a check that failed `failures` times in a row: doubling, capped, +-20% jitter."""
    base: float = min(interval * (2 ** max(failures - 1, 0)), max(MAX_BACKOFF_SECONDS, interval))
    return base * (rng or random).uniform(0.8, 1.2)


class Poller:
    """Runs checks on their schedules and hands every result to `on_result` (on a worker thread)."""

    def __init__(self, monitor: Monitor, on_result: ResultCallback, *, history: History | None = None,
                 on_start: StartCallback | None = None, stagger: bool = True,
                 on_server_limit: Callable[[str, int], None] | None = None) -> None:
        self.monitor = monitor
        self.history = history
        self._on_result = on_result
        self._on_start = on_start
        self._stagger = stagger
        self._failures: dict[str, int] = {}
        self._running: set[str] = set()
        # Jobs `run_now` asked for that have not started since: a run already under way when it asked began
        # before what it was asked for (a live stream's gap), so the ask stands until a run starts after it.
        self._asked: set[str] = set()
        self._lock = threading.Lock()
        self.budget = Budget(monitor.config.fleet, on_server_limit)
        self.refusals = Refusals()
        self._rounds: dict[str, list[str]] = {}  # job id -> the fleet checks it runs (see `_plan_rounds`)
        self._job_of: dict[str, str] = {}  # a fleet check -> its round's job id
        self._not_before: dict[str, float] = {}  # a fleet check backing off -> monotonic time of its next try
        self._plan_rounds(monitor)
        self._pools = self._executors(monitor)
        self._scheduler = BackgroundScheduler(
            executors=dict(self._pools),
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._scheduler.add_listener(self._run_ended, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
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
        rounds = self._rounds
        for index, check in enumerate(self.monitor.config.checks):
            job = self._job_of.get(check.name, check.name)
            if job in existing:
                continue
            existing.add(job)
            if job in rounds and self._stagger:
                delay = timedelta(seconds=random.uniform(0, min(check.interval, FIRST_RUN_SPREAD_SECONDS)))
            else:
                # Spread the first runs over a second so 200 checks don't open 200 connections at once.
                delay = timedelta(milliseconds=index * 5) if self._stagger else timedelta(0)
            self._add_job(check, job, now + delay)

    def _add_job(self, check: CheckConfig, job: str, first_run: datetime) -> None:
        run = self._run_round if job in self._rounds else self._run
        self._scheduler.add_job(
            run, IntervalTrigger(seconds=check.interval), args=[job], id=job,
            name=job, executor=self._executor_of(self.monitor, check), next_run_time=first_run,
            replace_existing=True,
        )

    def _plan_rounds(self, monitor: Monitor) -> None:
        """Group each fleet target's checks of one interval into a round: one job that runs them one after the
        other on one connection (`Database.holding`), instead of a job and a connection per check."""
        rounds: dict[str, list[str]] = {}
        for check in monitor.config.checks:
            if target_of(monitor.config, check) is not None:
                rounds.setdefault(f"{check.database} every {check.interval:g}s", []).append(check.name)
        self._rounds = rounds
        self._job_of = {name: job for job, names in rounds.items() for name in names}

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
        self._plan_rounds(monitor)
        for pool_name, pool in self._executors(monitor).items():
            if pool_name not in self._pools:  # new database: give it its own pool
                self._pools[pool_name] = pool
                self._scheduler.add_executor(pool, alias=pool_name)
        wanted = {c.name for c in monitor.config.checks}
        jobs = {self._job_of.get(name, name) for name in wanted}
        for job in self._scheduler.get_jobs():
            if job.id not in jobs:
                job.remove()
        self._schedule_all(only_new)
        with self._lock:
            self._failures = {k: v for k, v in self._failures.items() if k in wanted}
            self._not_before = {k: v for k, v in self._not_before.items() if k in wanted}
            self._asked &= jobs

    # -- control --------------------------------------------------------------------------------

    def run_now(self, name: str | None = None) -> None:
        """Run one check (or all) as soon as possible, in a run that starts after this call; a check already
        running is not run twice at once: its next run follows the one under way."""
        now = datetime.now().astimezone()
        names = [name] if name else [c.name for c in self.monitor.config.checks]
        for check in names:
            job = self._job_of.get(check, check)
            with self._lock:
                self._not_before.pop(check, None)
                self._asked.add(job)
            try:
                self._scheduler.modify_job(job, next_run_time=now)
            except JobLookupError:
                with self._lock:
                    self._asked.discard(job)
                log.warning("no scheduled check named %s", check)

    def _run_ended(self, event: JobExecutionEvent) -> None:
        """A job's run ended (the scheduler counts it ended before it says so): a run asked for while it was under
        way, which the scheduler skipped (one run of a job at a time), is due now."""
        with self._lock:
            asked = event.job_id in self._asked
        if asked:
            try:
                self._scheduler.modify_job(event.job_id, next_run_time=datetime.now().astimezone())
            except JobLookupError:  # removed by a reload meanwhile
                with self._lock:
                    self._asked.discard(event.job_id)

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
        job = self._scheduler.get_job(self._job_of.get(name, name))
        return job.next_run_time if job else None

    def failures(self, name: str) -> int:
        with self._lock:
            return self._failures.get(name, 0)

    # -- the job --------------------------------------------------------------------------------

    def _run(self, name: str) -> None:
        with self._lock:
            self._asked.discard(name)  # this run starts after every ask so far
        monitor = self.monitor
        try:
            check = monitor.config.check(name)
        except Exception:  # removed by a reload while queued
            return
        target = target_of(monitor.config, check)
        if target is not None:
            self._run_target(monitor, [check], target, self._job_of.get(name, name))
            return
        self._run_and_report(monitor, check)

    def _run_round(self, job: str) -> None:
        """The due checks of one fleet target's round (those not backing off after failing), on one connection."""
        with self._lock:
            self._asked.discard(job)
        monitor = self.monitor
        names = self._rounds.get(job, [])
        now = time.monotonic()
        with self._lock:
            due = [name for name in names if self._not_before.get(name, 0.0) <= now]
        try:
            checks = [monitor.config.check(name) for name in due]
        except Exception:  # removed by a reload while queued
            return
        target = target_of(monitor.config, checks[0]) if checks else None
        if target is not None:
            self._run_target(monitor, checks, target, job)

    def _run_target(self, monitor: Monitor, checks: list[CheckConfig], target: TargetDatabaseConfig,
                    job: str) -> None:
        """Checks of one fleet target under the budget, one after the other on one connection; the reports (fix
        totals included) happen inside its slot. A connection its server refused fails the rest of the round
        with the same error, without trying again."""
        wait = self.budget.backing_off(target.server)
        if wait > 0:
            for check in checks:
                self._on_result(CheckResult(
                    check.name, check.database, "error", None, None, 0.0,
                    error=f"server {target.server} refused connections: its targets are not tried for another "
                          f"{wait:.0f}s (the whole server backs off)"))
            return
        database = checks[0].database
        # By what it is (server, database, schema), not its entry: two sources listing one database are one target.
        if not self.budget.claim(target.identity):  # another round of the target runs: soon, not beside it
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(job, next_run_time=datetime.now().astimezone() + timedelta(
                    seconds=random.uniform(*BUSY_TARGET_RETRY_SECONDS)))
            return
        verdict: Verdict | None = None
        slot = entered = False
        try:
            # A server that ran out of connections takes fewer checks at once: the others wait here, unconnected.
            waited = min(checks[0].interval, SERVER_WAIT_SECONDS)
            entered = self.budget.enter_server(target.server, waited)
            if not entered:  # the whole interval: said as the round's result, not skipped in silence
                self._report_waited(checks, target, waited)
                return
            self.budget.run_slot()
            slot = True
            with monitor.database(database).holding():
                for index, check in enumerate(checks):
                    if index and self.monitor is not monitor:
                        # A reload replaced (and closes) this monitor: the new one runs the rest of the round,
                        # rather than the closed one re-opening pools that nothing would close.
                        break
                    result = self._run_and_report(monitor, check)
                    failure = _connect_failure(monitor, check) if result.status == "error" else None
                    if failure is not None:
                        verdict = self.refusals.why(monitor.config, target, monitor.database_for(check), failure)
                        for rest in checks[index + 1:]:
                            self._report(rest, CheckResult(rest.name, rest.database, "error", None, None, 0.0,
                                                           error=result.error))
                        break
        except DatabaseRemoved:  # the target left the config (discovery) while its round waited
            return
        finally:
            whole_server = verdict is not None and verdict.refusal != "database"
            exhausted = verdict is not None and verdict.refusal == "exhausted"
            backoff = self.budget.release(target.identity, target.server, slot=slot, connect_failed=whole_server,
                                          entered=entered, exhausted=exhausted)
        if backoff:
            log.warning("server refused a connection: its targets back off", extra={"fields": {
                "server": target.server, "target": target.target, "retry_in_s": round(backoff, 1),
                "server_limit": self.budget.server_limit(target.server) if exhausted else None}})
        elif verdict is not None:
            log.warning("database refused a connection, the server did not: its other targets go on",
                        extra={"fields": {"server": target.server, "target": target.target,
                                          "reason": verdict.reason}})

    def _report_waited(self, checks: list[CheckConfig], target: TargetDatabaseConfig, waited: float) -> None:
        limit = self.budget.server_limit(target.server)
        for check in checks:
            self._report(check, CheckResult(
                check.name, check.database, "error", None, None, 0.0,
                error=f"waited {waited:g}s for a connection to server {target.server}: it takes {limit} of our "
                      f"checks at once now (it ran out of connections), and they were all in use"))

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
        self._report(check, result)
        return result

    def _report(self, check: CheckConfig, result: CheckResult) -> None:
        """Record and hand on one result (retrying a failed check later)."""
        self._after(check, result)
        # (a target discovery removed while its check ran has no history any more: its run is logged, not recorded)
        if self.history is not None and result.database in self.monitor.config.databases:
            try:
                self.history.record(result)
            except Exception as exc:  # a full disk must not stop monitoring
                log.error("could not record run of %s in history: %s", check.name, exc)
        self._on_result(result)

    def _after(self, check: CheckConfig, result: CheckResult) -> None:
        with self._lock:
            if result.status != "error":
                self._failures.pop(check.name, None)
                self._not_before.pop(check.name, None)
                return
            failures = self._failures.get(check.name, 0) + 1
            self._failures[check.name] = failures
        delay = backoff_seconds(check.interval, failures)
        if delay > check.interval and check.name in self._job_of:
            # Its round goes on for the target's other checks; this one sits out the rounds within its backoff.
            with self._lock:
                self._not_before[check.name] = time.monotonic() + delay - check.interval / 2
        elif delay > check.interval:
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(
                    check.name, next_run_time=datetime.now().astimezone() + timedelta(seconds=delay))


def _connect_failure(monitor: Monitor, check: CheckConfig) -> BaseException | None:
    """What the driver raised when the check's run could not connect; None once its target is gone."""
    try:
        return monitor.database_for(check).connect_failure
    except (KeyError, ConfigError):
        return None
