"""Cost of issue 5's clean step (dedup, a range drop and a unit conversion) over 10 M events,
against the end-to-end time of the skeleton's benchmark (`issue2`), with the release binary.

    cargo build --release && .venv/bin/python benches/clean_bench.py
    .venv/bin/python benches/clean_bench.py --workers 1,2 --repeat 5

Runs, on the Parquet data of `benches/run.py` (10 M events, 1,000 devices, generated once by
`benches/gen_data.py`):

* `read`: source -> a filter that drops every row;
* `read+clean5`: source -> the issue 5 clean step -> that filter;
* `issue2`: the skeleton's whole pipeline (clean -> 10 s tumbling window -> Parquet).

The clean step's cost is `read+clean5 - read` (medians of wall time, and of CPU time, which
another engineer's compilation disturbs less); the target is a third of `issue2`'s wall time.
Prints the load average before and after, since the machine may be shared.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (benches/run.py: data generation, measured runs)

CLEAN5 = """
[operators.clean]
type = "clean"
inputs = ["events"]
key = ["device_id"]
convert = { temperature = { from = "degC", to = "degF" } }
drop_outside = { temperature = [-40.0, 257.0] }
dedup = { on = ["device_id", "ts"], horizon = "10s" }
"""


def pipeline(stage, path, workers, out):
    text = bench.SOURCE.format(name=stage, fmt="parquet", path=path, workers=workers)
    if stage == "read+clean5":
        return text + CLEAN5 + bench.DROP_ALL.format(input="clean", out=out)
    return bench.pipeline(stage, "parquet", path, workers, out, bench.BASIC)


def measure(stage, path, workers, events, repeat):
    """Median wall and median CPU seconds of `repeat` runs, and every wall time."""
    walls, cpus = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            query = os.path.join(scratch, "q.toml")
            with open(query, "w") as f:
                f.write(pipeline(stage, path, workers, os.path.join(scratch, "out")))
            wall, _, cpu, code, stderr = bench.run_measured([bench.BINARY, "run", "--no-status", query])
        if code != 0:
            sys.exit(f"{stage} failed with exit code {code}")
        _, read = bench.summary_line(stderr)
        if read != events:
            sys.exit(f"{stage}: the summary says {read} rows read, not {events}:\n{stderr}")
        walls.append(wall)
        cpus.append(cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2], walls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default=os.path.join(bench.ROOT, "target", "bench-data"))
    args = parser.parse_args()

    data = os.path.join(args.data, f"{args.events}-{args.devices}")
    if not os.path.exists(os.path.join(data, "complete")):
        sys.exit(f"no data in {data}: run benches/run.py (or scripts/bench) once to generate it")
    path = os.path.join(data, "events.parquet")
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    print(f"{args.events:,} events from Parquet, median of {args.repeat} run(s)")
    for w in [int(x) for x in args.workers.split(",")]:
        got = {}
        for stage in ("read", "read+clean5", "issue2"):
            wall, cpu, walls = measure(stage, path, w, args.events, args.repeat)
            got[stage] = (wall, cpu)
            print(f"  {w} worker(s) {stage:<12} wall {wall:6.2f} s   cpu {cpu:6.2f} s   "
                  f"(walls {', '.join(f'{x:.2f}' for x in walls)})", flush=True)
        clean_wall = got["read+clean5"][0] - got["read"][0]
        clean_cpu = got["read+clean5"][1] - got["read"][1]
        target = got["issue2"][0] / 3
        print(f"  {w} worker(s) clean step: wall {clean_wall:.2f} s "
              f"({args.events / max(clean_wall, 1e-9) / 1e6:.1f} M rows/s), cpu {clean_cpu:.2f} s; "
              f"target (issue2 wall / 3) {target:.2f} s: {'met' if clean_wall < target else 'missed'}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
