"""Live mode (`live = true` in a `[databases.NAME]` entry): duplicates counted from the database's change stream.

The stream is a hint, never a count: each change names keys whose groups are re-counted in the table at once
(monitor/live/groups.py), so a new duplicate reaches the metrics within about a second of its commit, while
the poll keeps running as the safety net that fills every gap. Live mode reads the stream and counts; it
writes nothing. What a database offers is asked of its dialect (`Dialect.change_stream`): PostgreSQL a
temporary logical slot (monitor/live/postgresql.py); SQLite no stream at all, so it keeps polling and says so.

    readers = start_live(monitor, sink)   # one reader thread per live database that has a stream
    ...
    stop_live(readers)
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from monitor.live.changes import LiveRefused, StreamLost

if TYPE_CHECKING:
    from monitor.config import CheckConfig, Config
    from monitor.engine import Monitor
    from monitor.live.groups import Figures
    from monitor.live.reader import LiveReader, LiveSink

__all__ = ["Figures", "LiveReader", "LiveRefused", "LiveSink", "StreamLost", "polling_notices", "start_live",
           "stop_live", "streamed_checks"]

log = logging.getLogger("dupewatch.live")

# Imported when first asked for: the MySQL binary log's decoder process (`python -m monitor.live.binlog_decoder`, a
# new interpreter) imports this package, and needs none of the engine, SQLAlchemy or the reader.
_LAZY = {"Figures": "monitor.live.groups", "LiveReader": "monitor.live.reader", "LiveSink": "monitor.live.reader"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def polling_notices(config: Config, monitor: Monitor, databases: Collection[str] | None = None) -> list[str]:
    """One line for each database with `live = true` (of `databases`, or all) whose server has no change
    stream dupewatch reads."""
    notices = []
    for name, database in config.databases.items():
        if database.live and (databases is None or name in databases):
            rules = monitor.database(name).rules
            if rules.change_stream_absent:
                notices.append(f"database {name}: live = true: {rules.change_stream_absent}; "
                               "dupewatch keeps polling it at each check's interval")
    return notices


def streamed_checks(config: Config, monitor: Monitor) -> dict[str, list[CheckConfig]]:
    """The table checks of each database whose change stream `start_live` would follow (`live = true`, a
    dialect with a stream, table checks), by database."""
    found: dict[str, list[CheckConfig]] = {}
    for name, database in config.databases.items():
        if database.live and not monitor.database(name).rules.change_stream_absent:
            checks = [c for c in config.checks if c.database == name and not c.is_custom]
            if checks:
                found[name] = checks
    return found


def start_live(monitor: Monitor, sink: LiveSink, previous: Mapping[str, LiveReader] | None = None, *,
               remember: bool = False, owner: str | None = None) -> list[LiveReader]:
    """Start a reader for each database with `live = true` and a change stream; log the others once. A reader of
    a database in `previous` (the readers of the config before a reload) takes over from that one. `remember`
    (the daemon): the readers save their checks' groups, and at the start (no `previous`) count those formed
    while no reader ran as new; `owner` names who saves them (`History.forget_live_groups`)."""
    from monitor.live.reader import LiveReader

    config = monitor.config
    for notice in polling_notices(config, monitor):
        log.warning(notice)
    readers = []
    for name, database in config.databases.items():
        db = monitor.database(name)
        stream = db.rules.change_stream(name, db.url) if database.live else None
        checks = [c for c in config.checks if c.database == name and not c.is_custom]
        if stream is None or not checks:
            continue
        reader = LiveReader(monitor, name, checks, stream, sink, predecessor=(previous or {}).get(name),
                            remember=remember, compare=previous is None, owner=owner)
        reader.start()
        readers.append(reader)
    return readers


def stop_live(readers: list[LiveReader]) -> None:
    for reader in readers:
        reader.stop()
