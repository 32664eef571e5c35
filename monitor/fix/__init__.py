"""Confirm-to-fix: plan, execute (batches, locks, archive), undo and guard. The API the CLI and the TUI call.

All functions are blocking and thread-safe to call from a worker thread; none imports Textual. Errors a
user can cause raise `FixRefused` (nothing was changed) or `FixError` (a batch was rolled back; earlier
batches stand and the fix is resumable), both with one-line messages; unreachable databases raise
`monitor.db.DatabaseError`.

    plan = make_plan(monitor, "login-sources")            # dry run: read-only, changes nothing
    plan = prepare_fix(monitor, "login-sources")          # snapshot the rows to delete; plan.fix_id is set
    if plan.blockers: discard_fix(monitor, "login-sources", plan.fix_id)
    report = run_fix(monitor, "login-sources", plan, batch_size=5000,
                     progress=on_progress,                 # called with a FixProgress after each batch
                     cancel=threading.Event())             # set() stops between batches (resumable)
    report.as_json()  # {"fix_id", "check", "groups", "deleted", "archived", "repointed", "skipped",
                      #  "references_archived", "constraint"}
    run_fix(monitor, "login-sources")                     # resumes an interrupted fix, or plans and runs one
    list_fixes(monitor) -> [(database, FixRecord)]        # newest first
    undo_fix(monitor, fix_id) -> UndoReport               # restores archived rows and references, one transaction
    add_guard(monitor, "login-sources") -> GuardReport    # the unique index that prevents the next race

`FixPlan` (see plan.py) carries the counts, a sample of groups (keeper and rows to delete, differing
columns), the referencing foreign keys and the rows they will repoint, `blockers` (the fix refuses while
any is present) and `notes` (what the operator should know before confirming).
"""

from monitor.fix.errors import BatchAborted, FixError, FixRefused, PrivilegeMissing
from monitor.fix.execute import (
    DEFAULT_BATCH_SIZE,
    FixProgress,
    FixReport,
    ProgressCallback,
    discard_fix,
    find_unfinished,
    list_fixes,
    make_plan,
    prepare_fix,
    run_fix,
)
from monitor.fix.guard import GuardReport, add_guard, guard_name
from monitor.fix.plan import FixPlan, PlanGroup, ReferencePlan
from monitor.fix.records import FixRecord
from monitor.fix.undo import UndoReport, undo_fix

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchAborted",
    "FixError",
    "FixPlan",
    "FixProgress",
    "FixRecord",
    "FixRefused",
    "FixReport",
    "GuardReport",
    "PlanGroup",
    "PrivilegeMissing",
    "ProgressCallback",
    "ReferencePlan",
    "UndoReport",
    "add_guard",
    "discard_fix",
    "find_unfinished",
    "guard_name",
    "list_fixes",
    "make_plan",
    "prepare_fix",
    "run_fix",
    "undo_fix",
]
