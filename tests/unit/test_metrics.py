"""The exporter's semantics: stale-safe figures, series following reloads, fixes counted, HTTP and TLS."""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbtest import metric_samples
from monitor.config import Config, config_from_dict
from monitor.detect import CheckResult
from monitor.metrics import RENDER_MIN_SECONDS, MetricsExporter, MetricsServeError, record_fix, record_undo


def make_config(checks: list[tuple[str, str]], listen: str | None = None, **metrics: Any) -> Config:
    data: dict[str, Any] = {
        "databases": {db: {"url": "sqlite:///unused.sqlite"} for _, db in checks},
        "checks": [{"name": name, "database": db, "table": "t", "key": ["k"], "interval": "30s"}
                   for name, db in checks],
    }
    if listen is not None:
        data["metrics"] = {"listen": listen, **metrics}
    return config_from_dict(data)


samples = metric_samples  # (sample name, check) -> value


@pytest.fixture
def exporters() -> Iterator[list[MetricsExporter]]:
    made: list[MetricsExporter] = []
    yield made
    for exporter in made:
        exporter.close()


def new_exporter(exporters: list[MetricsExporter], config: Config) -> MetricsExporter:
    exporter = MetricsExporter(config, process_metrics=False)
    exporters.append(exporter)
    return exporter


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failed_run_keeps_the_last_good_figures_and_drops_up(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")]))
    good = CheckResult("c", "d", "duplicates", 3, 5, 20.0)
    exporter.observe(good)
    exporter.observe(CheckResult("c", "d", "error", None, None, 5000.0, "connection refused"))

    values = samples(exporter)
    assert values[("dupewatch_duplicate_groups", "c")] == 3
    assert values[("dupewatch_duplicate_excess_rows", "c")] == 5
    assert values[("dupewatch_check_up", "c")] == 0
    assert values[("dupewatch_check_errors_total", "c")] == 1
    assert values[("dupewatch_check_last_success_timestamp_seconds", "c")] == good.finished_at.timestamp()
    assert values[("dupewatch_check_duration_seconds_count", "c")] == 2


def test_a_check_that_never_succeeded_has_no_figures_but_zeroed_counters(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")]))
    values = samples(exporter)
    assert values[("dupewatch_check_errors_total", "c")] == 0
    assert values[("dupewatch_fix_deleted_rows_total", "c")] == 0
    assert values[("dupewatch_fix_restored_rows_total", "c")] == 0
    assert values[("dupewatch_check_interval_seconds", "c")] == 30
    assert ("dupewatch_duplicate_groups", "c") not in values
    assert ("dupewatch_check_up", "c") not in values


def test_reload_removes_the_series_of_removed_checks_and_ignores_their_late_results(
        exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("keep", "d"), ("drop", "d")]))
    exporter.observe(CheckResult("keep", "d", "ok", 0, 0, 1.0))
    exporter.observe(CheckResult("drop", "d", "duplicates", 1, 1, 1.0))

    exporter.reload(make_config([("keep", "d"), ("moved", "e")]))
    exporter.observe(CheckResult("drop", "d", "duplicates", 2, 2, 1.0))  # a run in flight during the reload

    checks = {check for _, check in samples(exporter)}
    assert checks == {"keep", "moved"}


def test_record_fix_counts_in_every_live_exporter_and_is_a_no_op_without_one(
        exporters: list[MetricsExporter]) -> None:
    record_fix("c", "d", 7)  # no exporter yet: nothing to count in, nothing raised
    exporter = new_exporter(exporters, make_config([("c", "d")]))
    record_fix("c", "d", 4)
    record_fix("c", "d", 0)
    assert samples(exporter)[("dupewatch_fix_deleted_rows_total", "c")] == 4
    exporter.close()
    record_fix("c", "d", 5)
    assert samples(exporter)[("dupewatch_fix_deleted_rows_total", "c")] == 4


