"""Reads what `edgeflow collect` wrote with DuckDB (Hive partitions gateway=/date=) and
prints one JSON object: rows per (gateway, date, stream), total and distinct rows, rows whose
partition date differs from their event time's UTC date, and leftover temporary files.

    check_collected.py OUT_DIR
"""

import glob
import json
import os
import sys

import duckdb

out = sys.argv[1]
tmp = [p for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if p.endswith(".tmp")]
pattern = os.path.join(out, "gateway=*", "date=*", "*.parquet")
con = duckdb.connect()
con.execute(
    f"""CREATE VIEW collected AS
        SELECT *, regexp_extract(filename, '([^/]+)-[0-9]{{20}}\\.parquet$', 1) AS stream
        FROM read_parquet('{pattern}', hive_partitioning = true, filename = true)"""
)
groups = con.execute(
    """SELECT gateway, CAST(date AS VARCHAR), stream, count(*) FROM collected
       GROUP BY ALL ORDER BY ALL"""
).fetchall()
total, distinct, misplaced = con.execute(
    """SELECT count(*),
              count(DISTINCT (gateway, stream, ts, device, value)),
              count(*) FILTER (WHERE strftime(ts, '%Y-%m-%d') <> CAST(date AS VARCHAR))
       FROM collected"""
).fetchone()
print(
    json.dumps(
        {
            "groups": [list(g) for g in groups],
            "total": total,
            "distinct": distinct,
            "misplaced": misplaced,
            "tmp_files": len(tmp),
        }
    )
)
