"""Errors of the fix machinery; every message is one line a user can act on."""


class FixError(Exception):
    """Base class: the fix, undo or guard could not proceed (one-line message, CLI exit 2)."""


class FixRefused(FixError):
    """Refused before changing anything: a blocker, a lock held elsewhere, no confirmation."""


class NotAsArchived(FixRefused):
    """Undo refused: rows it restored are not the archived ones once inserted (the database changed them)."""


class PrivilegeMissing(FixError):
    """A batch the database refused for a privilege the fix role lacks: every run stops there until it is
    granted, so the message names the GRANT and gives no "run it again to resume"."""


class BatchAborted(FixError):
    """A batch found something unexpected under its locks and was rolled back whole."""


class RepointNotDone(BatchAborted):
    """The database did not repoint as planned: a concurrent writer (resuming helps), or a trigger or rule of the
    referencing table (resuming meets it again until it is dealt with)."""