def test_an_undone_fix_counts_its_rows_restored_and_the_deleted_counter_never_goes_down(
        exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")]))

    def counted() -> tuple[float, float, float]:
        values = samples(exporter)
        return (values[("dupewatch_fix_deleted_rows_total", "c")], values[("dupewatch_fix_restored_rows_total", "c")],
                values[("dupewatch_duplicate_rows_appeared_total", "c")])

    exporter.fix_totals("d", {"c": 3}, restored={"c": 3})  # the records' first reading: the past, counted
    assert counted() == (3, 3, 0)
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 40, 1.0))
    exporter.fix_totals("d", {"c": 43}, restored={"c": 3})  # a fix of the 40
    exporter.observe(CheckResult("c", "d", "duplicates", 0, 0, 1.0))
    exporter.fix_totals("d", {"c": 43}, restored={"c": 43})  # ... undone: its 40 rows are back
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 41, 1.0))
    assert counted() == (43, 43, 1)  # deleted stays; the 40 restored rows did not appear, the race's 1 did
    record_undo("c", "d", 5)  # an undo run by this process (the dashboard), before the records say so
    exporter.fix_totals("d", {"c": 43}, restored={"c": 48})
    exporter.fix_totals("d", {"c": 43}, restored={"c": 3})  # a record lost its undo: the counter stays
    assert counted()[:2] == (43, 48)
    exporter.close()
    record_undo("c", "d", 5)  # no live exporter: nothing counted
    assert counted()[:2] == (43, 48)


def test_serves_over_http_and_refuses_a_taken_port_in_one_line(exporters: list[MetricsExporter]) -> None:
    listen = f"127.0.0.1:{free_port()}"
    first = new_exporter(exporters, make_config([("c", "d")], listen))
    first.serve()
    with urllib.request.urlopen(first.url, timeout=5) as response:
        assert b'dupewatch_check_interval_seconds{check="c",database="d",target="d"} 30.0' in response.read()

    second = new_exporter(exporters, make_config([("c", "d")], listen))
    with pytest.raises(MetricsServeError, match=f"^metrics listen {listen}: address already in use"):
        second.serve()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_serves_over_tls_when_a_certificate_is_configured(exporters: list[MetricsExporter], tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    exporter = new_exporter(exporters, make_config([("c", "d")], f"127.0.0.1:{free_port()}",
                                                   tls_cert=str(cert), tls_key=str(key)))
    exporter.serve()
    assert exporter.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with urllib.request.urlopen(exporter.url, timeout=5, context=context) as response:
        assert b"dupewatch_build_info" in response.read()


def test_a_missing_tls_file_is_a_one_line_error(exporters: list[MetricsExporter], tmp_path: Path) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")], f"127.0.0.1:{free_port()}",
                                                   tls_cert=str(tmp_path / "no.crt"), tls_key=str(tmp_path / "no.key")))
    with pytest.raises(MetricsServeError, match="TLS file not found"):
        exporter.serve()


