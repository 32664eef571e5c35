"""A frozen database (a throwaway PostgreSQL cluster whose postmaster and backends are stopped with SIGSTOP) is
reported down by the client-side deadline: only the frozen server would have enforced `statement_timeout`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import DaemonProcess, daemon_starter, free_port

from dbtest import IN_CI, write_config

pytestmark = pytest.mark.timeout(180)

STATEMENT_TIMEOUT = 2.0
GRACE = 2.0  # monitor.db.DEADLINE_GRACE_SECONDS
CANCEL_WAIT = 1.0  # monitor.db.CANCEL_WAIT_SECONDS
UP = "dupewatch_check_up"


class Cluster:
    """A PostgreSQL cluster of its own (initdb + pg_ctl) on a free port, owned by the `postgres` user when the
    tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dw_frozen_"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.directory, "postgres")

    def run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = str(self.directory / "data")
        self.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
        self.run("pg_ctl", "-D", data, "-l", str(self.directory / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def processes(self) -> list[int]:
        """The postmaster and every backend it started."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def signal_all(self, signum: int) -> None:
        """Signal the postmaster first, then its backends: a backend forked between listing the children and
        stopping the postmaster would otherwise stay awake and answer."""
        postmaster, *_ = self.processes()
        os.kill(postmaster, signum)
        signalled = {postmaster}
        while fresh := [pid for pid in self.processes() if pid not in signalled]:
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):  # a backend that exited meanwhile
                    os.kill(pid, signum)
                signalled.add(pid)

    def stop(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self.signal_all(signal.SIGCONT)
            subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        if IN_CI:
            pytest.fail("initdb/pg_ctl are needed for the frozen-database test (CI=true)")
        pytest.skip("initdb/pg_ctl not found")
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    yield from daemon_starter(tmp_path)


def test_a_frozen_database_reports_up_0_within_the_deadline(cluster: Cluster, tmp_path: Path, start_daemon) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "dupewatch.toml", {"frozen": {"url": cluster.url, "statement_timeout": f"{STATEMENT_TIMEOUT}s"}},
        [{"name": "frozen-check", "database": "frozen", "sql": "SELECT 1 AS a WHERE false", "interval": 0.5}],
        metrics={"listen": f"127.0.0.1:{port}"}, state={"path": str(tmp_path / "history.sqlite")})
    daemon: DaemonProcess = start_daemon(config, port)
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 1, "the first successful run")

    cluster.signal_all(signal.SIGSTOP)
    frozen_at = time.monotonic()
    # A run that started just before the freeze has the whole deadline (its statement, or the session reset when
    # the connection is returned); the next run's ping then waits it too. Each expiry also waits for the cancel
    # and then for the statement to give up before the socket is shut (CANCEL_WAIT each).
    budget = 2 * (STATEMENT_TIMEOUT + GRACE + 2 * CANCEL_WAIT) + 3
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 0, "up = 0 while the database is frozen",
                    timeout=budget)
    assert time.monotonic() - frozen_at < budget
    assert "client-side deadline" in daemon.log()

    cluster.signal_all(signal.SIGCONT)
    daemon.wait_for(lambda s: s.value(UP, "frozen-check") == 1, "up = 1 again once the database thaws",
                    timeout=30)
    assert daemon.stop() == 0
