"""End-to-end benchmark: replays 10 M events through clean -> 10 s tumbling window -> Parquet
with the release `edgeflow` binary, from Parquet and from CSV, and measures an idle trickle.

    scripts/bench                     # builds, generates data once, prints the figures
    python benches/run.py --events 1000000   # a smaller run

Prints, per input format: events/s (wall clock, whole process including start-up) and peak
RSS (the process's max resident set, from wait4). Then the CPU share used while an unbounded
simulator trickles 10 events/s for 20 s.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "edgeflow")

PIPELINE = """
[pipeline]
name = "bench-{fmt}"
workers = {workers}

[sources.events]
type = "file"
path = "{path}"
format = "{fmt}"
schema = {{ device_id = "string", ts = "timestamp_ms", temperature = "float64", humidity = "float64" }}
event_time = "ts"
max_out_of_orderness = "2s"

[operators.clean]
type = "clean"
inputs = ["events"]
drop_null = ["temperature"]
drop_outside = {{ temperature = [-40.0, 125.0], humidity = [0.0, 100.0] }}

[operators.per_10s]
type = "window"
inputs = ["clean"]
kind = "tumbling"
size = "10s"
group_by = ["device_id"]
aggregates = {{ temp_avg = "mean(temperature)", temp_min = "min(temperature)", temp_max = "max(temperature)", n = "count()" }}

[sinks.out]
type = "parquet"
inputs = ["per_10s"]
path = "{out}"
"""

TRICKLE = """
[pipeline]
name = "trickle"

[sources.sensors]
type = "simulator"
devices = 1
rate = "10/s"
seed = 1
schema = {{ device_id = "string", ts = "timestamp_ms", temperature = "float64" }}
event_time = "ts"

[operators.per_10s]
type = "window"
inputs = ["sensors"]
kind = "tumbling"
size = "10s"
group_by = ["device_id"]
aggregates = {{ n = "count()" }}

[sinks.out]
type = "parquet"
inputs = ["per_10s"]
path = "{out}"
"""


def run_measured(args, timeout=None):
    """Runs a command; returns (wall seconds, peak RSS MiB, cpu seconds, exit code)."""
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if timeout is not None:
        time.sleep(timeout)
        process.send_signal(2)  # SIGINT: graceful shutdown
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(stderr, file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime, code


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default=os.path.join(ROOT, "target", "bench-data"))
    parser.add_argument("--skip-trickle", action="store_true")
    args = parser.parse_args()

    marker = os.path.join(args.data, f"events-{args.events}-{args.devices}")
    if not os.path.exists(marker):
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "benches", "gen_data.py"), "--events", str(args.events),
             "--devices", str(args.devices), "--out", args.data],
            check=True,
        )
        open(marker, "w").close()

    print(f"edgeflow end-to-end: {args.events:,} events, {args.devices:,} devices, "
          f"clean -> 10 s tumbling window (count/mean/min/max) -> Parquet, {args.workers} workers")
    for fmt, name in (("parquet", "events.parquet"), ("csv", "events.csv")):
        with tempfile.TemporaryDirectory() as scratch:
            query = os.path.join(scratch, "q.toml")
            with open(query, "w") as f:
                f.write(PIPELINE.format(fmt=fmt, path=os.path.join(args.data, name),
                                        out=os.path.join(scratch, "out"), workers=args.workers))
            wall, rss, cpu, code = run_measured([BINARY, "run", "--no-status", query])
            if code != 0:
                sys.exit(f"{fmt} run failed with exit code {code}")
            print(f"  from {fmt:<8} {args.events / wall / 1e6:6.2f} M events/s   wall {wall:6.2f} s   "
                  f"peak RSS {rss:6.1f} MiB   cpu {cpu:6.2f} s")

    if not args.skip_trickle:
        with tempfile.TemporaryDirectory() as scratch:
            query = os.path.join(scratch, "trickle.toml")
            with open(query, "w") as f:
                f.write(TRICKLE.format(out=os.path.join(scratch, "out")))
            wall, rss, cpu, code = run_measured([BINARY, "run", "--no-status", query], timeout=20)
            print(f"  idle trickle (1 device, 10 events/s, {wall:.0f} s): cpu {cpu:.3f} s = "
                  f"{100 * cpu / wall:.2f} % of one core, peak RSS {rss:.1f} MiB, exit {code}")


if __name__ == "__main__":
    main()