def fetch(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(response.headers), response.read()


def test_the_served_page_follows_new_results_within_about_a_second(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")], f"127.0.0.1:{free_port()}"))
    exporter.serve()
    _, body = fetch(exporter.url)
    assert b"dupewatch_duplicate_groups{" not in body

    exporter.observe(CheckResult("c", "d", "duplicates", 6, 9, 3.0))
    observed = time.monotonic()
    while b'dupewatch_duplicate_groups{check="c",database="d",target="d"} 6.0' not in fetch(exporter.url)[1]:
        assert time.monotonic() - observed < 5, "the page never showed the new result"
        time.sleep(0.05)
    assert time.monotonic() - observed < RENDER_MIN_SECONDS + 1.5


def test_openmetrics_and_gzip_are_negotiated_like_prometheus_client(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")], f"127.0.0.1:{free_port()}"))
    exporter.serve()
    headers, body = fetch(exporter.url, Accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                          **{"Accept-Encoding": "gzip"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).rstrip().endswith(b"# EOF")
    headers, body = fetch(exporter.url)
    assert headers["Content-Type"].startswith("text/plain") and b"# EOF" not in body
    _, filtered = fetch(exporter.url + "?name[]=dupewatch_check_interval_seconds")
    assert b"dupewatch_check_interval_seconds{" in filtered and b"dupewatch_build_info" not in filtered


def test_incremental_checks_count_new_groups_after_their_first_run_and_export_rows_scanned(
        exporters: list[MetricsExporter]) -> None:
    from datetime import datetime

    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "inc", "database": "d", "table": "t", "key": ["k"], "incremental": "id"},
        {"name": "plain", "database": "d", "table": "t", "key": ["k"]}]})
    exporter = new_exporter(exporters, config)
    values = samples(exporter)
    assert values[("dupewatch_new_duplicate_groups_total", "inc")] == 0  # rate() works from the first scrape
    assert ("dupewatch_new_duplicate_groups_total", "plain") not in values
    full = datetime(2026, 11, 30, 12, 0).astimezone()
    exporter.observe(CheckResult("inc", "d", "duplicates", 5, 5, 900.0, mode="full", rows_scanned=10_000,
                                 new_groups=5, last_full_pass=full, first_run=True))
    values = samples(exporter)
    assert values[("dupewatch_new_duplicate_groups_total", "inc")] == 0  # nothing to compare the first run with
    assert values[("dupewatch_check_rows_scanned", "inc")] == 10_000
    assert values[("dupewatch_check_last_full_pass_timestamp_seconds", "inc")] == full.timestamp()
    exporter.observe(CheckResult("inc", "d", "duplicates", 7, 7, 9.0, mode="incremental", rows_scanned=40,
                                 new_groups=2, last_full_pass=full))
    exporter.observe(CheckResult("plain", "d", "duplicates", 1, 1, 9.0))
    values = samples(exporter)
    assert values[("dupewatch_new_duplicate_groups_total", "inc")] == 2
    assert values[("dupewatch_check_rows_scanned", "inc")] == 40
    assert ("dupewatch_check_rows_scanned", "plain") not in values


# -- violations apart, rows that appeared, restores by subject -----------------------------------------------


def mixed_config() -> Config:
    return config_from_dict({
        "databases": {"d": {"url": "sqlite:///unused.sqlite"}},
        "checks": [{"name": "dupes", "database": "d", "table": "t", "key": ["k"]},
                   {"name": "vote-drift", "database": "d", "sql": "SELECT 1 WHERE 1 = 0"}],
    })


def test_a_violations_check_is_exported_as_violations_never_as_duplicates(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, mixed_config())
    exporter.observe(CheckResult("vote-drift", "d", "violations", 4, 4, 3.0))
    exporter.observe(CheckResult("dupes", "d", "duplicates", 2, 13, 3.0))

    values = samples(exporter)
    assert values[("dupewatch_violation_rows", "vote-drift")] == 4
    assert ("dupewatch_duplicate_groups", "vote-drift") not in values
    assert ("dupewatch_duplicate_excess_rows", "vote-drift") not in values
    assert ("dupewatch_fix_deleted_rows_total", "vote-drift") not in values  # `dupewatch fix` refuses it
    assert (values[("dupewatch_duplicate_groups", "dupes")], values[("dupewatch_duplicate_excess_rows", "dupes")]) \
        == (2, 13)
    assert ("dupewatch_violation_rows", "dupes") not in values


def test_rows_that_appear_after_a_fix_are_counted_whenever_the_fix_is_read(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, make_config([("c", "d")]))

    def appeared() -> float:
        return samples(exporter)[("dupewatch_duplicate_rows_appeared_total", "c")]

    exporter.observe(CheckResult("c", "d", "duplicates", 40, 98, 1.0))
    assert appeared() == 0  # the first run has nothing to compare with
    exporter.observe(CheckResult("c", "d", "duplicates", 41, 100, 1.0))
    assert appeared() == 2

    # A fix deletes the 100, the race adds 5 before the next run; the fix is read before that run.
    exporter.fix_totals("d", {"c": 0})  # the fix records' first reading: the past
    exporter.fix_totals("d", {"c": 100})
    exporter.observe(CheckResult("c", "d", "duplicates", 5, 5, 1.0))
    assert appeared() == 7

    # Another fix (of those 5) is read only after the run that already saw its effect, and the race adds 10.
    exporter.observe(CheckResult("c", "d", "duplicates", 0, 0, 1.0))
    exporter.fix_totals("d", {"c": 105})
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 10, 1.0))
    assert appeared() == 17

    exporter.observe(CheckResult("c", "d", "error", None, None, 1.0, "down"))
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 10, 1.0))
    assert appeared() == 17  # a failed run in between adds nothing


