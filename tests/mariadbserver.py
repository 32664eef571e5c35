"""A throwaway MariaDB server of its own (mariadb-install-db + mariadbd on a free port and socket), for tests that
need server settings the shared server does not have (the binary log in ROW format for live mode).

It has a `tmpdir` of its own: at start-up mariadbd (also the one mariadb-install-db runs) deletes every `#sql*`
file in its tmpdir (leftovers of a crash, it assumes), and with the default `/tmp` those are the live on-disk
temporary tables of every other server on the machine: a long statement of the shared server then fails with
`Error on delete of '/tmp/#sql-temptable-...' (Errcode: 2 "No such file or directory")`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
from pgcluster import free_port, require_programs

STARTUP_SECONDS = 60.0


class MariaDBServer:
    """`options` are passed to mariadbd as `--name=value`."""

    def __init__(self, **options: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dw_mariadb_"))
        self.port = free_port()
        self.socket = str(self.directory / "mariadb.sock")
        self.options = {"server-id": "1", "innodb-buffer-pool-size": "32M", "innodb-log-file-size": "8M",
                        "innodb-flush-log-at-trx-commit": "0", **options}
        self.as_root = ["--user=root"] if os.geteuid() == 0 else []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = str(self.directory / "data")
        tmpdir = self.directory / "tmp"
        tmpdir.mkdir()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", f"--tmpdir={tmpdir}",
                        "--skip-test-db", "--auth-root-authentication-method=normal", *self.as_root],
                       check=True, capture_output=True, timeout=120)
        options = [f"--{name}={value}" for name, value in self.options.items()]
        with (self.directory / "log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["mariadbd", "--no-defaults", f"--datadir={data}", f"--tmpdir={tmpdir}", f"--port={self.port}",
                 f"--socket={self.socket}",
                 "--bind-address=127.0.0.1", "--skip-name-resolve", *options, *self.as_root],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                conn = pymysql.connect(unix_socket=self.socket, user="root")
                break
            except pymysql.MySQLError:
                assert self.proc.poll() is None, (self.directory / "log").read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "mariadbd did not start"
                time.sleep(0.1)  # polling interval of a condition wait
        with conn.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
            cursor.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            cursor.execute("CREATE DATABASE test")
        conn.close()

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def started_mariadb(what: str, **options: str) -> Iterator[MariaDBServer]:
    """For a fixture: a started server, stopped and removed afterwards; skips (fails in CI) without MariaDB."""
    require_programs(what, "mariadb-install-db", "mariadbd")
    made = MariaDBServer(**options)
    try:
        made.start()
        yield made
    finally:
        made.stop()
