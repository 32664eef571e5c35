"""The confirm-to-fix modal: the preview, type the check's name, the fix in batches with progress, the summary.
Opened on a check it fixes every group; opened on a group in the drill-down, that group only.

Stages, each database step in a thread worker that only posts a message back:

1. *planning*: `make_plan` (read-only, changes nothing) and any unfinished fix of the check to resume;
2. *preview*: blockers in red, notes, counts, sample groups with the kept row marked, referencing rows; the
   operator types the check's name to arm the button;
3. *snapshot*: `prepare_fix` freezes the rows the fix may delete. If they differ from the preview (the
   application wrote meanwhile), the snapshot is shown and confirmed once more, so what runs is exactly
   what the operator confirmed;
4. *running*: `run_fix`, a transaction per batch, a progress message after each; the dashboard stays live;
5. *done* (or *stopped* between batches): the summary and the fix id; the check is re-run.

Escape: before the snapshot, closes (nothing changed); on an unconfirmed snapshot, discards it; while
running, stops after the current batch (the fix stays resumable: `f` again offers to resume it).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, LoadingIndicator, ProgressBar, Static

from monitor.config import config_to_name
from monitor.db import DatabaseError
from monitor.detect import CheckDefinitionError
from monitor.engine import CheckError
from monitor.fix import (
    FixError,
    FixPlan,
    FixProgress,
    FixRecord,
    FixReport,
    PrivilegeMissing,
    discard_fix,
    find_unfinished,
    guard_name,
    make_plan,
    prepare_fix,
    run_fix,
)
from monitor.fix.guard import guard_after_fix, guard_refusal
from monitor.fix.plan import COUNTER
from monitor.fix.render import report_lines
from monitor.tui.format import counted, value_text
from monitor.tui.messages import (
    FixDiscarded,
    FixFailed,
    FixFinished,
    FixPlanned,
    FixProgressed,
    FixRequest,
    FixSnapshotChanged,
)
from monitor.tui.screens.base import DashboardMixin
from monitor.tui.widgets.confirm import TypeToConfirm
from monitor.tui.widgets.paged_table import cell
from monitor.tui.widgets.tickbox import TickBox

if TYPE_CHECKING:
    pass

log = logging.getLogger("dupewatch.tui")

# What the fix machinery raises for a reason an operator can act on: shown as one line, never a traceback.
EXPECTED_ERRORS = (FixError, DatabaseError, CheckDefinitionError, CheckError)
RED, AMBER, GREEN, DIM = "#ff5f5f", "#ffaf00", "#5fd75f", "dim"
KEEP = Text("★ keep", style=f"bold {GREEN}")
DELETE = Text("✖ delete", style=AMBER)


def one_line(exc: BaseException) -> str:
    """An error as the one line the modal shows (unexpected ones keep their type, for the bug report)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, EXPECTED_ERRORS):
        return text
    log.exception("unexpected error in the fix flow")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def shown(value: Any) -> str:
    """A key value as an operator reads it: text quoted, everything else (dates, numbers) as itself."""
    return repr(value) if isinstance(value, str) else value_text(value)


def same_plan(a: FixPlan, b: FixPlan) -> bool:
    """Whether two plans delete and repoint the same numbers of rows (what the operator was shown)."""
    return (a.groups, a.rows_to_delete, [r.rows for r in a.references]) == \
        (b.groups, b.rows_to_delete, [r.rows for r in b.references])


def plan_facts(plan: FixPlan, *, previewed: FixPlan | None = None) -> Text:
    """The preview's text: what changed since the preview (one line, when `previewed`), blockers (red), counts,
    the keeper rule, references, notes."""
    text = Text()
    if previewed is not None:
        text.append(f"{what_changed(previewed, plan)}\n", style=f"bold {AMBER}")
    for blocker in plan.blockers:
        text.append("BLOCKED  ", style=f"bold {RED}")
        text.append(f"{blocker}\n", style=RED)
    for left_out in [] if plan.blockers else plan.left_out:
        text.append("LEFT OUT  ", style=f"bold {AMBER}")
        text.append(f"{left_out.describe(plan.check)}\n")
    if not plan.groups:
        text.append("● no duplicate groups right now: nothing to fix\n", style=f"bold {GREEN}")
        return text
    text.append_text(Text.assemble(
        (counted(plan.groups, "duplicate group"), "bold"), ": ",
        (counted(plan.rows_to_delete, "row"), f"bold {AMBER}"),
        " to delete, each copied first into an archive table (undo restores them)\n"))
    text.append(f"keeps the {plan.keeper} of each group", style=DIM)
    if plan.identity in ("ctid", "rowid"):
        text.append(f"; no primary key: rows are told apart by {plan.identity} under the lock", style=DIM)
    elif plan.identity == "identical":
        text.append("; no primary key: all but one of fully identical rows are deleted", style=DIM)
    elif plan.identity == COUNTER:
        text.append("; no primary key: rows are told apart by their AUTO_INCREMENT value and key under the lock",
                    style=DIM)
    text.append("\n")
    for ref in plan.references:
        text.append_text(Text.assemble(("references  ", DIM), f"{ref.describe(plan.table)}\n"))
    for note in plan.notes:
        text.append("note  ", style=f"bold {AMBER}")
        text.append(f"{note}\n")
    return text