def test_violating_rows_that_appear_are_counted_apart(exporters: list[MetricsExporter]) -> None:
    exporter = new_exporter(exporters, mixed_config())
    for rows in (4, 1, 6):
        exporter.observe(CheckResult("vote-drift", "d", "violations" if rows else "ok", rows, rows, 1.0))

    values = samples(exporter)
    assert values[("dupewatch_violation_rows_appeared_total", "vote-drift")] == 5
    assert values[("dupewatch_duplicate_rows_appeared_total", "dupes")] == 0


def test_a_restart_restores_the_figures_of_what_the_check_measures_only(
        exporters: list[MetricsExporter], tmp_path: Path) -> None:
    from monitor.history import History

    config = make_config([("c", "d")])
    store = History(tmp_path / "h.sqlite")
    try:
        store.record(CheckResult("c", "d", "duplicates", 2, 13, 1.0, subject="this-table"))
        store.record(CheckResult("c", "d", "duplicates", 10, 10, 1.0, subject="another-project"))
        elsewhere = new_exporter(exporters, config)
        elsewhere.restore(store, lambda check: "not-measured-yet", config)
        assert ("dupewatch_duplicate_groups", "c") not in samples(elsewhere)

        exporter = new_exporter(exporters, config)
        exporter.restore(store, lambda check: "this-table", config)
        values = samples(exporter)
        assert (values[("dupewatch_duplicate_groups", "c")], values[("dupewatch_duplicate_excess_rows", "c")]) \
            == (2, 13)

        exporter.observe(CheckResult("c", "d", "duplicates", 2, 15, 1.0))
        assert samples(exporter)[("dupewatch_duplicate_rows_appeared_total", "c")] == 2  # from the restored 13
    finally:
        store.close()


def test_silent_connections_never_starve_a_scrape(exporters: list[MetricsExporter]) -> None:
    """Hundreds of connections that send nothing (a scanner, an attacker) cost no worker: every scrape is answered
    at once while they wait, and the oldest make room for new ones rather than new ones being refused."""
    from monitor.metrics import HTTP_WAITING

    exporter = new_exporter(exporters, make_config([("c", "d")], listen=f"127.0.0.1:{free_port()}"))
    exporter.serve()
    host, port = "127.0.0.1", int(exporter.url.rsplit(":", 1)[1].split("/")[0])
    silent = []
    try:
        for _ in range(HTTP_WAITING + 20):
            silent.append(socket.create_connection((host, port), timeout=5))
        for _ in range(15):
            started = time.monotonic()
            with urllib.request.urlopen(exporter.url, timeout=5) as response:
                assert response.status == 200 and b"dupewatch_check_interval_seconds" in response.read()
            assert time.monotonic() - started < 1.0
        silent[0].settimeout(5)
        assert silent[0].recv(1) == b"", "the oldest silent connection is closed to make room"
        silent[-1].setblocking(False)
        with pytest.raises(BlockingIOError):
            silent[-1].recv(1)  # the newest still waits for its request
    finally:
        for conn in silent:
            conn.close()


