"""MQTT ingest benchmark (issue 6): 1 M small JSON messages waiting in a mosquitto on
loopback, drained (a) by `mosquitto_sub` alone and (b) by the release `edgeflow` binary through
an `mqtt` source -> 10 s tumbling window per device -> Parquet.

    cargo build --release
    .venv/bin/python benches/mqtt_bench.py                 # QoS 0 and QoS 1, 1 M messages
    .venv/bin/python benches/mqtt_bench.py --messages 200000 --qos 0

Method, per QoS and receiver: a fresh broker (`max_queued_messages 0`,
`queue_qos0_messages true`); the receiver connects once with a persistent session and leaves;
every message is then published (QoS 1, so none is lost on the way in) and queued by the
broker for the receiver, followed by a stop marker; the receiver is started again and the
clock runs from its start until it has the marker. This measures how fast each receiver takes
messages from the broker, not how fast a publisher can produce them. (`mosquitto_pub -l`
cannot be the publisher: at full speed it loses most messages, about 66 % on this machine; the
publisher here is `edgeflow` itself, `file` source -> `mqtt` sink.)

`mosquitto_sub -C N` exits after the last message (its output goes to /dev/null). edgeflow's marker goes
through a `filter` to a `stdout` sink, and its summary gives the rows read; the windows it
wrote to Parquet are summed afterwards (`sum(n)`, with pyarrow when it is installed) and must
account for every row read: the figure is for data that went through the window into Parquet.
"""

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "edgeflow")
DEVICES = 100

QUERY = """
[pipeline]
name = "mqtt-bench"
workers = {workers}

[sources.sensors]
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "mqtt-bench"
clean_session = false
topics = ["bench/#"]
qos = {qos}
inflight = {inflight}
batch_rows = 4096
schema = {{ device_id = "string", ts = "timestamp_ms", temperature = "float64" }}
event_time = "ts"
idle_timeout = "1s"

[operators.per_10s]
type = "window"
inputs = ["sensors"]
size = "10s"
group_by = ["device_id"]
aggregates = {{ n = "count()", temperature_avg = "mean(temperature)", temperature_max = "max(temperature)" }}

[operators.last]
type = "filter"
inputs = ["sensors"]
where = "device_id = 'end'"

[sinks.archive]
type = "parquet"
inputs = ["per_10s"]
path = "{out}"

[sinks.marker]
type = "stdout"
inputs = ["last"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary():
    for candidate in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")


class Broker:
    def __init__(self, folder, inflight):
        self.port = free_port()
        config = os.path.join(folder, f"mosquitto-{self.port}.conf")
        with open(config, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                f"max_inflight_messages {inflight}\nmax_queued_messages 0\n"
                "queue_qos0_messages true\npersistence false\nlog_type error\n"
            )
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline:
                    sys.exit("mosquitto did not start")
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait()


PUBLISHER = """
[pipeline]
name = "mqtt-bench-publisher"

[sources.readings]
type = "file"
path = "{path}"
format = "jsonl"
schema = {{ device_id = "string", ts = "timestamp_ms", temperature = "float64" }}

