"""Compares the rows a gateway sent (a CSV file) with what `edgeflow collect` stored, with
DuckDB, and prints one JSON object: rows sent, rows received, distinct received rows, rows
missing (sent, not received) and extra (received more often than sent, or never sent), plus
the smallest received ts and the largest ts among the missing rows (epoch ms).

    check_upstream.py SENT_CSV COLLECTED_DIR
"""

import json
import os
import sys

import duckdb

sent_csv, collected = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(
    f"""CREATE VIEW sent AS
        SELECT device_id, ts, value
        FROM read_csv('{sent_csv}', header = true,
                      columns = {{'device_id': 'VARCHAR', 'ts': 'BIGINT', 'value': 'DOUBLE'}})"""
)
pattern = os.path.join(collected, "gateway=*", "date=*", "*.parquet")
con.execute(
    f"""CREATE VIEW received AS
        SELECT device_id, epoch_ms(ts) AS ts, value
        FROM read_parquet('{pattern}', hive_partitioning = true)"""
)
(sent,) = con.execute("SELECT count(*) FROM sent").fetchone()
received, distinct, min_received = con.execute(
    "SELECT count(*), count(DISTINCT (device_id, ts, value)), min(ts) FROM received"
).fetchone()
missing, max_missing = con.execute(
    "SELECT count(*), max(ts) FROM (SELECT * FROM sent EXCEPT ALL SELECT * FROM received)"
).fetchone()
(extra,) = con.execute(
    "SELECT count(*) FROM (SELECT * FROM received EXCEPT ALL SELECT * FROM sent)"
).fetchone()
print(
    json.dumps(
        {
            "sent": sent,
            "received": received,
            "distinct": distinct,
            "missing": missing,
            "extra": extra,
            "min_received_ts": min_received,
            "max_missing_ts": max_missing,
        }
    )
)
