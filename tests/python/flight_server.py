"""A pyarrow.flight collector with mutual TLS, for tests/flight_pyarrow.rs.

Usage: flight_server.py CERT KEY CLIENT_CA OUT_DIR

Listens on 127.0.0.1 (a free port), prints `PORT <n>` on stdout, then serves until stdin
closes. Every DoPut must carry the descriptor ["edgeflow", stream, 20-digit segment id]. The
segment is "stored" by writing it as an Arrow IPC file `OUT_DIR/<stream>-<id>.arrow` (written
under a temporary name, then renamed), a line is appended to `OUT_DIR/puts.jsonl`, and only then
the SegmentAck JSON is sent in PutResult.app_metadata, as the protocol asks. A resent segment is
acked with duplicate = true and not stored twice.
"""

import json
import os
import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight


class Collector(flight.FlightServerBase):
    def __init__(self, location, out_dir, **kwargs):
        super().__init__(location, **kwargs)
        self.out_dir = out_dir
        self.lock = threading.Lock()

    def do_put(self, context, descriptor, reader, writer):
        path = [p.decode() for p in descriptor.path]
        if len(path) != 3 or path[0] != "edgeflow" or len(path[2]) != 20:
            raise flight.FlightServerError(f"bad descriptor {path}")
        stream, segment_id = path[1], int(path[2])
        table = reader.read_all()
        target = os.path.join(self.out_dir, f"{stream}-{segment_id:020d}.arrow")
        with self.lock:
            duplicate = os.path.exists(target)
            if not duplicate:
                temp = target + ".tmp"
                with pa.OSFile(temp, "wb") as sink:
                    with pa.ipc.new_file(sink, table.schema) as out:
                        out.write_table(table)
                os.replace(temp, target)
            with open(os.path.join(self.out_dir, "puts.jsonl"), "a") as log:
                log.write(
                    json.dumps(
                        {
                            "stream": stream,
                            "segment_id": segment_id,
                            "rows": table.num_rows,
                            "peer": context.peer_identity().decode(errors="replace"),
                        }
                    )
                    + "\n"
                )
        ack = {
            "stream": stream,
            "segment_id": segment_id,
            "rows": table.num_rows,
            "duplicate": duplicate,
        }
        writer.write(pa.py_buffer(json.dumps(ack).encode()))


def main():
    cert, key, client_ca, out_dir = sys.argv[1:5]
    with open(cert, "rb") as f:
        cert_pem = f.read()
    with open(key, "rb") as f:
        key_pem = f.read()
    with open(client_ca, "rb") as f:
        ca_pem = f.read()
    server = Collector(
        "grpc+tls://127.0.0.1:0",
        out_dir,
        tls_certificates=[flight.CertKeyPair(cert=cert_pem, key=key_pem)],
        verify_client=True,
        root_certificates=ca_pem,
    )
    print(f"PORT {server.port}", flush=True)
    threading.Thread(target=server.serve, daemon=True).start()
    # Serve until the test closes our stdin.
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
