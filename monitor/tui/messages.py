"""Every message the dashboard's worker threads post back to the UI.

Workers (scheduler threads and Textual thread workers) never touch widgets: they post one of these, and
the handler runs on the UI thread. `post_message` is thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from monitor.detect import CheckResult, GroupCursor, GroupMembers, GroupPage
from monitor.history import Run

if TYPE_CHECKING:  # the dashboard loads the fix machinery only when the operator presses `f` or `F`
    from monitor.fix import FixPlan, FixProgress, FixRecord, FixReport, UndoReport


class CheckStarted(Message):
    """The scheduler started running a check."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class CheckFinished(Message):
    """A check run finished (successfully or with an error), with the poller's backoff state."""

    def __init__(self, result: CheckResult, failures: int = 0, backoff_seconds: float | None = None) -> None:
        super().__init__()
        self.result = result
        self.failures = failures
        self.backoff_seconds = backoff_seconds


class LiveReported(Message):
    """A live reader reported on its database's change stream (monitor/live/reader.py `LiveSink`)."""

    def __init__(self, database: str, *, following: bool | None = None, events: int = 0,
                 lag_seconds: float | None = None, gap: str | None = None) -> None:
        super().__init__()
        self.database = database
        self.following = following
        self.events = events
        self.lag_seconds = lag_seconds
        self.gap = gap


class HistoryLoaded(Message):
    """Recent runs of every check, read from the state store at startup (oldest first)."""

    def __init__(self, runs: dict[str, list[Run]]) -> None:
        super().__init__()
        self.runs = runs


class TrendLoaded(Message):
    """A check's runs over the chart's time window."""

    def __init__(self, check: str, runs: list[Run]) -> None:
        super().__init__()
        self.check = check
        self.runs = runs


class GroupsPageLoaded(Message):
    """One page of a check's duplicate groups; `after` is the cursor it was loaded from."""

    def __init__(self, check: str, after: GroupCursor | None, page: GroupPage, elapsed_ms: float) -> None:
        super().__init__()
        self.check = check
        self.after = after
        self.page = page
        self.elapsed_ms = elapsed_ms


class MembersLoaded(Message):
    """The rows of one duplicate group, the kept row first."""

    def __init__(self, check: str, key: tuple[Any, ...], members: GroupMembers) -> None:
        super().__init__()
        self.check = check
        self.key = key
        self.members = members


class CustomRowsLoaded(Message):
    """A page of the rows a custom query check returns."""

    def __init__(self, check: str, offset: int, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.check = check
        self.offset = offset
        self.columns = columns
        self.rows = rows


class LoadFailed(Message):
    """A drill-down query failed; `error` is one password-free line."""

    def __init__(self, check: str, error: str) -> None:
        super().__init__()
        self.check = check
        self.error = error


@dataclass(frozen=True)
class FixRequest:
    """What `f` asks to fix: a check, from the main screen or from one of its groups (`key`) in the drill-down."""

    check: str
    key: tuple[Any, ...] | None = None


# -- the fix flow (screens/fix.py, screens/fixes.py) ------------------------------------------------
# `monitor.fix` types are imported for the type checker only: this module must not load the fix machinery
# (the dashboard loads it only when the operator presses `f` or `F`).


class FixPlanned(Message):
    """The dry-run plan of a check or of one of its groups (`make_plan`), an unfinished fix to resume, and whether
    the check's guard is refused up front (the reason is among the plan's notes)."""

    def __init__(self, check: str, plan: FixPlan, unfinished: FixRecord | None = None, *,
                 guard_refused: bool = False) -> None:
        super().__init__()
        self.check = check
        self.plan = plan
        self.unfinished = unfinished
        self.guard_refused = guard_refused  # the unique constraint cannot be added, whatever the fix deletes


class FixSnapshotChanged(Message):
    """The snapshot taken on confirmation (`prepare_fix`) differs from the preview: confirm it again."""

    def __init__(self, check: str, plan: FixPlan) -> None:
        super().__init__()
        self.check = check
        self.plan = plan


class FixProgressed(Message):
    """A batch of the running fix committed (`FixProgress`)."""

    def __init__(self, progress: FixProgress) -> None:
        super().__init__()
        self.progress = progress


class FixFinished(Message):
    """The fix ended: done, or stopped between batches on request (`FixReport`)."""

    def __init__(self, report: FixReport) -> None:
        super().__init__()
        self.report = report


class FixDiscarded(Message):
    """A snapshot the operator did not confirm was dropped; nothing was changed."""

    def __init__(self, check: str) -> None:
        super().__init__()
        self.check = check


class FixFailed(Message):
    """Planning, the fix, an undo or the fixes list failed; `error` is one password-free line."""

    def __init__(self, check: str, error: str, *, changed: bool = False, resumable: bool = True) -> None:
        super().__init__()
        self.check = check
        self.error = error
        self.changed = changed  # some batches may have committed before the failure
        self.resumable = resumable  # False: a resumed run meets the same refusal (a privilege the error names)


class FixesLoaded(Message):
    """Every recorded fix, newest first, as (database, FixRecord); `errors` per unreachable database."""

    def __init__(self, fixes: list[tuple[str, FixRecord]], errors: list[str]) -> None:
        super().__init__()
        self.fixes = fixes
        self.errors = errors


class UndoFinished(Message):
    """An undo committed (`UndoReport`)."""

    def __init__(self, report: UndoReport) -> None:
        super().__init__()
        self.report = report
