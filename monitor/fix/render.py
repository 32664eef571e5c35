"""Plain-text renderings of plans, reports and fix records for the CLI (no colours, no terminal logic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.fix.execute import FixReport
from monitor.fix.plan import COUNTER, FixPlan
from monitor.fix.records import FixRecord
from monitor.words import command, command_naming, value_text

MAX_CELL = 40


def _cell(value: Any) -> str:
    text = value_text(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def _row(row: dict[str, Any] | None) -> str:
    return "-" if row is None else ", ".join(f"{k}={_cell(v)}" for k, v in row.items())


def plan_lines(plan: FixPlan) -> list[str]:
    """The plan as the CLI prints it: what blocks it first, then the figures, references, sample and notes."""
    lines = [f"Plan for check {plan.check!r} on {plan.database}.{plan.table}"
             + (f" (fix {plan.fix_id})" if plan.fix_id else " (dry run: nothing changed)")]
    lines.extend(f"  BLOCKED: {blocker}" for blocker in plan.blockers)
    if not plan.blockers:
        lines.extend(f"  LEFT OUT: {left_out.describe(plan.check)}" for left_out in plan.left_out)
    fixed = f" ({plan.groups - plan.left_out_groups:,} to fix, {plan.left_out_groups:,} left out)" \
        if plan.left_out_groups else ""
    lines.append(f"  {plan.groups:,} duplicate group(s){fixed}; {plan.rows_to_delete:,} row(s) to delete and "
                 f"archive; keeps the {plan.keeper}")
    if plan.identity in ("ctid", "rowid"):
        lines.append(f"  no primary key: rows are told apart by {plan.identity} under the lock")
    elif plan.identity == "identical":
        lines.append("  no primary key: all but one of fully identical rows are deleted")
    elif plan.identity == COUNTER:
        lines.append("  no primary key: rows are told apart by their AUTO_INCREMENT value and key under the lock "
                     "(a group where a value repeats is left out)")
    lines.extend(f"  references: {ref.describe(plan.table)}" for ref in plan.references)
    if plan.sample:
        shown = len(plan.sample)
        of = f"{plan.groups - plan.left_out_groups:,} group(s) to fix" if plan.left_out_groups \
            else f"{plan.groups:,} group(s)"
        lines.append(f"  first {shown} of {of}:")
        for group in plan.sample:
            key = ", ".join(_cell(v) for v in group.key)
            lines.append(f"    group ({key}): {group.rows} rows")
            lines.append(f"      keep    {_row(group.keep)}")
            for row in group.delete:
                lines.append(f"      delete  {_row(row)}")
            if group.rows - 1 > len(group.delete):
                lines.append(f"      ... and {group.rows - 1 - len(group.delete)} more to delete")
            if group.differs:
                lines.append(f"      differs in: {', '.join(group.differs)} (the kept row's values win)")
    lines.extend(f"  note: {note}" for note in plan.notes)
    lines.extend(f"  advice: {advice}" for advice in plan.advice)
    return lines


def report_lines(report: FixReport, *, config: Path | None = None, undo_hint: bool = True) -> list[str]:
    """What a finished fix did, ending with the command that undoes it: with `--config FILE` when the caller was
    given one (a shell in another directory finds no ./dupewatch.toml), and without that line when the config
    has no file to name (the demo's dashboard, whose `F` undoes it)."""
    verb = "resumed and finished" if report.resumed else "finished"
    if report.state != "done":
        verb = f"{report.state} (run it again to resume)"
    lines = [f"fix {report.fix_id} of {report.check!r} {verb}: {report.groups:,} group(s) fixed, "
             f"{report.deleted:,} row(s) deleted and {report.archived:,} archived, "
             f"{report.repointed:,} reference(s) repointed"
             + (f", {report.references_archived:,} referencing row(s) archived" if report.references_archived
                else "")]
    lines.extend(f"  left out: {left_out.describe(report.check)}" for left_out in report.left_out)
    changed = report.skipped - report.left_out_groups
    if changed > 0 and report.resumed and not report.left_out:
        lines.append(f"  {changed:,} group(s) skipped: left out by the plan (see "
                     f"`{command('fix', report.check, '--dry-run')}`) or changed since it; run the check again")
    elif changed > 0:
        lines.append(f"  {changed:,} group(s) changed since the plan and were skipped; run the check again")
    if report.constraint:
        lines.append(f"  unique index {report.constraint} now guards the key")
    lines.extend(f"  note: {note}" for note in report.notes)
    if not undo_hint:
        return lines
    return lines + undo_lines(report, config)


def undo_lines(report: FixReport, config: Path | None) -> list[str]:
    """The commands that undo all a fix command did, in the order to run them: the newest fix first (the
    straggler fixes of `--add-constraint`'s later rounds, then the fix itself); the first drops the guard, which
    would refuse the restored duplicates."""
    fixes = [*reversed(report.straggler_fixes), report.fix_id]
    first = command_naming(config, 'undo', fixes[0])
    if report.constraint:
        first = f"{command_naming(config, 'undo', fixes[0], '--drop-constraint')} (drops {report.constraint} first)"
    then = (command_naming(config, 'undo', fix_id) for fix_id in fixes[1:])
    return [f"  undo with: {first}", *(f"  then:      {line}" for line in then)]


RECORD_HEADERS = ("FIX ID", "DATABASE", "CHECK", "STATE", "STARTED (UTC)", "USER", "GROUPS", "DELETED",
                  "REPOINTED", "SKIPPED", "CONSTRAINT")


def record_cells(database: str, record: FixRecord) -> tuple[str, ...]:
    return (record.fix_id, database, record.check_name, record.state, record.created_at[:19].replace("T", " "),
            f"{record.os_user}@{record.host}", f"{record.groups:,}", f"{record.deleted:,}",
            f"{record.repointed:,}", f"{record.skipped:,}", record.constraint_name or "-")
