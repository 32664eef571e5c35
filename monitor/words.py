"""How dupewatch writes counts, database values and moments for people: one function each, shared by the CLI,
the dashboard and the fix's plain-text renderings, so that a figure or a timestamp reads the same everywhere.

Pure functions of plain values (no Textual, no database).
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Callable
from contextvars import ContextVar
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

# Nouns whose plural is not the noun plus "s".
_IRREGULAR = {"index": "indexes", "query": "queries", "batch": "batches"}


def plural(count: int, word: str) -> str:
    """`word` for one, its plural for any other count (`1 row`, `0 rows`, `3 batches`)."""
    if count == 1:
        return word
    head, _, last = word.rpartition(" ")  # "repointed row" -> "repointed rows"
    many = _IRREGULAR.get(last, f"{last}s")
    return f"{head} {many}" if head else many


def counted(count: int, word: str) -> str:
    """The count with its noun, thousands separated: `1 row`, `1,024 rows`, `0 checks`."""
    return f"{count:,} {plural(count, word)}"


def value_text(value: Any) -> str:
    """A database value as people read it. Timestamps always carry their microseconds (and their offset, when
    they have one): the form SQLite's DATETIME columns store, so a row read as stored and the same row read as a
    datetime look alike, and two rows a few microseconds apart (a race) never look equal. Characters a terminal
    acts on or does not show (control and format characters, separators other than the space) are written as their
    escapes (`\\r`, `\\x1b`, `\\u202e`): a row's value must not redraw the line that says which row is kept."""
    return _escaped(_plain_text(value))


# Format characters that text needs and a terminal only joins with: Persian and Indic words, emoji sequences
# (family, profession and flag emoji are joined by U+200D).
_JOINERS = frozenset("\u200c\u200d")


def _shown(ch: str) -> bool:
    """Whether `ch` is written as itself: printable, a joiner, or a space of any width (Japanese text's
    ideographic space U+3000, the no-break spaces of French numbers and ICU's times)."""
    return ch.isprintable() or ch in _JOINERS or unicodedata.category(ch) == "Zs"


def _escaped(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if _shown(ch) else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _plain_text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, bytes | bytearray | memoryview):
        return f"0x{bytes(value).hex()}"
    return str(value)


def moment_text(moment: datetime) -> str:
    """A moment dupewatch itself noted (a run, a first sighting, a full pass), to the second, local time."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# The config file the running command was given (`--config FILE`), as every printed next-step command must name it;
# None when the default one was found. Set by the CLI for the length of a command (`remember_config`); the fix
# machinery only reads it.
_CONFIG_TO_NAME: ContextVar[Path | None] = ContextVar("dupewatch_config_to_name", default=None)


def remember_config(path: Path | None) -> Callable[[], None]:
    """Record the config file that `command` names (the one the user gave, absolute; None for the default one)
    until the returned function is called: the end of the command that gave it."""
    token = _CONFIG_TO_NAME.set(path)
    return lambda: _CONFIG_TO_NAME.reset(token)


def command(*words: str) -> str:
    """A dupewatch command for the user to run next, as they must type it: each word shell-quoted, then
    `--config FILE` when the running command was given a config file other than the one found by default (a shell
    in another directory, or one without that option, finds another config or none). Only a file is ever named,
    never a URL (which may carry a password)."""
    return command_naming(_CONFIG_TO_NAME.get(), *words)


def command_naming(config: Path | None, *words: str) -> str:
    """`command`, naming `config` (None: no `--config`) instead of the running command's config file."""
    options = ("--config", str(config)) if config is not None else ()
    return " ".join(shlex.quote(word) for word in ("dupewatch", *words, *options))
