"""A fix batch waiting for an answer that never comes (the server hung, a network partition) waited forever: the
server's statement timeout is the server's to enforce, and the fix's connection had no client-side bound. Now
each statement of a fix's connection (its COMMIT too) gets the detection's deadline, statement timeout plus a
grace (PostgreSQL: the deadline's cancel, then the socket shut; MariaDB/MySQL: PyMySQL's read and write
timeouts), and the fix stops with the batch rolled back, resumable.

The server is frozen as a client sees a SIGSTOPped one: a proxy between the fix and the server that stops
passing bytes (its kernel still acknowledges them) and refuses new connections."""

from __future__ import annotations

import socket
import threading
from typing import Any

from sqlalchemy.engine import make_url

from fix_support import FixThread, checks_dict
from monitor.config import config_from_dict
from monitor.engine import Monitor
from monitor.fix import FixError, execute, prepare_fix

TIMEOUT = 1.0  # the servers' statement timeout, seconds: long enough for a batch on a loaded CI machine


class FreezingProxy:
    """A TCP proxy to `target` on 127.0.0.1; `freeze()` stops it passing bytes and accepting connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.frozen.is_set():
                client.close()
                continue
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.frozen.is_set():
                    self.frozen.wait()  # never forward again: the bytes are held, as a frozen peer holds them
                    return
                sink.sendall(data)
        except OSError:
            return

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_a_batch_whose_answer_never_comes_stops_the_fix_rolled_back(server, monkeypatch):
    db = server
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)",
               "INSERT INTO visit VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)")
    url = make_url(db.url)
    proxy = FreezingProxy((url.host or "127.0.0.1", url.port or (5432 if db.dialect == "postgresql" else 3306)))
    via_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    monitor = Monitor(config_from_dict(checks_dict(
        db, [{"name": "visits", "table": "visit", "key": ["k"]}], fix_url=via_proxy, statement_timeout=f"{TIMEOUT}s")))
    try:
        plan = prepare_fix(monitor, "visits")  # with the default grace: the catalog reads are not what is tested
        monkeypatch.setattr("monitor.db.DEADLINE_GRACE_SECONDS", 0.5)
        monkeypatch.setattr("monitor.db.CANCEL_WAIT_SECONDS", 0.3)
        fix = FixThread(monitor, "visits", plan, batch_size=1, progress=lambda _p: proxy.freeze())
        fix.start()
        fix.join(10)
        assert not fix.is_alive(), "the fix still waits for the frozen server"
    finally:
        proxy.close()
        monitor.close()
    assert isinstance(fix.error, FixError), fix.error or fix.report
    assert "rolled back" in str(fix.error), fix.error
    # the first batch committed before the freeze; the second, whose answer never came, was rolled back
    assert db.rows("SELECT id FROM visit ORDER BY id") == [(1,), (3,), (4,), (5,), (6,)]


def test_a_batch_whose_commit_answer_is_lost_is_not_said_rolled_back(server, monkeypatch):
    """The batch's COMMIT reached the server and committed, and then the connection was lost before its answer
    came (the deadline cut the socket, a network partition): the fix said "the current batch was rolled back"
    although the database had deleted and archived its rows. Now it says the outcome is unknown, that the
    database's record of the fix says which, and that running it again resumes from what the database kept."""
    db = server
    db.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)",
               "INSERT INTO visit VALUES (1, 1), (2, 1), (3, 2), (4, 2)")
    monitor = Monitor(config_from_dict(checks_dict(db, [{"name": "visits", "table": "visit", "key": ["k"]}])))
    dialect = monitor.database("app").writer.dialect
    real_commit, real_advance = dialect.do_commit, execute._advance
    batches: list[object] = []

    def advance(*args: object, **kwargs: object) -> object:
        batches.append(real_advance(*args, **kwargs))
        return batches[-1]

    def commit_then_lose_the_answer(pooled: Any) -> None:
        real_commit(pooled)
        if len(batches) == 1 and batches[0] is not None:
            batches.append("lost")
            pooled.dbapi_connection.close()  # the driver's connection, as the deadline's socket shutdown leaves it
            raise dialect.loaded_dbapi.OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(execute, "_advance", advance)
    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
    try:
        fix = FixThread(monitor, "visits", prepare_fix(monitor, "visits"), batch_size=1)
        fix.start()
        fix.join(10)
    finally:
        monkeypatch.undo()
        monitor.close()
    assert isinstance(fix.error, FixError), fix.error or fix.report
    message = str(fix.error)
    assert "rolled back" not in message and "whether the database committed it is unknown" in message, message
    assert "run the fix again to resume" in message, message
    # the batch did commit: its row is deleted and archived, and the record says so
    assert db.rows("SELECT id FROM visit ORDER BY id") == [(1,), (3,), (4,)]
    assert db.scalar("SELECT done_through FROM dupewatch_fix") == 1
