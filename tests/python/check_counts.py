"""Checks that a Parquet output folder has committed, readable files with rows and no
temporary files left, and prints the row count.

    check_counts.py DIR
"""

import glob
import os
import sys

import pyarrow.dataset as ds

path = sys.argv[1]
leftovers = [p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True) if p.endswith(".tmp")]
if leftovers:
    sys.exit(f"FAIL: temporary files left behind: {leftovers}")
files = glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True)
if not files:
    sys.exit(f"FAIL: no Parquet files under {path}")
table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
if table.num_rows == 0:
    sys.exit("FAIL: no rows")
print(f"{table.num_rows} rows in {len(files)} files")
