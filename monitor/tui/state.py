"""What the dashboard knows about each check: its latest result, the one before, a short history, and
whether it is running. Plain data updated on the UI thread from messages; no Textual here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import get_args

from monitor.config import CheckConfig, Config
from monitor.detect import CheckResult, Status
from monitor.history import Run
from monitor.thresholds import judge

STATUSES: tuple[Status, ...] = get_args(Status)
HISTORY_POINTS = 120  # runs kept in memory per check (sparkline and growth); the chart reads the store


def result_from_run(run: Run, check: CheckConfig) -> CheckResult:
    """A stored run as the `CheckResult` of `check` (which measures the run's subject, whatever the config that
    recorded it called the check and its database)."""
    status: Status = next((known for known in STATUSES if known == run.status), "error")  # the store keeps text
    figure = run.groups if check.finds == "violations" else run.excess_rows
    # judged again by today's thresholds; a percentage cannot be (the store keeps no row counts): None
    outcome = None if status == "error" else judge(check, figure or 0, None)
    return CheckResult(check.name, check.database, status, run.groups, run.excess_rows,
                       run.duration_ms, run.error, finished_at=run.finished, outcome=outcome)


@dataclass
class CheckState:
    config: CheckConfig
    last: CheckResult | None = None
    previous: CheckResult | None = None  # the run before `last` that had figures
    started_at: datetime | None = None  # set while the scheduler runs the check
    failures: int = 0
    backoff_seconds: float | None = None
    history: deque[CheckResult] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    @property
    def name(self) -> str:
        return self.config.name

    def apply(self, result: CheckResult) -> None:
        """A new run arrived (from the scheduler or the store, newest last)."""
        if self.last is not None and result.finished_at < self.last.finished_at:
            return  # a stale result (e.g. history loaded after the first live run)
        if self.last is not None and self.last.status != "error":
            self.previous = self.last
        self.last = result
        self.started_at = None
        self.history.append(result)

    def load(self, runs: Sequence[CheckResult]) -> None:
        """Runs from the store, oldest first, placed before anything already received live."""
        older = [r for r in runs if not self.history or r.finished_at < self.history[0].finished_at]
        live = list(self.history)
        started_at = self.started_at
        self.history.clear()
        self.last = self.previous = None
        for result in [*older, *live]:
            self.apply(result)
        self.started_at = started_at

    @property
    def running(self) -> bool:
        return self.started_at is not None

    def running_for(self, now: datetime) -> float | None:
        return None if self.started_at is None else max((now - self.started_at).total_seconds(), 0.0)

    @property
    def status(self) -> str:
        """ok / duplicates / error / running / pending (never run yet)."""
        if self.running:
            return "running"
        if self.last is None:
            return "pending"
        return self.last.status

    @property
    def last_known(self) -> CheckResult | None:
        """The last run with figures: the latest, or the success before a failure (None: never succeeded)."""
        if self.last is not None and self.last.status != "error":
            return self.last
        return self.previous

    @property
    def finds(self) -> str:
        """What the check reports: "duplicates" or "violations" (see `CheckConfig.finds`)."""
        return self.config.finds

    @property
    def groups(self) -> int | None:
        return self.last.groups if self.last else None

    @property
    def excess(self) -> int | None:
        return self.last.excess_rows if self.last else None

    @property
    def previous_excess(self) -> int | None:
        return self.previous.excess_rows if self.previous else None

    def figure_of(self, result: CheckResult | None) -> int | None:
        """The rows a run found, as the check counts them: excess duplicate rows, or violating rows."""
        if result is None or result.status == "error":
            return None
        return result.groups if self.finds == "violations" else result.excess_rows

    @property
    def figure(self) -> int | None:
        """The latest run's rows (None after a failed run)."""
        return self.figure_of(self.last)

    @property
    def change(self) -> int | None:
        """What the CHANGE column shows: rows now against the run before (None when either is unknown)."""
        now, before = self.figure, self.figure_of(self.previous)
        if now is None or before is None:
            return None
        return now - before

    def excess_series(self) -> list[float | None]:
        """The rows of the runs in memory (for the sparkline), as the check counts them."""
        return [None if (v := self.figure_of(r)) is None else float(v) for r in self.history]

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.last is None else (now - self.last.finished_at).total_seconds()


@dataclass(frozen=True)
class Figures:
    """A header total: `rows`, of which some may come from runs before a failure (`stale_seconds`: the age of
    the oldest), and how many checks that failed have no figures at all (`unknown`)."""

    rows: int
    stale_seconds: float | None = None
    unknown: int = 0


class Dashboard:
    """Every check's state, in config order, and the totals the header shows."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.checks: dict[str, CheckState] = {c.name: CheckState(c) for c in config.checks}

    def __getitem__(self, name: str) -> CheckState:
        return self.checks[name]

    def __iter__(self) -> Iterator[CheckState]:
        return iter(self.checks.values())

    @property
    def with_duplicates(self) -> int:
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "duplicates")

    @property
    def with_violations(self) -> int:
        """Checks whose last run found violations (custom queries: rows breaking an invariant)."""
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "violations")

    def figures(self, finds: str, now: datetime) -> Figures:
        """The header's total for the checks that find `finds`: excess duplicate rows, or violating rows (one
        per row a violations check's query returns). A check whose database does not answer counts with its
        last known figures, and says how old they are; one that never succeeded, or has not run yet (a fleet's
        first runs spread over a minute), leaves the total unknown: not yet counted is not clean."""
        total, oldest, unknown = 0, None, 0
        for check in self.checks.values():
            if check.finds != finds:
                continue
            known = check.last_known
            if known is None:
                unknown += 1
                continue
            total += (known.groups if finds == "violations" else known.excess_rows) or 0
            if known is not check.last:
                age = (now - known.finished_at).total_seconds()
                oldest = age if oldest is None else max(oldest, age)
        return Figures(total, oldest, unknown)

    @property
    def errors(self) -> int:
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "error")

    def unreachable_databases(self) -> list[str]:
        """Databases whose every check's latest run failed with a database error (not a bad check)."""
        ran: dict[str, list[CheckResult]] = {}  # one pass over the checks: a fleet has hundreds of databases
        for check in self.checks.values():
            if check.last is not None:
                ran.setdefault(check.config.database, []).append(check.last)
        down = []
        for name in self.config.databases:
            lasts = ran.get(name, [])
            if lasts and all(last.status == "error" for last in lasts) and any(
                    (last.error or "").startswith(f"database {name!r}") for last in lasts):
                down.append(name)
        return down
