"""A dirty million-event CSV file, and DuckDB's windows over it compared with edgeflow's.

    check_windows.py generate DIR   writes DIR/events.csv, DIR/truth.parquet, DIR/expected.json
    check_windows.py check DIR      compares DIR/out/* (edgeflow's Parquet) with DuckDB

`generate` writes 1,000,000 data lines (seeded, so every run is the same file) from 200
devices reporting about once a second, with what a gateway's history file really holds:

* disorder: every timestamp is up to 4 s earlier than its nominal time (within the query's
  `max_out_of_orderness` of 5 s), and 0.3 % of the events are moved 6 to 120 s further down
  the file (most of those are late beyond the watermark);
* exact duplicate lines (1 %), a few lines after the original;
* null (empty) readings (1 %), `NaN` readings (0.5 %), a device whose sensor is broken (every
  reading null or NaN), a few rows without a device id;
* timestamps as epoch milliseconds, RFC 3339 in UTC and RFC 3339 with an offset; quoted and
  unquoted device ids;
* 1,000 malformed lines of six kinds: too few fields, too many fields, invalid UTF-8 (all
  `malformed_csv`), and a temperature, timestamp or sequence number that does not parse
  (`wrong_type`).

`truth.parquet` holds every well-formed line as the generator meant it (`pos` is its index
among them, in file order), and `expected.json` the number of lines and of malformed lines by
reason. Neither is derived from edgeflow.

`check` reads what edgeflow wrote (`out/tumbling`, `out/hopping`, `out/tumbling_late`,
`out/hopping_late`, and `metrics.json`, the counters from the run's summary) and checks:

* the late rows of each window are rows of the input (a multiset: `EXCEPT ALL` removes exactly
  as many rows as were late), their number is the `late` counter, and each one is plausibly
  late: its window had ended by the newest event time of the rows before it minus 5 s. Every
  row whose window had ended by the newest time 8,192 rows earlier (one source batch) must be
  late;
* DuckDB computes both windows from scratch over the input minus the late rows: 10 s tumbling
  windows `[s, s + 10 s)` with `s` a multiple of 10 s, and 60 s hopping windows: a row belongs
  to every `[s, s + 60 s)` with `s` a multiple of 10 s that contains it; NaN readings count as
  missing. Keys (window start and end, device) must match exactly, counts exactly, mean and
  sum within 1e-9 relative, min and max exactly;
* every line is accounted for: rows in the tumbling windows + late rows + malformed lines =
  lines, and rows in the hopping windows = 6 × (lines - malformed - late).
"""

import json
import os
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

LINES = 1_000_000
DEVICES = 200
SEED = 20261125
START_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
OUT_OF_ORDERNESS_MS = 5_000
BATCH_ROWS = 8_192  # the file source's largest batch (connectors/src/file/mod.rs)
TUMBLING_MS = 10_000
HOPPING_MS, SLIDE_MS = 60_000, 10_000
MALFORMED = 1_000
DUPLICATES = 10_000
REL_TOL = 1e-9