def target_samples(exporter: MetricsExporter) -> dict[tuple[str, str], float]:
    """(sample name, target) -> value of the per-target series."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, s.labels["target"]): s.value
            for family in text_string_to_metric_families(exporter.metrics.exposition().decode())
            for s in family.samples if s.name.startswith("dupewatch_target_")}


def test_a_reload_that_removes_a_targets_failing_check_recomputes_the_targets_up_and_duration(
        exporters: list[MetricsExporter]) -> None:
    """`dupewatch_target_up` and `_duration_seconds` take the target's checks of the config being run: a check a
    reload removed (the broken one an operator took out) no longer holds its target down until the next run."""
    exporter = new_exporter(exporters, make_config([("broken", "d"), ("fine", "d")]))
    exporter.observe(CheckResult("broken", "d", "error", None, None, 4000.0, "no such column"))
    exporter.observe(CheckResult("fine", "d", "ok", 0, 0, 250.0))
    assert target_samples(exporter)[("dupewatch_target_up", "d")] == 0
    assert target_samples(exporter)[("dupewatch_target_duration_seconds", "d")] == 4.25

    exporter.reload(make_config([("fine", "d")]))

    assert target_samples(exporter)[("dupewatch_target_up", "d")] == 1
    assert target_samples(exporter)[("dupewatch_target_duration_seconds", "d")] == 0.25


def test_a_check_that_comes_back_reads_its_past_fixes_as_the_past_not_as_rows_that_appeared(
        exporters: list[MetricsExporter]) -> None:
    """A fleet target that disappears and is discovered again (or a check a reload removes and restores) starts
    its series afresh: the first reading of its fix records is the past, as at start-up, so that the fixes of
    long ago are not taken for rows deleted since its last run (which made rows seem to appear)."""
    exporter = new_exporter(exporters, make_config([("c", "d")]))
    exporter.fix_totals("d", {"c": 50})  # the past
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 10, 1.0))

    exporter.reload(make_config([("other", "d")]))  # the target went
    exporter.reload(make_config([("c", "d")]))  # and came back
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 10, 1.0))  # its first run, then the records are read
    exporter.fix_totals("d", {"c": 50})  # nothing was fixed since
    exporter.observe(CheckResult("c", "d", "duplicates", 10, 10, 1.0))

    assert samples(exporter)[("dupewatch_duplicate_rows_appeared_total", "c")] == 0
    assert samples(exporter)[("dupewatch_fix_deleted_rows_total", "c")] == 50


@pytest.mark.parametrize("openmetrics", [False, True])
def test_the_page_rendered_in_chunks_is_prometheus_clients_own_rendering(openmetrics: bool) -> None:
    """The per-check series, kept as plain values and rendered one chunk of a family at a time, read as
    prometheus-client's own Gauge, Counter and Histogram would write them: names, types, HELP and TYPE once per
    family, every sample, and label values with quotes, backslashes, newlines and other scripts escaped."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from monitor.metrics import DURATION_BUCKETS, RENDER_CHUNK_SERIES, DupewatchMetrics, _encoded

    encoder = generate_openmetrics if openmetrics else generate_latest
    ours = DupewatchMetrics(process=False, static=("team",))
    theirs = CollectorRegistry()
    names = ("check", "database", "target", "team")
    pairs = [(ours.groups, Gauge(ours.groups.name, ours.groups.documentation, names, registry=theirs)),
             (ours.appeared, Counter(ours.appeared.name, ours.appeared.documentation, names, registry=theirs)),
             (ours.duration, Histogram(ours.duration.name, ours.duration.documentation, names, registry=theirs,
                                       buckets=DURATION_BUCKETS))]
    odd = ['a"b', "back\\slash", "new\nline", "ünï€😀", "", "\\n"]
    for i in range(2 * RENDER_CHUNK_SERIES + 7):
        labels = (f"c{odd[i % len(odd)]}", f"db{i}", f"{odd[(i + 3) % len(odd)]}{i}", odd[i % len(odd)])
        for (mine, reference) in pairs:
            if mine is ours.groups:
                mine.labels(*labels).set(i)
                reference.labels(*labels).set(i)  # type: ignore[attr-defined]
            elif mine is ours.appeared:
                mine.labels(*labels).inc(i)
                reference.labels(*labels).inc(i)  # type: ignore[attr-defined]
            else:
                for seconds in (0.003, 0.7, 400.0, i / 10):
                    mine.labels(*labels).observe(seconds)
                    reference.labels(*labels).observe(seconds)  # type: ignore[attr-defined]

    def families(page: bytes) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        name = ""
        for line in page.decode().splitlines():
            if line.startswith("# HELP "):
                name = line.split()[2]
            if line != "# EOF":
                found.setdefault(name, []).append(line)
        return found

    page = _encoded(encoder, ours.registry)
    rendered, expected = families(page), families(encoder(theirs))
    for name, lines in expected.items():
        assert rendered[name] == lines, name  # same lines, in the same order, one HELP and TYPE each
    assert page.decode().count("# EOF") == (1 if openmetrics else 0)


