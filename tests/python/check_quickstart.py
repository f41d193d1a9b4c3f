"""Checks the quickstart's Parquet output against a recomputation from the raw readings.

    check_quickstart.py RAW_DIR WINDOWS_DIR

RAW_DIR holds every reading the seeded simulator produced (a raw Parquet sink); WINDOWS_DIR
holds what edgeflow wrote after clean -> 10 s tumbling window. The script applies the same
cleaning rules and window arithmetic with pyarrow, independently of edgeflow's code, and
compares: the set of (window, device) keys, counts exactly, mean and max to 1e-9 relative.
It also checks the file format promises: schema, UTC timestamps, zstd, hive date partitions,
the pipeline name in the metadata, and that DuckDB reads the files with a glob.
"""

import glob
import math
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

WINDOW_MS = 10_000


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def read_dir(path):
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


def main():
    raw_dir, windows_dir = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(windows_dir, "**", "*.parquet"), recursive=True))
    if not files:
        fail(f"no Parquet files under {windows_dir}")
    leftovers = [p for p in glob.glob(os.path.join(windows_dir, "**", "*"), recursive=True) if p.endswith(".tmp")]
    if leftovers:
        fail(f"temporary files left behind: {leftovers}")
    for path in files:
        if "date=" not in path:
            fail(f"{path} is not in a date=YYYY-MM-DD partition")
        meta = pq.read_metadata(path)
        kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
        if kv.get("edgeflow.pipeline") != "quickstart":
            fail(f"{path}: metadata edgeflow.pipeline = {kv.get('edgeflow.pipeline')!r}")
        if meta.row_group(0).column(0).compression != "ZSTD":
            fail(f"{path}: compression {meta.row_group(0).column(0).compression}")

    windows = pq.ParquetDataset(files, partitioning=None).read()
    expected_schema = {
        "window_start": pa.timestamp("ms", tz="UTC"),
        "window_end": pa.timestamp("ms", tz="UTC"),
        "device_id": pa.string(),
        "temp_avg": pa.float64(),
        "temp_max": pa.float64(),
        "n": pa.int64(),
    }
    actual = {f.name: f.type for f in windows.schema}
    for name, kind in expected_schema.items():
        if actual.get(name) != kind:
            fail(f"column {name}: expected {kind}, found {actual.get(name)}")
    if list(actual)[: len(expected_schema)] != list(expected_schema):
        fail(f"column order {list(actual)}")

    raw = read_dir(raw_dir)
    temperature = raw["temperature"]
    humidity = raw["humidity"]
    keep = pc.and_(pc.is_valid(temperature), pc.invert(pc.is_nan(pc.fill_null(temperature, 0.0))))
    in_range_t = pc.and_(pc.greater_equal(temperature, -40.0), pc.less_equal(temperature, 125.0))
    in_range_h = pc.and_(pc.greater_equal(humidity, 0.0), pc.less_equal(humidity, 100.0))
    keep = pc.and_(keep, pc.fill_null(in_range_t, True))
    keep = pc.and_(keep, pc.fill_null(in_range_h, True))
    clean = raw.filter(keep)
    ts = pc.cast(clean["ts"], pa.int64())
    start = pc.subtract(ts, pc.modulo(ts, WINDOW_MS)) if hasattr(pc, "modulo") else None
    if start is None:
        start = pa.array([t - t % WINDOW_MS for t in ts.to_pylist()], pa.int64())
    clean = clean.append_column("ws", start)
    expected = clean.group_by(["ws", "device_id"]).aggregate(
        [("temperature", "mean"), ("temperature", "max"), ("temperature", "count")]
    )
    want = {
        (row["ws"], row["device_id"]): (row["temperature_mean"], row["temperature_max"], row["temperature_count"])
        for row in expected.to_pylist()
    }
    got = {}
    for row in windows.to_pylist():
        key = (int(row["window_start"].timestamp() * 1000), row["device_id"])
        end = int(row["window_end"].timestamp() * 1000)
        if end - key[0] != WINDOW_MS:
            fail(f"window {key} has end {end}")
        if key in got:
            fail(f"duplicate window {key}")
        got[key] = (row["temp_avg"], row["temp_max"], row["n"])
    if set(got) != set(want):
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        fail(f"window keys differ: {len(want)} expected, {len(got)} written; missing {missing}; extra {extra}")
    for key, (mean, mx, n) in want.items():
        g_mean, g_max, g_n = got[key]
        if g_n != n:
            fail(f"{key}: count {g_n} != {n}")
        for name, a, b in (("mean", g_mean, mean), ("max", g_max, mx)):
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                fail(f"{key}: {name} {a} != {b}")

    rows_duckdb = duckdb.connect().execute(f"select count(*) from '{windows_dir}/**/*.parquet'").fetchone()[0]
    if rows_duckdb != len(got):
        fail(f"DuckDB reads {rows_duckdb} rows, pyarrow {len(got)}")
    dropped = raw.num_rows - clean.num_rows
    print(f"windows match: {len(got)} windows from {raw.num_rows} readings ({dropped} dropped by clean), "
          f"{len(files)} files")


if __name__ == "__main__":
    main()
