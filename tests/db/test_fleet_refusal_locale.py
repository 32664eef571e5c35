"""A PostgreSQL server that speaks German (`lc_messages = de_DE.UTF-8`): its FATALs are not the English text a
reader of messages would look for, and the fleet still tells one database refusing from the whole server
refusing, by asking the server. The machine has no German locale installed (`locale -a`: C, C.utf8, POSIX): one
is compiled from glibc's sources with `localedef` into a directory of the test's own, given to the throwaway
server as `LOCPATH`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pgcluster import Cluster, require_programs, started_cluster
from sqlalchemy.engine import make_url

from dbtest import IN_CI, write_config
from fleetdb import TABLE, assert_server_tells_one_database_from_itself, limited_role, pg_databases, refusal
from monitor.config import load_config
from monitor.detect import CheckResult
from monitor.engine import Monitor
from monitor.fleet import expand
from monitor.fleet.discover import discover_all
from monitor.schedule import Poller

LOCALE_SOURCE = Path("/usr/share/i18n/locales/de_DE")


@pytest.fixture(scope="module")
def german() -> Iterator[Cluster]:
    require_programs("a German-speaking PostgreSQL", "localedef", "initdb", "pg_ctl")
    if not LOCALE_SOURCE.exists():
        if IN_CI:
            pytest.fail(f"{LOCALE_SOURCE} is needed to compile a German locale (CI=true)")
        pytest.skip(f"{LOCALE_SOURCE} not found")
    locales = Path(tempfile.mkdtemp(prefix="dw_locales_"))
    previous = os.environ.get("LOCPATH")
    try:
        subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(locales / "de_DE.UTF-8")], check=True,
                       capture_output=True, timeout=120)
        for path in [locales, *locales.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # the server runs as postgres
        os.environ["LOCPATH"] = str(locales)  # the postmaster started below inherits it
        yield from started_cluster("a German-speaking PostgreSQL", lc_messages="de_DE.UTF-8")
    finally:
        if previous is None:
            os.environ.pop("LOCPATH", None)
        else:
            os.environ["LOCPATH"] = previous
        shutil.rmtree(locales, ignore_errors=True)


def test_the_server_speaks_german(german: Cluster):
    """The premise: its FATALs are German, so no English words are there to be read."""
    url = make_url(german.url)
    _verdict, error = refusal(url.set(database="dw_no_such_database").render_as_string(False), german.url)
    assert "existiert nicht" in error and "does not exist" not in error, error


def test_a_german_server_tells_one_database_refusing_from_itself_refusing(german: Cluster):
    with pg_databases(4, server_url=german.url) as fleet, limited_role("postgresql", fleet) as url:
        assert_server_tells_one_database_from_itself(german.url, fleet, url)


def test_a_database_closed_on_a_german_server_does_not_back_the_server_off(german: Cluster, tmp_path: Path):
    """One database closed to connections: its check fails with the server's words, the server does not back
    off, and the other target keeps being checked (the English reading backed the whole server off)."""
    with pg_databases(2, server_url=german.url) as fleet:
        closed, open_ = fleet.names
        path = write_config(tmp_path / "fleet.toml", {}, [
            {"name": "logins", "source": "tenants", "table": TABLE, "key": ["user_id", "agent"], "interval": 0.3}],
            **{"sources.tenants": {"url": german.url, "discover": "databases", "include": fleet.include}})
        config = expand(load_config(str(path)), discover_all(load_config(str(path))))
        admin = sa.create_engine(german.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS false'))
        results: list[CheckResult] = []
        done = threading.Event()

        def on_result(result: CheckResult) -> None:
            results.append(result)
            if sum(r.name.endswith(open_) and r.status != "error" for r in results) >= 5 \
                    and any(r.name.endswith(closed) for r in results):
                done.set()

        monitor = Monitor(config)
        poller = Poller(monitor, on_result, stagger=False)
        poller.start()
        try:
            assert done.wait(60), [(r.name, r.error) for r in results]
            server = f"127.0.0.1:{german.port}"
            assert poller.budget.backing_off(server) == 0.0
            errors = [r.error or "" for r in results if r.name.endswith(closed)]
            assert errors and all("akzeptiert gegenwärtig keine Verbindungen" in e for e in errors), errors
            assert not any("back off" in (r.error or "") for r in results), results
        finally:
            poller.shutdown()
            monitor.close()
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS true'))
            admin.dispose()