def test_series_that_come_or_go_are_rendered_without_waiting_out_the_renders_share_of_a_core() -> None:
    """A page that is slow to render (a fleet's) is re-rendered at most a tenth of a core's time; a change of the
    series themselves (targets discovered or gone, a reload) is rendered at once all the same."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    from monitor.metrics import RENDER_MAX_SHARE, PrerenderedApp

    render_seconds = 0.5  # the collector's cost: the next render waits 0.5 / RENDER_MAX_SHARE = 5 s

    class Targets:
        def __init__(self) -> None:
            self.names = ["a"]
            self.rendering = threading.Event()

        def collect(self) -> Iterator[GaugeMetricFamily]:
            names = list(self.names)
            self.rendering.set()
            time.sleep(render_seconds)  # stands for a large page's encoding, not a wait of the test
            family = GaugeMetricFamily("dupewatch_target_up", "up", labels=["target"])
            for name in names:
                family.add_metric([name], 1.0)
            yield family

    targets, registry = Targets(), CollectorRegistry()
    registry.register(targets)
    app = PrerenderedApp(registry)

    def page() -> bytes:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "HTTP_ACCEPT": "", "QUERY_STRING": ""}
        return b"".join(app(environ, lambda *_args: None))

    app.start()
    try:
        assert b'target="a"' in page()  # the first scrape renders this format
        targets.rendering.clear()
        app.changed()  # a figure changed: the loop renders, then keeps to its share of a core
        assert targets.rendering.wait(5), "the loop never rendered"
        targets.names = ["a", "new"]  # after that render read its series: only the next one shows it
        app.changed(reshaped=True)
        changed = time.monotonic()
        while b'target="new"' not in page():
            assert time.monotonic() - changed < render_seconds / RENDER_MAX_SHARE - 1.0, "waited out the share"
            time.sleep(0.05)  # polling interval of a condition wait
    finally:
        app.stop()


def test_new_groups_of_runs_before_a_live_readers_first_count_are_held_then_dropped_or_counted(
        exporters: list[MetricsExporter]) -> None:
    """At a daemon's start the run of a live database's check may find a group formed while it was down before the
    stream's first count does: counted once, by the stream for a check it follows, by the run for one it leaves
    to its poll."""
    from monitor.live import Figures

    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "followed", "database": "d", "table": "t", "key": ["k"], "incremental": "id"},
        {"name": "polled", "database": "d", "table": "t", "key": ["j"], "incremental": "id"}]})
    exporter = new_exporter(exporters, config)
    exporter.live_starting({"d": ["followed", "polled"]})
    for name in ("followed", "polled"):
        exporter.observe(CheckResult(name, "d", "duplicates", 3, 3, 9.0, mode="incremental", rows_scanned=4,
                                     new_groups=1))
    values = samples(exporter)
    assert (values[(NEW_TOTAL, "followed")], values[(NEW_TOTAL, "polled")]) == (0, 0)  # held
    exporter.live_figures("followed", "d", Figures(3, 3, 1, compared=True))  # the stream's first count: the same group
    exporter.live_following("d", True)  # every check counted: "polled" is left to its poll
    values = samples(exporter)
    assert (values[(NEW_TOTAL, "followed")], values[(NEW_TOTAL, "polled")]) == (1, 1)
    exporter.observe(CheckResult("polled", "d", "duplicates", 4, 4, 9.0, mode="incremental", rows_scanned=1,
                                 new_groups=1))
    assert samples(exporter)[(NEW_TOTAL, "polled")] == 2  # settled: runs count at once again


def test_a_streams_first_count_without_saved_groups_leaves_the_held_new_groups_of_runs_counted(
        exporters: list[MetricsExporter]) -> None:
    """The first start with live mode's groups saving (an upgrade; live = true newly set): the stream counts none
    new (its baseline), the run compared with the check's incremental state did: its count stands."""
    from monitor.live import Figures

    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "followed", "database": "d", "table": "t", "key": ["k"], "incremental": "id"}]})
    exporter = new_exporter(exporters, config)
    exporter.live_starting({"d": ["followed"]})
    exporter.observe(CheckResult("followed", "d", "duplicates", 3, 3, 9.0, mode="incremental", rows_scanned=4,
                                 new_groups=1))
    exporter.live_figures("followed", "d", Figures(3, 3, 0, baseline=True))
    exporter.live_following("d", True)
    assert samples(exporter)[(NEW_TOTAL, "followed")] == 1


