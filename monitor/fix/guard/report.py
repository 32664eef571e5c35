"""What the guard reports: each round of `secure_guard`, the final report (the CLI's and the dashboard's), and
the refusals a round can end with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.fix.errors import FixRefused
from monitor.fix.records import safe_identifier


class DuplicatesFound(FixRefused):
    """Nothing was built because the table has duplicates again (they may go away with another fix).
    `short` is what a round reports: the counts, or the database's unique violation."""

    def __init__(self, message: str, short: str = "") -> None:
        super().__init__(message)
        self.short = short or message


class ConcurrentBuildRefused(FixRefused):
    """An event trigger may fire on a concurrent build, which runs outside any transaction (nothing built); a build
    under the table's lock (`--lock-timeout`) runs in one transaction, whose account is settled."""


class GuardInterrupted(FixRefused):
    """Ctrl-C during a build: the build was cancelled and its half-built index dropped (or named)."""


@dataclass
class GuardRound:
    """One attempt of `secure_guard`: an optional straggler fix, then a build."""

    number: int
    method: str  # "concurrent" (the table stays writable), "locked" (writes paused), "atomic" (MySQL, SQLite)
    outcome: str  # "built", "present", "duplicates", "failed"
    message: str = ""
    straggler_fix: str | None = None  # fix_id of the fix run before this build
    stragglers_deleted: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"round": self.number, "method": self.method, "outcome": self.outcome, "message": self.message,
                "straggler_fix": self.straggler_fix, "stragglers_deleted": self.stragglers_deleted}

    @property
    def straggler_fix_stands(self) -> bool:
        """Whether this round's straggler fix was committed: a locked round's commits with its build or not at all."""
        return self.straggler_fix is not None and (self.method != "locked" or self.outcome in ("built", "present"))

    def line(self) -> str:
        fixed = (f"fixed {self.stragglers_deleted:,} straggler row(s) (fix {self.straggler_fix}), "
                 if self.straggler_fix else "")
        return f"round {self.number} ({self.method}): {fixed}{self.outcome}" + (f": {self.message}"
                                                                               if self.message else "")


@dataclass
class GuardReport:
    check: str
    index_name: str
    created: bool
    statement: str
    notes: list[str] = field(default_factory=list)
    rounds: list[GuardRound] = field(default_factory=list)
    error: str | None = None  # set (and created False) when `guard_after_fix` could not add it

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "constraint": None if self.error else self.index_name,
                "created": self.created, "statement": self.statement, "notes": self.notes,
                "rounds": [r.as_json() for r in self.rounds], "error": self.error}


def guard_name(check: str) -> str:
    return safe_identifier("uq_dupewatch_", check, strict=False)
