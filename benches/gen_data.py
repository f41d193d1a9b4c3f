"""Generates the benchmark input: N sensor events from D devices as Parquet and CSV.

    python benches/gen_data.py --events 10000000 --devices 1000 --out target/bench-data/10000000-1000

(`benches/run.py` calls it with one folder per size, so that a small run never overwrites the
large files.)

Rows are in event-time order with up to 1 s of jitter (out of order), 0.5 % missing
temperatures and 0.1 % spikes, so the clean step has work to do. Deterministic (seeded).
"""

import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--out", help="default: target/bench-data/EVENTS-DEVICES")
    args = parser.parse_args()
    if args.out is None:
        args.out = os.path.join("target", "bench-data", f"{args.events}-{args.devices}")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(42)
    n, d = args.events, args.devices
    start = 1_717_200_000_000  # 2024-06-01T00:00:00Z
    # Each device reports every second; rows interleave devices in time order.
    ts = start + (np.arange(n, dtype=np.int64) // d) * 1000 - rng.integers(0, 1000, n)
    device = np.char.add("dev-", np.char.zfill((np.arange(n) % d).astype(str), 4))
    temperature = 20 + 5 * np.sin(np.arange(n) / 5000.0) + rng.normal(0, 0.5, n)
    spikes = rng.random(n) < 0.001
    temperature[spikes] += 300
    humidity = np.clip(50 + rng.normal(0, 10, n), 0, 100)
    missing = rng.random(n) < 0.005
    table = pa.table(
        {
            "device_id": pa.array(device, pa.string()),
            "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
            "temperature": pa.array(np.where(missing, np.nan, temperature), mask=missing),
            "humidity": pa.array(humidity),
        }
    )
    pq.write_table(table, os.path.join(args.out, "events.parquet"), compression="zstd", row_group_size=1 << 20)
    csv_table = table.set_column(1, "ts", pa.array(ts, pa.int64()))
    pacsv.write_csv(csv_table, os.path.join(args.out, "events.csv"))
    print(f"wrote {n:,} events from {d:,} devices to {args.out}/events.parquet and events.csv")


if __name__ == "__main__":
    main()
