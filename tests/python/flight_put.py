"""A pyarrow.flight peer for `edgeflow collect`, speaking the edgeflow upstream protocol
(connectors/src/flight/protocol.rs) over mutual TLS. Prints one JSON line per command.

    flight_put.py PORT --ca CA [--cert CERT --key KEY] [--timeout SECS] COMMAND ...

Commands:
    put STREAM SEGMENT ROWS START_MS [STEP_MS]   one DoPut: rows with ts = START_MS + i*STEP_MS,
                                                 device = "d<i%3>", value = i; prints the ack
    put-raw PATH_PARTS...                        one DoPut with this descriptor path (3 rows)
    list                                         ListFlights: [{gateway, stream, rows, ...}]
    get TICKET                                   DoGet: {"rows": n, "values": [...]}

A failed call prints {"error": "<message>"} and exits with status 3.
"""

import argparse
import json
import sys

import pyarrow as pa
import pyarrow.flight as flight

EVENT_TIME_KEY = b"edgeflow.event_time"


def client(args):
    with open(args.ca, "rb") as f:
        root = f.read()
    kwargs = {"tls_root_certs": root}
    if args.cert:
        with open(args.cert, "rb") as f:
            kwargs["cert_chain"] = f.read()
        with open(args.key, "rb") as f:
            kwargs["private_key"] = f.read()
    c = flight.FlightClient(f"grpc+tls://127.0.0.1:{args.port}", **kwargs)
    c.wait_for_available(timeout=args.timeout)
    return c


def table(rows, start_ms, step_ms):
    schema = pa.schema(
        [
            pa.field("ts", pa.timestamp("ms"), nullable=False),
            pa.field("device", pa.string()),
            pa.field("value", pa.float64()),
        ],
        metadata={EVENT_TIME_KEY: b"ts"},
    )
    return pa.table(
        {
            "ts": pa.array([start_ms + i * step_ms for i in range(rows)], pa.timestamp("ms")),
            "device": [f"d{i % 3}" for i in range(rows)],
            "value": [float(i) for i in range(rows)],
        },
        schema=schema,
    )


def put(c, path, data):
    descriptor = flight.FlightDescriptor.for_path(*path)
    writer, reader = c.do_put(descriptor, data.schema)
    # Two batches, to exercise a multi-message segment.
    half = data.num_rows // 2
    for part in (data.slice(0, half), data.slice(half)):
        if part.num_rows:
            writer.write_table(part)
    writer.done_writing()
    buf = reader.read()
    writer.close()
    if buf is None:
        raise RuntimeError("no PutResult (ack) received")
    return json.loads(buf.to_pybytes())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a connection")
    parser.add_argument("command")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    try:
        c = client(args)
        if args.command == "put":
            stream, segment, rows, start = args.rest[:4]
            step = int(args.rest[4]) if len(args.rest) > 4 else 1000
            data = table(int(rows), int(start), step)
            out = put(c, ["edgeflow", stream, f"{int(segment):020d}"], data)
        elif args.command == "put-raw":
            out = put(c, args.rest, table(3, 1_764_115_200_000, 1000))
        elif args.command == "list":
            out = []
            for info in c.list_flights():
                meta = json.loads(info.app_metadata) if info.app_metadata else {}
                meta["total_records"] = info.total_records
                meta["ticket"] = info.endpoints[0].ticket.ticket.decode()
                meta["schema"] = [f.name for f in info.schema] if info.schema else []
                out.append(meta)
        elif args.command == "get":
            t = c.do_get(flight.Ticket(args.rest[0].encode())).read_all()
            out = {"rows": t.num_rows, "values": sorted(t.column("value").to_pylist())}
        else:
            sys.exit(f"unknown command {args.command}")
    except Exception as e:  # noqa: BLE001 - every failure is reported to the Rust test
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
