"""Ctrl-C that a database driver took for a statement's error, raised again as Ctrl-C.

A long SQLite statement runs Python only in its progress handler (the statement deadline) and in dupewatch's SQL
functions, so that is where Ctrl-C lands; sqlite3 reports the KeyboardInterrupt raised there as the statement's own
error ("interrupted", which dupewatch reads as a timeout; "user-defined function raised exception"), and the
command would go on as if the statement had failed. The CLI's SIGINT handler (`raise_ctrl_c`) notes each Ctrl-C;
`Database` engines raise it again (`ctrl_c_again`) when the error of a statement begun before it reaches SQLAlchemy
on the main thread.
No imports beyond the standard library: the CLI installs the handler before it loads anything else.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

CTRL_C = threading.Event()


def raise_ctrl_c(_signum: int, _frame: FrameType | None) -> None:
    """A SIGINT handler: Python's own (KeyboardInterrupt), noted for `ctrl_c_again`."""
    CTRL_C.set()
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT with `raise_ctrl_c` where Python's default handler is in place (a process started in the
    background ignores SIGINT, and keeps ignoring it)."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_ctrl_c)


def statement_begins(*_args: Any) -> None:
    """A SQLAlchemy `before_cursor_execute` listener: a statement the main thread begins after a Ctrl-C was not
    stopped by it (the command handled that Ctrl-C and went on: a guard cleaning up, a fix marking its record)."""
    if threading.current_thread() is threading.main_thread():
        CTRL_C.clear()


def ctrl_c_again(context: Any) -> None:
    """A SQLAlchemy `handle_error` listener: a statement that failed on the main thread after a Ctrl-C (since it
    began, see `statement_begins`) failed for it, whatever the driver called the error."""
    if context.execution_context is not None and CTRL_C.is_set() \
            and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt
