"""Benchmark: how long the MariaDB/MySQL binary log decoder process takes to start under the `dupewatch` script.

The decoder (monitor/live/binlog_decoder.py) runs in a process of its own. How it starts decides what it imports:
multiprocessing's `spawn` ran the parent's main script again in it, and the installed `dupewatch` console script
imports the CLI (click, SQLAlchemy, the engine); started as `python -m monitor.live.binlog_decoder` it imports its
own module only. Under pytest the main script differs, so only a run under a script like the console script shows
the cost.

Each round runs a new interpreter on a script that begins as the installed console script does (`from monitor.cli
import main`) and then starts one `BinlogStream`'s decoder against a closed local port: measured is the time from
the start to the decoder's first message reaching the stream (its import, the start of `decode`, a refused
connection: about a millisecond), i.e. the decoder's start. With `--old PATH` (an export of another revision,
`git archive main | tar -x -C PATH`) rounds alternate between that code and this checkout's, in the same window;
the load average is printed before and after, and each figure and the medians.

    .venv/bin/python benchmarks/bench_decoder_start.py [--rounds 7] [--old /tmp/old-dupewatch]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# The console script's first lines (pip writes `from monitor.cli import main` at the top), then the measurement.
TIMED = """
import sys
from monitor.cli import main

if __name__ == "__main__":
    import time
    from sqlalchemy.engine import make_url
    from monitor.live.changes import StreamLost
    from monitor.live.mysql import BinlogStream

    stream = BinlogStream("bench", make_url(f"mysql+pymysql://bench@127.0.0.1:{sys.argv[1]}/bench"), None)
    started = time.perf_counter()
    stream._start((None, None))
    stream.wait(60)
    try:
        stream.read()
        raise SystemExit("the decoder sent nothing")
    except StreamLost:
        print(f"{time.perf_counter() - started:.3f}")
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_round(script: Path, tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tree), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, str(script), str(closed_port())], env=env, capture_output=True, text=True,
                          check=True, timeout=120)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--old", type=Path, help="an export of another revision, measured in alternate rounds")
    args = parser.parse_args()
    trees = {"new": HERE, **({"old": args.old.resolve()} if args.old else {})}
    with tempfile.TemporaryDirectory(prefix="dw_decoder_start_") as directory:
        script = Path(directory) / "dupewatch"
        script.write_text(TIMED)
        print("load before:", os.getloadavg())
        figures: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                figures[name].append(one_round(script, tree))
        print("load after:", os.getloadavg())
    for name, times in figures.items():
        print(f"{name} ({trees[name]}): median {statistics.median(times):.3f} s; "
              + ", ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    main()