def what_changed(previewed: FixPlan, snapshot: FixPlan) -> str:
    """One line: how the snapshot differs from the preview the operator saw (the application wrote meanwhile)."""
    changes = []
    for label, before, after in (("groups", previewed.groups, snapshot.groups),
                                 ("rows to delete", previewed.rows_to_delete, snapshot.rows_to_delete),
                                 ("references to repoint", sum(r.rows for r in previewed.references),
                                  sum(r.rows for r in snapshot.references))):
        if before != after:
            changes.append(f"{label} {before:,} → {after:,}")
    return (f"Changed since the preview: {', '.join(changes) or 'the rows'} (the application is writing). "
            "Below is what will run; confirm again.")


def resume_text(record: FixRecord) -> Text:
    done = record.groups + record.skipped
    return Text.assemble(
        ("Unfinished fix ", f"bold {AMBER}"), (record.fix_id, "bold"),
        f" ({record.state}, started {record.created_at[:19].replace('T', ' ')} UTC by "
        f"{record.os_user}@{record.host}): {done:,} of {counted(record.total_groups, 'group')} done, "
        f"{counted(record.deleted, 'row')} deleted. Confirming resumes it: it finishes the rows it snapshotted then; "
        "duplicates that arrived since are left for the next check.\n")


class FixScreen(DashboardMixin, ModalScreen[None]):
    """Preview, confirm and run the fix of one table check, or of one of its groups."""

    BINDINGS = [Binding("escape", "cancel", "Cancel / stop")]

    # The preview scrolls between the title (docked at the top) and the controls (docked at the bottom): the
    # confirmation, the constraint tick box, the button, the progress and the outcome are always on screen,
    # at 80x24 as on a large terminal.
    DEFAULT_CSS = """
    FixScreen { align: center middle; }
    FixScreen > #fix-box {
        width: 140; max-width: 96%; height: auto; max-height: 96%;
        border: thick $error 60%; background: $surface; padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    FixScreen #fix-title { dock: top; }
    FixScreen #fix-controls { dock: bottom; height: auto; background: $surface; }
    FixScreen #fix-loading { height: 3; }
    FixScreen #fix-facts { height: auto; }
    FixScreen #fix-sample { height: auto; max-height: 14; margin-top: 1; }
    FixScreen #fix-guard { margin-top: 1; width: 100%; }
    FixScreen #fix-run { height: auto; margin-top: 1; }
    FixScreen #fix-run > ProgressBar { width: auto; }
    FixScreen #fix-counts { padding-left: 2; width: 1fr; }
    FixScreen #fix-result { height: auto; margin-top: 1; }
    """

    def __init__(self, request: FixRequest, *, batch_size: int | None = None) -> None:
        super().__init__()
        self.check = request.check
        self.key = request.key
        self.batch_size = batch_size
        self.stage = "planning"
        self.preview: FixPlan | None = None
        self.snapshot: FixPlan | None = None  # prepared, awaiting a second confirmation
        self.unfinished: FixRecord | None = None
        self.report: FixReport | None = None
        self.cancel = threading.Event()

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        config = self.dash.config.check(self.check)
        with VerticalScroll(id="fix-box"):
            title = Text.assemble(("Fix ", "bold"), (self.check, f"bold {AMBER}"), ("  on ", DIM),
                                  (f"{config.database}.{config.table}", "bold"))
            yield Static(title, id="fix-title")
            if self.key is not None:
                key = ", ".join(f"{n}={shown(v)}" for n, v in zip(config.key or [], self.key, strict=False))
                yield Static(Text.assemble(("Fixes the group ", DIM), (key, "bold"),
                                           (" only; f on the check's row fixes every group.", DIM)),
                             id="fix-picked")
            yield LoadingIndicator(id="fix-loading")
            yield Static(Text("computing the plan (read-only, nothing changes)…", style=DIM), id="fix-facts")
            yield DataTable(id="fix-sample", cursor_type="row", zebra_stripes=True)
            with Vertical(id="fix-controls"):
                yield TickBox(f"also add the unique constraint afterwards ({guard_name(self.check)}): stops the "
                               "next race at the database", id="fix-guard")
                yield TypeToConfirm(self.check, "Fix", id="fix-confirm")
                with Horizontal(id="fix-run"):
                    yield ProgressBar(id="fix-progress", show_eta=False)
                    yield Static(id="fix-counts")
                yield Static(id="fix-result")

    def on_mount(self) -> None:
        box = self.query_one("#fix-box")
        box.border_title = "Confirm to fix"
        box.border_subtitle = "Esc: cancel"
        self.query_one("#fix-sample").display = False
        self.query_one("#fix-run").display = False
        self.query_one("#fix-result").display = False
        self.query_one(TypeToConfirm).enable(False)
        if self.key is not None:  # the constraint needs every group fixed, not one
            self.query_one("#fix-guard", Checkbox).display = False
        self.load_plan(self.key)

    # -- 1. planning ------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, exclusive=True, group="fix-plan")
    def load_plan(self, key: tuple[Any, ...] | None) -> None:
        monitor = self.dash.monitor
        try:
            plan = make_plan(monitor, self.check, group=key)
        except Exception as exc:  # shown as one line in the modal
            self.post_message(FixFailed(self.check, one_line(exc)))
            return
        unfinished = None
        try:
            unfinished = find_unfinished(monitor, self.check)
        except Exception as exc:  # the preview is still worth showing
            plan.notes.append(f"could not look for an unfinished fix of this check: {one_line(exc)}")
        self.post_message(FixPlanned(self.check, plan, unfinished, guard_refused=self._guard_refused(plan, key)))

    def _guard_refused(self, plan: FixPlan, key: tuple[Any, ...] | None) -> bool:
        """Whether the unique constraint the screen offers is refused whatever the fix deletes (`guard_refusal`,
        read-only): said in the preview, with the reason among the plan's notes, so the box is not offered to be
        refused after the confirmation. The run asks again (the schema may change meanwhile)."""
        if key is not None or not plan.groups:  # not offered: one group, or nothing to fix
            return False
        try:
            refusal = guard_refusal(self.dash.monitor, self.check)
        except Exception as exc:  # the preview is still worth showing; the run asks again
            plan.notes.append(f"could not ask whether the unique constraint can be added: {one_line(exc)}")
            return False
        if refusal is None:
            return False
        plan.notes.append(f"the unique constraint cannot be added afterwards: {one_line(refusal)}")
        return True

    @on(FixPlanned)
    def _planned(self, message: FixPlanned) -> None:
        self.stage = "preview"
        self.preview, self.unfinished = message.plan, message.unfinished
        self.query_one("#fix-loading").display = False
        facts = plan_facts(message.plan)
        if message.unfinished is not None:
            facts = Text.assemble(resume_text(message.unfinished), facts)
        self.query_one("#fix-facts", Static).update(facts)
        self._show_sample(message.plan)
        confirm = self.query_one(TypeToConfirm)
        if message.guard_refused:
            guard = self.query_one("#fix-guard", Checkbox)
            guard.value = False
            guard.display = False
        if message.unfinished is None and not message.plan.groups:
            # Nothing to delete: no button to arm, and no constraint to offer (the next check shows whether
            # one is missing; `dupewatch guard` adds it).
            confirm.display = False
            self.query_one("#fix-guard", Checkbox).display = False
            self.query_one("#fix-box").border_subtitle = "Esc: close"
            return
        if message.unfinished is not None:
            confirm.set_action("Resume fix")
            confirm.enable(True)
        else:
            confirm.set_action(f"Fix {counted(message.plan.rows_to_delete, 'row')}")
            confirm.enable(message.plan.fixable and message.plan.groups > 0)
        confirm.focus_input()

    def _show_sample(self, plan: FixPlan) -> None:
        table = self.query_one("#fix-sample", DataTable)
        groups = plan.sample
        columns: list[str] = []
        for group in groups:
            for name in (group.keep or {}):
                if name not in columns:
                    columns.append(name)
        if not columns:
            return
        wanted = ["mark", "group", *(f"col:{name}" for name in columns)]
        if [key.value for key in table.columns] != wanted:
            # New columns only when they differ: a table re-created under load was once painted with its
            # columns sized to their headers, before its rows arrived.
            table.clear(columns=True)
            table.add_column("", key="mark")
            table.add_column("GROUP", key="group")
            for name in columns:
                table.add_column(name, key=f"col:{name}")
        for group in groups:
            key = ", ".join(str(v) for v in group.key)
            rows = [(KEEP, group.keep or {})] + [(DELETE, row) for row in group.delete]
            for index, (mark, row) in enumerate(rows):
                label = cell(f"{group.group_no:,}: {key}", 28) if index == 0 else ""
                table.add_row(mark, label, *(cell(row.get(name), 32) for name in columns))
            hidden = group.rows - 1 - len(group.delete)
            if hidden > 0:
                table.add_row("", "", Text(f"… and {hidden:,} more to delete", style=DIM),
                              *([""] * (len(columns) - 1)))
        if plan.groups > len(groups):
            table.add_row("", Text(f"first {len(groups)} of {counted(plan.groups, 'group')}", style=DIM),
                          *([""] * len(columns)))
        table.display = True

    # -- 2.-4. confirm, snapshot, run ---------------------------------------------------------------

    @on(TypeToConfirm.Confirmed)
    def _confirmed(self) -> None:
        if self.stage == "preview":
            self._begin("snapshot", "taking the snapshot of the rows to fix…")
            self.fix(self.preview, self.unfinished is not None, None, self._add_constraint)
        elif self.stage == "reconfirm" and self.snapshot is not None:
            self._begin("running", "running…")
            self.fix(self.preview, False, self.snapshot, self._add_constraint)

    @property
    def _add_constraint(self) -> bool:
        return self.query_one("#fix-guard", Checkbox).value

    def _begin(self, stage: str, status: str) -> None:
        self.stage = stage
        confirm = self.query_one(TypeToConfirm)
        confirm.enable(False)
        confirm.display = False
        self.query_one("#fix-guard", Checkbox).disabled = True
        self.query_one("#fix-run").display = True
        self.query_one("#fix-counts", Static).update(Text(status, style=DIM))
        self.query_one("#fix-box").border_subtitle = "Esc: stop after the current batch (resumable)"

    def _post_progress(self, progress: FixProgress) -> None:
        self.post_message(FixProgressed(progress))

    @work(thread=True, exit_on_error=False, exclusive=True, group="fix-run")
    def fix(self, preview: FixPlan | None, resume: bool, snapshot: FixPlan | None, add_constraint: bool) -> None:
        """Snapshot (unless resuming or already confirmed), then run the fix batch by batch."""
        monitor, check = self.dash.monitor, self.check
        self.dash.fix_started(check, self.cancel)
        changed = False
        try:
            # As `fix --add-constraint`: a guard refused whatever the rows hold is refused before anything is
            # deleted (it deleted the rows, then reported the guard's refusal).
            if add_constraint and (refusal := guard_refusal(monitor, check)):
                if snapshot is not None:
                    discard_fix(monitor, check, snapshot.fix_id or "")
                self.post_message(FixFailed(check, f"{one_line(refusal)}; nothing changed (untick the constraint "
                                                   "to remove the duplicates only)"))
                return
            plan = snapshot
            if plan is None and not resume:
                plan = prepare_fix(monitor, check, group=self.key)
                if self._snapshot_not_to_run(plan, preview):
                    return
            changed = True
            report = run_fix(monitor, check, plan, batch_size=self.batch_size,
                             progress=self._post_progress, cancel=self.cancel)
            if add_constraint and report.state == "done":  # converges: fixes stragglers, retries the build
                guard_after_fix(monitor, check, report, batch_size=self.batch_size,
                                progress=self._post_progress)
        except Exception as exc:  # shown as one line in the modal
            self.post_message(FixFailed(check, one_line(exc), changed=changed,
                                        resumable=not isinstance(exc, PrivilegeMissing)))
            return
        finally:
            self.dash.fix_ended(check)
        self.post_message(FixFinished(report))

    def _snapshot_not_to_run(self, plan: FixPlan, preview: FixPlan | None) -> bool:
        """On the worker: discard a snapshot that is blocked, empty or cancelled; hold back one that changed."""
        monitor, check = self.dash.monitor, self.check
        if plan.blockers or not plan.groups or self.cancel.is_set():
            discard_fix(monitor, check, plan.fix_id or "")
            if plan.blockers:
                self.post_message(FixFailed(check, f"cannot be fixed: {plan.blockers[0]} (nothing changed)"))
            elif not plan.groups:
                self.post_message(FixFailed(check, "no duplicates left to fix (nothing changed)"))
            else:
                self.post_message(FixDiscarded(check))
            return True
        if preview is not None and not same_plan(plan, preview):
            self.post_message(FixSnapshotChanged(check, plan))
            return True
        return False

    @on(FixSnapshotChanged)
    def _snapshot_changed(self, message: FixSnapshotChanged) -> None:
        self.stage = "reconfirm"
        self.snapshot = message.plan
        self.query_one("#fix-run").display = False
        self.query_one("#fix-facts", Static).update(plan_facts(message.plan, previewed=self.preview))
        self.query_one("#fix-sample", DataTable).clear()  # the rows; the columns stay when they are the same
        self._show_sample(message.plan)
        confirm = self.query_one(TypeToConfirm)
        confirm.display = True
        confirm.set_action(f"Fix {counted(message.plan.rows_to_delete, 'row')}")
        confirm.enable(True)
        confirm.focus_input()
        self.query_one("#fix-box").border_subtitle = "Esc: discard the snapshot"

    @on(FixProgressed)
    def _progressed(self, message: FixProgressed) -> None:
        p = message.progress
        self.query_one(ProgressBar).update(total=max(p.groups_total, 1), progress=p.groups_done)
        counts = Text.assemble((f"{p.groups_done:,}", "bold"), f" of {counted(p.groups_total, 'group')} · ",
                               (f"{p.deleted:,}", "bold"), " deleted · ", (f"{p.archived:,}", "bold"),
                               " archived · ", (f"{p.repointed:,}", "bold"), " repointed · ",
                               (f"{p.skipped:,}", "bold"), " skipped")
        if self.stage == "stopping":
            counts.append("  · stopping after this batch…", style=AMBER)
        self.query_one("#fix-counts", Static).update(counts)

    @on(FixFinished)
    def _finished(self, message: FixFinished) -> None:
        report: FixReport = message.report
        self.stage = "done"
        self.report = report
        path = self.dash.config.path  # the demo's config has no file: `F` is how it undoes a fix
        lines = report_lines(report, config=config_to_name(path), undo_hint=path is not None)
        style = f"bold {GREEN}" if report.state == "done" and not report.skipped else f"bold {AMBER}"
        text = Text(lines[0], style=style)
        for line in lines[1:]:
            text.append("\n" + line)
        text.append("\nF lists past fixes and undoes them; the check is being re-run.", style=DIM)
        self._show_result(text)
        self.dash.rerun(self.check)

    @on(FixFailed)
    def _failed(self, message: FixFailed) -> None:
        self.query_one("#fix-loading").display = False
        was = self.stage
        self.stage = "failed"
        text = Text.assemble(("✖ ", f"bold {RED}"), (message.error, RED))
        if message.changed:
            text.append("\nBatches committed before it stand; press f again to resume." if message.resumable else
                        "\nBatches committed before it stand; once the privilege is granted, f goes on.", style=DIM)
            self.dash.rerun(self.check)
        self._show_result(text)
        if was == "planning":
            self.query_one("#fix-facts", Static).update("")

    @on(FixDiscarded)
    def _discarded(self) -> None:
        self.dismiss()

    def _show_result(self, text: Text) -> None:
        result = self.query_one("#fix-result", Static)
        result.update(text)
        result.display = True
        self.query_one(TypeToConfirm).display = False
        self.query_one("#fix-box").border_subtitle = "Esc: close"

    # -- leaving ------------------------------------------------------------------------------------

    @on(Button.Pressed, "#cancel-button")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.stage in ("running", "snapshot"):
            # Between batches: the batch in flight commits (or rolls back) whole; the fix stays resumable.
            self.stage = "stopping"
            self.cancel.set()
            self.query_one("#fix-counts", Static).update(Text("stopping after the current batch…", style=AMBER))
            return
        if self.stage == "reconfirm" and self.snapshot is not None:
            self.stage = "discarding"
            self.discard(self.snapshot.fix_id or "")
            return
        if self.stage in ("stopping", "discarding"):
            return  # already on its way; the worker reports back
        self.dismiss()

    @work(thread=True, exit_on_error=False, exclusive=True, group="fix-run")
    def discard(self, fix_id: str) -> None:
        try:
            discard_fix(self.dash.monitor, self.check, fix_id)
        except Exception as exc:  # shown as one line in the modal
            self.post_message(FixFailed(self.check, one_line(exc)))
            return
        self.post_message(FixDiscarded(self.check))
