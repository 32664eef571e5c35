"""Why a fleet target's connect failed, as its server says: the whole server refusing, or only that database.

The server's own code decides when the driver gives one (`Dialect.connect_refusal`: MySQL/MariaDB's error
numbers). PostgreSQL's does not reach us: libpq keeps a failed connection's SQLSTATE to itself, and the FATAL's
text is in the server's `lc_messages` language, so nothing is read from it. The server is asked instead, once
per failed connect, on a connection of its own to the source's database (where discovery runs):

- it connects: `pg_database` says whether the target's database refuses this role (missing, closed to
  connections, no CONNECT privilege, at its own connection limit): only that database refuses (its checks fail,
  the server's other targets go on). When the database would take it, the role's `CONNECTION LIMIT` and the
  server's `max_connections` say whether this connection took the last slot: the server is out of connections
  for us (it takes fewer of our checks at once, `monitor.fleet.budget`); otherwise the database refused alone.
- it does not connect either: libpq's ping says whether the server answered at all. No answer (down,
  unreachable, starting up, shutting down): the server refuses as a whole. An answer: it answers but refuses us
  its databases, which for a role that connected before is being out of connections (a role or password refused
  everywhere, or a source database dropped, back off alike: no connection would succeed).

Never a storm: a server-wide answer is shared for `SHARED_SECONDS` by the server's other targets failing at the
same moment (one question at a time per server), and after it the server backs off as a whole.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL

from monitor.config import Config, ConfigError, TargetDatabaseConfig
from monitor.db import Database, parse_url
from monitor.dialects.base import Refusal

PROBE_CONNECT_SECONDS = 3.0
PROBE_STATEMENT_SECONDS = 5.0
SHARED_SECONDS = 5.0  # a server-wide answer is reused this long by the server's other failing targets


@dataclass(frozen=True)
class Verdict:
    refusal: Refusal
    reason: str | None = None  # what the server said of the database, when it refused only that


class Refusals:
    """Asks servers why their targets' connects failed; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asking: dict[str, threading.Lock] = {}  # server -> held while it is asked
        self._answered: dict[str, tuple[float, Verdict]] = {}  # server -> its last server-wide answer

    def why(self, config: Config, target: TargetDatabaseConfig, db: Database, failure: BaseException) -> Verdict:
        """Why `target`'s connect (on `db`) failed with `failure`."""
        known = db.rules.connect_refusal(failure)
        if known is not None:
            return Verdict(known)
        with self._lock:
            asking = self._asking.setdefault(target.server, threading.Lock())
        with asking:
            with self._lock:
                answered = self._answered.get(target.server)
            if answered is not None and time.monotonic() - answered[0] < SHARED_SECONDS:
                return answered[1]
            try:
                source = config.sources[target.source]
                url = parse_url(source.resolved_url(target.source), f"sources.{target.source}.url")
            except (KeyError, ConfigError):  # its source left the config, or its variable the environment
                return Verdict("server")
            verdict = ask(db, url, db.url.database or "")
            if verdict.refusal != "database":
                with self._lock:
                    self._answered[target.server] = (time.monotonic(), verdict)
            return verdict


def ask(db: Database, url: URL, database: str) -> Verdict:
    """Ask the server at `url` (the source's own database) why `database` refused `db`'s connect."""
    rules = db.rules
    engine = sa.create_engine(url, poolclass=sa.NullPool, connect_args=rules.connect_args(
        url, read_only=True, timeout=PROBE_STATEMENT_SECONDS, connect_timeout=PROBE_CONNECT_SECONDS))
    try:
        try:
            conn = engine.connect()
        except Exception as exc:  # drivers raise plain OSError and friends for socket trouble
            known = rules.connect_refusal(exc)
            if known in ("server", "exhausted"):
                return Verdict(known)
            return Verdict("exhausted" if rules.answers(url, PROBE_CONNECT_SECONDS) else "server")
        with conn:
            try:
                reason = rules.database_refusal(conn, database)
                if reason is None and not rules.connections_left(conn):
                    return Verdict("exhausted")
                return Verdict("database", reason)
            except sa.exc.DBAPIError:  # the catalog could not be read: the server answered, so not the server
                return Verdict("database")
            finally:
                conn.rollback()
    finally:
        engine.dispose()