def one(db, query):
    """The single value `query` returns. (It fetches every row: an unfinished result would
    block the connection.)"""
    return db.execute(query).fetchall()[0][0]


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def rfc3339(ms, offset_minutes):
    """`ms` as RFC 3339 text with millisecond precision, in the given UTC offset."""
    local = np.datetime64(ms + offset_minutes * 60_000, "ms")
    text = str(local)  # 2024-06-01T00:00:03.123
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def generate(out):
    rng = np.random.default_rng(SEED)
    events = LINES - MALFORMED - DUPLICATES

    # Events in nominal time order: one reading per device per second, at a random
    # millisecond of that second, then jittered up to 4 s earlier.
    index = np.arange(events)
    device = rng.permutation(np.tile(np.arange(DEVICES), events // DEVICES + 1))[:events]
    nominal = START_MS + (index // DEVICES) * 1000 + rng.integers(0, 1000, events)
    ts = nominal - rng.integers(0, 4000, events)
    level = rng.uniform(-10.0, 40.0, DEVICES)
    temperature = level[device] + 5 * np.sin(index / 20_000.0) + rng.normal(0.0, 0.7, events)
    null_temp = rng.random(events) < 0.01
    nan_temp = ~null_temp & (rng.random(events) < 0.005)
    broken = device == DEVICES - 1
    null_temp |= broken & (rng.random(events) < 0.5)
    nan_temp |= broken & ~null_temp
    null_device = rng.random(events) < 0.0005

    # File order: nominal order, except 0.3 % moved 6 to 120 s further on (1,200 to 24,000
    # lines), and the duplicates a few lines after their original.
    order = index.astype(np.float64)
    moved = rng.random(events) < 0.003
    order[moved] += rng.integers(1_200, 24_000, moved.sum())
    originals = rng.choice(events, DUPLICATES, replace=False)
    seq = np.concatenate([index, originals])
    order = np.concatenate([order, order[originals] + rng.integers(1, 50, DUPLICATES) + 0.5])
    placed = seq[np.argsort(order, kind="stable")]

    # Text forms: epoch ms mostly, RFC 3339 sometimes; quoted device ids sometimes.
    form = rng.random(events)
    offsets = rng.choice([-300, 60, 120, 330], events)
    quoted = rng.random(events) < 0.01

    # Python lists: indexing them is much faster than indexing numpy arrays one by one.
    device_l, ts_l, temp_l, form_l = device.tolist(), ts.tolist(), temperature.tolist(), form.tolist()
    null_device_l, quoted_l, null_l, nan_l = (
        null_device.tolist(), quoted.tolist(), null_temp.tolist(), nan_temp.tolist())
    offsets_l = offsets.tolist()

    def line(i):
        dev = "" if null_device_l[i] else f"dev-{device_l[i]:03d}"
        if quoted_l[i] and dev:
            dev = f'"{dev}"'
        if i == 0 or form_l[i] >= 0.01:
            when = str(ts_l[i])
        elif form_l[i] < 0.005:
            when = rfc3339(ts_l[i], 0)
        else:
            when = rfc3339(ts_l[i], offsets_l[i])
        temp = "" if null_l[i] else "NaN" if nan_l[i] else repr(temp_l[i])
        return f"{dev},{when},{temp},{i}".encode()

    good = [line(i) for i in placed.tolist()]

    # Malformed lines at random places (never the first data line, which decides how the
    # reader parses timestamps), six kinds in turn.
    kinds = [
        ("malformed_csv", lambda i: f"dev-{device[i]:03d},{ts[i]}".encode()),
        ("malformed_csv", lambda i: f"dev-{device[i]:03d},{ts[i]},21.5,{i},extra".encode()),
        ("malformed_csv", lambda i: b"dev-\xff\xfe," + f"{ts[i]},21.5,{i}".encode()),
        ("wrong_type", lambda i: f"dev-{device[i]:03d},{ts[i]},hot,{i}".encode()),
        ("wrong_type", lambda i: f"dev-{device[i]:03d},yesterday,21.5,{i}".encode()),
        ("wrong_type", lambda i: f"dev-{device[i]:03d},{ts[i]},21.5,x{i}".encode()),
    ]
    at = np.sort(rng.choice(np.arange(1, len(good)), MALFORMED, replace=False))
    reasons = {"malformed_csv": 0, "wrong_type": 0}
    lines = []
    previous = 0
    for k, position in enumerate(at):
        lines.extend(good[previous:position])
        reason, make = kinds[k % len(kinds)]
        lines.append(make(int(rng.integers(0, events))))
        reasons[reason] += 1
        previous = position
    lines.extend(good[previous:])
    assert len(lines) == LINES
    with open(os.path.join(out, "events.csv"), "wb") as f:
        f.write(b"device_id,ts,temperature,seq\n")
        f.write(b"\n".join(lines))
        f.write(b"\n")

    temps = pa.array(np.where(nan_temp, np.nan, temperature)[placed], mask=null_temp[placed])
    devices = pa.array([f"dev-{d:03d}" for d in device[placed]], mask=null_device[placed])
    truth = pa.table(
        {
            "pos": pa.array(np.arange(len(placed), dtype=np.int64)),
            "device_id": devices,
            "ts": pa.array(ts[placed], pa.int64()),
            "temperature": temps,
            "seq": pa.array(placed, pa.int64()),
        }
    )
    pq.write_table(truth, os.path.join(out, "truth.parquet"))
    expected = {"lines": LINES, "valid": len(placed), **reasons}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(f"wrote {LINES:,} lines ({len(placed):,} well-formed, {events:,} distinct events, "
          f"{moved.sum():,} moved down the file) to {out}/events.csv")


def read_dir(path):
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    if not dataset.files:
        fail(f"no Parquet files under {path}")
    return dataset.to_table()


def check_late(db, name, late, truth, expected_count):
    """The late rows of one window: input rows, as many as counted, each plausibly late."""
    if late.num_rows != expected_count:
        fail(f"{name}: {late.num_rows} rows in the late output, the late counter says {expected_count}")
    columns = ["device_id", "ts", "temperature", "seq"]
    if late.schema.names[: len(columns)] != columns:
        fail(f"{name}: late output columns {late.schema.names}")
    db.register(f"{name}_late_raw", late)
    db.execute(
        f"create table {name}_late as select device_id, epoch_ms(ts) as ts, temperature, seq "
        f"from {name}_late_raw"
    )
    db.execute(
        f"create table {name}_input as select device_id, ts, temperature, seq from truth "
        f"except all select * from {name}_late"
    )
    kept = one(db, f"select count(*) from {name}_input")
    if kept != truth.num_rows - late.num_rows:
        fail(f"{name}: removing the {late.num_rows} late rows from {truth.num_rows} input rows "
             f"leaves {kept}: some late rows are not input rows")

    # Which rows could be late. Row p arrives in a batch stamped with the watermark before
    # it: at most the newest time of rows 0..p-1 minus the out-of-orderness, and at least the
    # newest time of rows 0..p-8192 (those were in earlier batches) minus it. Its earliest
    # window (tumbling: its own; hopping: the one starting 50 s before its latest) ends at
    # the same time, the next multiple of 10 s after it.
    ts = truth["ts"].to_numpy()
    seq = truth["seq"].to_numpy()
    newest = np.maximum.accumulate(ts)
    before = np.concatenate([[np.iinfo(np.int64).min // 2], newest[:-1]])
    batch_before = np.concatenate(
        [np.full(BATCH_ROWS, np.iinfo(np.int64).min // 2), newest[:-BATCH_ROWS]]
    )[: len(ts)]
    end = ts - ts % TUMBLING_MS + TUMBLING_MS
    possible = end <= before - OUT_OF_ORDERNESS_MS
    certain = end <= batch_before - OUT_OF_ORDERNESS_MS
    size = int(seq.max()) + 1
    may = np.bincount(seq[possible], minlength=size)
    must = np.bincount(seq[certain], minlength=size)
    got = np.bincount(late["seq"].to_numpy(), minlength=size)[:size]
    if late.num_rows and int(late["seq"].to_numpy().max()) >= size:
        fail(f"{name}: a late row has a sequence number not in the input")
    too_many = np.nonzero(got > may)[0]
    if len(too_many):
        fail(f"{name}: {len(too_many)} events are late more often than possible, e.g. seq "
             f"{too_many[:5].tolist()} (late {got[too_many[:5]].tolist()}, "
             f"possible {may[too_many[:5]].tolist()})")
    missed = np.nonzero(got < must)[0]
    if len(missed):
        fail(f"{name}: {len(missed)} events whose windows had surely ended are not late, e.g. "
             f"seq {missed[:5].tolist()}")
    return f"{late.num_rows:,} late ({int(certain.sum()):,} surely, {int(possible.sum()):,} possibly)"


def window_sql(name, size_ms, slide_ms):
    """DuckDB's windows over `<name>_input`: every window [s, s + size) containing the row,
    s a multiple of slide."""
    copies = size_ms // slide_ms
    return f"""
        create table {name}_expected as
        with rows as (
            select device_id, ts, case when isnan(temperature) then null else temperature end as t
            from {name}_input
        ),
        placed as (
            select ts - ts % {slide_ms} - k * {slide_ms} as ws, device_id, t
            from rows cross join range({copies}) as r(k)
        )
        select ws, ws + {size_ms} as we, device_id, count(*) as n, count(t) as n_temp,
               avg(t) as temp_avg, min(t) as temp_min, max(t) as temp_max, sum(t) as temp_sum
        from placed group by ws, device_id
    """


def compare(db, name, table, size_ms):
    expected_schema = [
        ("window_start", pa.timestamp("ms", tz="UTC")),
        ("window_end", pa.timestamp("ms", tz="UTC")),
        ("device_id", pa.string()),
        ("n", pa.int64()),
        ("n_temp", pa.int64()),
        ("temp_avg", pa.float64()),
        ("temp_min", pa.float64()),
        ("temp_max", pa.float64()),
        ("temp_sum", pa.float64()),
    ]
    actual = [(f.name, f.type) for f in table.schema][: len(expected_schema)]
    if actual != expected_schema:
        fail(f"{name}: columns {actual}, expected {expected_schema}")
    db.register(f"{name}_raw", table)
    db.execute(
        f"create table {name}_got as select epoch_ms(window_start) as ws, epoch_ms(window_end) as we, "
        f"device_id, n, n_temp, temp_avg, temp_min, temp_max, temp_sum from {name}_raw"
    )
    dup = db.execute(
        f"select ws, device_id, count(*) from {name}_got group by all having count(*) > 1 limit 5"
    ).fetchall()
    if dup:
        fail(f"{name}: windows written more than once: {dup}")
    bad_end = one(db, f"select count(*) from {name}_got where we - ws != {size_ms}")
    if bad_end:
        fail(f"{name}: {bad_end} windows are not {size_ms} ms long")
    key = "g.ws = e.ws and g.device_id is not distinct from e.device_id"
    missing = db.execute(
        f"select e.ws, e.device_id from {name}_expected e anti join {name}_got g on {key} "
        f"order by all limit 5"
    ).fetchall()
    extra = db.execute(
        f"select g.ws, g.device_id from {name}_got g anti join {name}_expected e on {key} "
        f"order by all limit 5"
    ).fetchall()
    n_got = one(db, f"select count(*) from {name}_got")
    n_expected = one(db, f"select count(*) from {name}_expected")
    if missing or extra or n_got != n_expected:
        fail(f"{name}: window keys differ: DuckDB {n_expected}, edgeflow {n_got}; "
             f"missing {missing}; extra {extra}")

    def close(column):
        return (f"not ((g.{column} is null and e.{column} is null) or "
                f"abs(g.{column} - e.{column}) <= {REL_TOL} * greatest(abs(g.{column}), abs(e.{column})) + 1e-12)")

    def equal(column):
        return f"g.{column} is distinct from e.{column}"

    checks = [equal("n"), equal("n_temp"), close("temp_avg"), close("temp_sum"),
              equal("temp_min"), equal("temp_max")]
    for condition in checks:
        wrong = db.execute(
            f"select g.ws, g.device_id, g.* exclude (ws, device_id), e.* exclude (ws, device_id) "
            f"from {name}_got g join {name}_expected e on {key} where {condition} order by all limit 3"
        ).fetchall()
        if wrong:
            fail(f"{name}: {condition}: (edgeflow | DuckDB) {wrong}")
    null_means = one(db, f"select count(*) from {name}_got where temp_avg is null")
    total = one(db, f"select sum(n) from {name}_got")
    return n_got, int(total), null_means


def check(out):
    with open(os.path.join(out, "expected.json")) as f:
        expected = json.load(f)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    truth = pq.read_table(os.path.join(out, "truth.parquet"))
    malformed = expected["malformed_csv"] + expected["wrong_type"]
    if truth.num_rows != expected["lines"] - malformed:
        fail(f"truth has {truth.num_rows} rows for {expected['lines']} lines and {malformed} malformed")

    db = duckdb.connect()
    db.register("truth", truth)
    report = []
    for name, size, slide in (("tumbling", TUMBLING_MS, TUMBLING_MS), ("hopping", HOPPING_MS, SLIDE_MS)):
        late = read_dir(os.path.join(out, "out", f"{name}_late")) if metrics[name]["late"] else None
        if late is None:
            late = truth.slice(0, 0).drop_columns(["pos"])
            late = late.set_column(1, "ts", late["ts"].cast(pa.timestamp("ms", tz="UTC")))
        late_report = check_late(db, name, late, truth, metrics[name]["late"])
        db.execute(window_sql(name, size, slide))
        windows, rows, null_means = compare(db, name, read_dir(os.path.join(out, "out", name)), size)
        copies = size // slide
        on_time = expected["lines"] - malformed - late.num_rows
        if rows != copies * on_time:
            fail(f"{name}: the windows count {rows} rows; {expected['lines']} lines - {malformed} "
                 f"malformed - {late.num_rows} late = {on_time}, in {copies} windows each")
        report.append(f"{name}: {windows:,} windows ({null_means} with no reading) over "
                      f"{on_time:,} rows, {late_report}")
    print("windows match DuckDB")
    for line in report:
        print(f"  {line}")
    print(f"  {expected['lines']:,} lines = {truth.num_rows:,} well-formed + "
          f"{expected['malformed_csv']} malformed_csv + {expected['wrong_type']} wrong_type")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("generate", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "generate":
        generate(sys.argv[2])
    else:
        check(sys.argv[2])


if __name__ == "__main__":
    main()