[sinks.broker]
type = "mqtt"
inputs = ["readings"]
url = "mqtt://127.0.0.1:{port}"
topic = "bench/{{device_id}}"
qos = 1
inflight = 1000
drain_timeout = "10m"
"""


def write_messages(path, count):
    """`count` lines of JSON, one reading each, then the stop marker (device `end`)."""
    start = 1_717_200_000_000
    with open(path, "w") as f:
        for i in range(count):
            f.write(f'{{"device_id":"d{i % DEVICES}","ts":{start + i},"temperature":{20 + (i % 100) / 10}}}\n')
        f.write(f'{{"device_id":"end","ts":{start + count + 60_000},"temperature":0}}\n')


def fill(folder, port, path):
    """Publishes every message (and the marker) into the broker, QoS 1; returns messages/s."""
    query = os.path.join(folder, f"publisher-{port}.toml")
    with open(query, "w") as f:
        f.write(PUBLISHER.format(path=path, port=port))
    started = time.perf_counter()
    done = subprocess.run([BINARY, "run", query, "--no-status"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit("the publisher failed:\n" + done.stderr)
    return time.perf_counter() - started


def register(port, qos, client_id):
    """Connects once with a persistent session so the broker queues for `client_id`."""
    subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-c", "-i", client_id,
         "-t", "bench/#", "-W", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def run_mosquitto_sub(folder, qos, path, count, inflight):
    """(messages/s, messages received, seconds to publish) for `mosquitto_sub` alone."""
    broker = Broker(folder, inflight)
    try:
        register(broker.port, qos, "bench-sub")
        publish_seconds = fill(folder, broker.port, path)
        started = time.perf_counter()
        # Everything is queued, so `-C` (exit after that many messages) cannot wait for a lost
        # one; output goes to /dev/null so the terminal or a pipe does not slow it down.
        subscriber = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos), "-c", "-i", "bench-sub",
             "-t", "bench/#", "-C", str(count + 1)],
            stdout=subprocess.DEVNULL,
        )
        try:
            subscriber.wait(timeout=900)
        except subprocess.TimeoutExpired:
            subscriber.kill()
            sys.exit("mosquitto_sub did not get every message within 15 minutes")
        elapsed = time.perf_counter() - started
        received = count
        return received / elapsed, received, publish_seconds
    finally:
        broker.stop()


def parquet_rows(out):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    total = 0
    for file in glob.glob(os.path.join(out, "**", "*.parquet"), recursive=True):
        table = pq.read_table(file, columns=["n"])
        total += sum(v for v in table.column("n").to_pylist() if v is not None)
    return total


def run_edgeflow(folder, qos, path, count, inflight, workers, source_inflight):
    """(messages/s, rows read, rows in the Parquet windows, summary) for edgeflow."""
    broker = Broker(folder, inflight)
    out = tempfile.mkdtemp(dir=folder)
    query = os.path.join(folder, f"q-{broker.port}.toml")
    with open(query, "w") as f:
        f.write(QUERY.format(port=broker.port, qos=qos, inflight=source_inflight, out=out, workers=workers))
    try:
        register(broker.port, qos, "mqtt-bench")
        fill(folder, broker.port, path)
        env = dict(os.environ, RUST_LOG="warn")
        started = time.perf_counter()
        process = subprocess.Popen(
            [BINARY, "run", query, "--no-status"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        line = process.stdout.readline()  # the marker row, through filter -> stdout
        elapsed = time.perf_counter() - started
        if '"end"' not in line:
            sys.exit(f"edgeflow printed {line!r} instead of the marker:\n{process.stderr.read()}")
        process.terminate()
        _, summary = process.communicate(timeout=120)
        in_parquet = parquet_rows(out)
        read = re.search(r"([0-9,]+) rows read", summary)
        received = int(read.group(1).replace(",", "")) - 1 if read else None
        return (received or count) / elapsed, received, in_parquet, summary
    finally:
        broker.stop()


def main():
    global BINARY
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--qos", default="0,1")
    parser.add_argument("--inflight", type=int, default=1000,
                        help="mosquitto max_inflight_messages and the source's inflight (QoS 1)")
    parser.add_argument("--source-inflight", type=int, default=None,
                        help="the source's inflight when it should differ from the broker's limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--binary", default=None, help="the edgeflow binary to measure")
    args = parser.parse_args()
    BINARY = args.binary or BINARY
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: cargo build --release")
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install mosquitto-clients")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "messages.jsonl")
        write_messages(path, args.messages)
        size = os.path.getsize(path) / args.messages
        print(f"{args.messages:,} messages of about {size:.0f} bytes, {os.cpu_count()} cores, "
              f"mosquitto max_inflight_messages {args.inflight}, edgeflow {args.workers} workers", flush=True)
        results = {}
        for qos in (int(q) for q in args.qos.split(",")):
            sub, sub_received, publish_seconds = run_mosquitto_sub(folder, qos, path, args.messages, args.inflight)
            ours, received, in_parquet, summary = run_edgeflow(
                folder, qos, path, args.messages, args.inflight, args.workers,
                args.source_inflight or args.inflight)
            print(f"QoS {qos}: mosquitto_sub {sub:,.0f} msg/s ({sub_received:,} received) | "
                  f"edgeflow {ours:,.0f} msg/s ({received:,} read, {in_parquet} in the Parquet windows) "
                  f"= {100 * ours / sub:.0f}% of mosquitto_sub | filling the broker took {publish_seconds:.1f} s "
                  f"({args.messages / publish_seconds:,.0f} msg/s published by edgeflow's mqtt sink, QoS 1)",
                  flush=True)
            results[qos] = {"mosquitto_sub": sub, "mosquitto_sub_received": sub_received,
                            "edgeflow": ours, "edgeflow_received": received, "parquet_rows": in_parquet,
                            "publish_seconds": publish_seconds}
            if in_parquet is not None and received is not None and in_parquet != received + 1:
                print(f"  note: the windows hold {in_parquet} rows, edgeflow read {received + 1}:\n{summary[-2000:]}")
        print(json.dumps(results))


if __name__ == "__main__":
    main()
