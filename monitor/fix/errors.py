"""Errors of the fix machinery; every message is one line a user can act on."""

from __future__ import annotations


class FixError(Exception):
    """Base class: the fix, undo or guard could not proceed (one-line message, CLI exit 2)."""


class FixRefused(FixError):
    """Refused before changing anything: a blocker, a lock held elsewhere, no confirmation."""


class NotAsArchived(FixRefused):
    """Undo refused: `differ` of the `restored` rows it put back into `table` are not the archived ones once
    inserted (the database changed them); `cause`: why, as far as dupewatch can tell, and what to do."""

    TRIGGER = ("a BEFORE INSERT trigger or a rule of the table?); disable it for the undo (and enable it after), then "
               "undo again")

    def __init__(self, fix_id: str, table: str, differ: int, restored: int, cause: str = TRIGGER) -> None:
        self.fix_id, self.table, self.differ, self.restored = fix_id, table, differ, restored
        super().__init__(f"undo of fix {fix_id} refused, nothing changed: {differ} of the {restored} row(s) restored "
                         f"into {table!r} are not the archived ones once inserted: the database changed them ({cause}")

    def because(self, cause: str) -> NotAsArchived:
        """The same refusal with another cause."""
        return NotAsArchived(self.fix_id, self.table, self.differ, self.restored, cause)


class PrivilegeMissing(FixError):
    """A batch the database refused for a privilege the fix role lacks: every run stops there until it is
    granted, so the message names the GRANT and gives no "run it again to resume"."""


class BatchAborted(FixError):
    """A batch found something unexpected under its locks and was rolled back whole."""


class RepointNotDone(BatchAborted):
    """The database did not repoint as planned: a concurrent writer (resuming helps), or a trigger or rule of the
    referencing table (resuming meets it again until it is dealt with)."""


class NestedRows(BatchAborted):
    """An archiving batch found rows of `grandchild` (a label) referring to rows of the reference `ref` (its label;
    `table`: its table) that it would archive, written since the plan (which refuses such rows up front): archiving
    more than one level is not supported, so every run stops at the same batch while those rows are there.
    `config_name`: the reference as `on_reference` names it."""

    def __init__(self, count: int, grandchild: str, ref: str, table: str, config_name: str) -> None:
        self.grandchild, self.ref, self.table, self.config_name = grandchild, ref, table, config_name
        super().__init__(f"{count} row(s) of {grandchild} now reference rows of {ref} that the fix would archive: "
                         "their ON DELETE would reach them where no archive does (archiving more than one level "
                         "is not supported)")