def test_the_held_new_groups_of_runs_are_counted_when_a_reloads_reader_counts_first(
        exporters: list[MetricsExporter]) -> None:
    """A config reload before the first reader followed: the reload's reader does not compare with the groups saved
    before (its first count counts none new, and is no baseline); the runs' held new groups are all there is."""
    from monitor.live import Figures

    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "followed", "database": "d", "table": "t", "key": ["k"], "incremental": "id"}]})
    exporter = new_exporter(exporters, config)
    exporter.live_starting({"d": ["followed"]})
    exporter.observe(CheckResult("followed", "d", "duplicates", 3, 3, 9.0, mode="incremental", rows_scanned=4,
                                 new_groups=1))
    exporter.reload(config)
    exporter.live_figures("followed", "d", Figures(3, 3, 0))  # the reload's reader: compared with nothing
    exporter.live_following("d", True)
    assert samples(exporter)[(NEW_TOTAL, "followed")] == 1


def test_the_held_new_groups_of_runs_are_counted_when_the_reader_settles_without_following(
        exporters: list[MetricsExporter]) -> None:
    """A reader whose stream does not open (or is stopped first) settles its database (`live_following(False)`):
    what the runs held is counted, and the runs count at once from then on."""
    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "followed", "database": "d", "table": "t", "key": ["k"], "incremental": "id"}]})
    exporter = new_exporter(exporters, config)
    exporter.live_starting({"d": ["followed"]})
    for _ in range(3):
        exporter.observe(CheckResult("followed", "d", "duplicates", 3, 3, 9.0, mode="incremental",
                                     rows_scanned=4, new_groups=1))
    assert samples(exporter)[(NEW_TOTAL, "followed")] == 0  # held
    exporter.live_following("d", False)  # its first attempt failed
    assert samples(exporter)[(NEW_TOTAL, "followed")] == 3
    exporter.observe(CheckResult("followed", "d", "duplicates", 4, 4, 9.0, mode="incremental", rows_scanned=1,
                                 new_groups=1))
    assert samples(exporter)[(NEW_TOTAL, "followed")] == 4


NEW_TOTAL = "dupewatch_new_duplicate_groups_total"


def test_a_check_the_stream_leaves_to_its_poll_counts_its_runs_figures_again(exporters: list[MetricsExporter]) -> None:
    """A check the stream counted, then left to its poll by a full count after a gap (its table made UNLOGGED, an
    UNLOGGED partition added, its key's index dropped): its runs' figures were not taken while the stream was
    followed (the stream's last figures stayed, its new duplicates missed); `live_left` takes them again."""
    from monitor.live import Figures

    config = config_from_dict({"databases": {"d": {"url": "sqlite:///unused.sqlite"}}, "checks": [
        {"name": "followed", "database": "d", "table": "t", "key": ["k"], "incremental": "id"}]})
    exporter = new_exporter(exporters, config)
    exporter.live_starting({"d": ["followed"]})
    exporter.live_figures("followed", "d", Figures(1, 1, 0, baseline=True))
    exporter.live_following("d", True)
    exporter.observe(CheckResult("followed", "d", "duplicates", 1, 1, 9.0, mode="incremental", rows_scanned=4))
    exporter.live_left("followed", "d")
    exporter.observe(CheckResult("followed", "d", "duplicates", 4, 5, 9.0, mode="incremental", rows_scanned=4,
                                 new_groups=3))
    values = samples(exporter)
    assert (values[("dupewatch_duplicate_groups", "followed")], values[(NEW_TOTAL, "followed")]) == (4, 3)
