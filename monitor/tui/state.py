"""What the dashboard knows about each check: its latest result, the one before, a short history, and
whether it is running. Plain data updated on the UI thread from messages; no Textual here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.config import CheckConfig, Config
from monitor.detect import CheckResult
from monitor.history import Run

HISTORY_POINTS = 120  # runs kept in memory per check (sparkline and growth); the chart reads the store


def result_from_run(run: Run, check: CheckConfig) -> CheckResult:
    """A stored run as the `CheckResult` of `check` (which measures the run's subject, whatever the config that
    recorded it called the check and its database)."""
    status = run.status if run.status in ("ok", "duplicates", "violations", "error") else "error"
    return CheckResult(check.name, check.database, status, run.groups, run.excess_rows,  # type: ignore[arg-type]
                       run.duration_ms, run.error, finished_at=run.finished)


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
    def groups(self) -> int | None:
        return self.last.groups if self.last else None

    @property
    def excess(self) -> int | None:
        return self.last.excess_rows if self.last else None

    @property
    def previous_excess(self) -> int | None:
        return self.previous.excess_rows if self.previous else None

    @property
    def change(self) -> int | None:
        if self.excess is None or self.previous_excess is None:
            return None
        return self.excess - self.previous_excess

    def excess_series(self) -> list[float | None]:
        return [None if r.excess_rows is None else float(r.excess_rows) for r in self.history]

    def growth_per_minute(self) -> float:
        """How fast excess rows grew over the runs in memory (for the "fastest growth" sort)."""
        points = [r for r in self.history if r.excess_rows is not None]
        if len(points) < 2:
            return 0.0
        seconds = (points[-1].finished_at - points[0].finished_at).total_seconds()
        if seconds <= 0:
            return 0.0
        return (points[-1].excess_rows - points[0].excess_rows) / seconds * 60  # type: ignore[operator]

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.last is None else (now - self.last.finished_at).total_seconds()


class Dashboard:
    """Every check's state, in config order, and the totals the header shows."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.checks: dict[str, CheckState] = {c.name: CheckState(c) for c in config.checks}

    def __getitem__(self, name: str) -> CheckState:
        return self.checks[name]

    def __iter__(self) -> Iterable[CheckState]:
        return iter(self.checks.values())

    @property
    def with_duplicates(self) -> int:
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "duplicates")

    @property
    def with_violations(self) -> int:
        """Checks whose last run found violations (custom queries: rows breaking an invariant)."""
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "violations")

    @property
    def total_excess(self) -> int:
        return sum(c.excess or 0 for c in self.checks.values() if c.last and c.last.status != "error")

    @property
    def errors(self) -> int:
        return sum(1 for c in self.checks.values() if c.last is not None and c.last.status == "error")

    def unreachable_databases(self) -> list[str]:
        """Databases whose every check's latest run failed with a database error (not a bad check)."""
        down = []
        for name in self.config.databases:
            states = [c for c in self.checks.values() if c.config.database == name and c.last is not None]
            if states and all(c.last.status == "error" for c in states) and any(  # type: ignore[union-attr]
                    (c.last.error or "").startswith(f"database {name!r}") for c in states):  # type: ignore[union-attr]
                down.append(name)
        return down
