//! Tests of the `modbus` source: the example parses and plans, each bad option is reported at
//! its path, and the running source against an in-process fake Modbus TCP server (decoded
//! rows, exceptions and a closed port counted per device).

use std::time::Duration;

use edgeflow_engine::arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use edgeflow_engine::arrow::datatypes::DataType;
use edgeflow_engine::schema::event_time_column;
use edgeflow_engine::{OptionError, SourceContext, parse_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::ModbusConfig;
use super::coalesce::{Request, Table};
use crate::SourceConfig;

fn parse(text: &str) -> Result<ModbusConfig, OptionError> {
    parse_options(text.parse::<toml::Table>().expect("valid TOML"))
}

fn errors(text: &str) -> Vec<OptionError> {
    match parse(text) {
        Ok(config) => config.plan().err().unwrap_or_default(),
        Err(error) => vec![error],
    }
}

/// The first error's dotted path and message.
fn first_error(text: &str) -> (String, String) {
    let errors = errors(text);
    let first = errors
        .first()
        .unwrap_or_else(|| panic!("no error for:\n{text}"));
    (first.path.join("."), first.message.clone())
}

const EXAMPLE: &str = r#"
interval = "1s"
timeout = "500ms"

[maps.press]
registers = [
  { field = "temperature", kind = "holding", address = 100, type = "f32", word_order = "little" },
  { field = "pressure", kind = "input", address = 0, type = "i16", scale = 0.1 },
  { field = "running", kind = "coil", address = 0 },
]

[[devices]]
id = "press-1"
address = "192.168.1.20:502"
unit = 1
map = "press"

[[devices]]
id = "press-2"
address = "192.168.1.21"
map = "press"

[[devices]]
id = "meter-7"
address = "192.168.1.31"
interval = "5s"
timeout = "2s"
[[devices.registers]]
field = "energy_kwh"
kind = "input"
address = 0
type = "u32"
scale = 0.01
[[devices.registers]]
field = "count"
kind = "holding"
address = 7
"#;

#[test]
fn the_example_plans_one_schema_for_every_device() {
    let config = parse(EXAMPLE).unwrap();
    let plan = config.plan().unwrap();
    let fields: Vec<(&str, &DataType)> = plan
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        fields,
        [
            ("timestamp", &edgeflow_engine::schema::timestamp_type()),
            ("device_id", &DataType::Utf8),
            ("temperature", &DataType::Float64),
            ("pressure", &DataType::Float64),
            ("running", &DataType::Boolean),
            ("energy_kwh", &DataType::Float64),
            ("count", &DataType::Int64),
        ]
    );
    assert_eq!(event_time_column(&plan.schema), Some((0, "timestamp")));
    assert_eq!(plan.devices.len(), 3);
    assert_eq!(plan.devices[1].address, "192.168.1.21:502");
    assert_eq!(plan.devices[1].unit, 1);
    assert_eq!(
        plan.devices[0].requests,
        [
            Request {
                table: Table::Coil,
                address: 0,
                count: 1
            },
            Request {
                table: Table::Holding,
                address: 100,
                count: 2
            },
            Request {
                table: Table::Input,
                address: 0,
                count: 1
            },
        ]
    );
    assert_eq!(plan.devices[0].interval, Duration::from_secs(1));
    assert_eq!(plan.devices[0].timeout, Duration::from_millis(500));
    assert_eq!(plan.devices[2].interval, Duration::from_secs(5));
    assert_eq!(plan.devices[2].timeout, Duration::from_secs(2));
    // Default out-of-orderness: the longest poll, timeout × (requests + the connection): the
    // meter's 2 s × (2 + 1) beats a press's 500 ms × (3 + 1).
    assert_eq!(config.out_of_orderness(), Duration::from_secs(6));
    assert_eq!(
        config.watermark().idle_timeout,
        Some(Duration::from_secs(30))
    );
    assert!(config.build().is_ok());
    let kind = crate::sources()
        .iter()
        .find(|k| k.name == "modbus")
        .expect("registered");
    assert!((kind.parse)(EXAMPLE.parse().unwrap()).is_ok());
}

#[test]
fn unknown_type_and_kind_are_reported_at_their_path() {
    let base = "[[devices]]\nid = \"a\"\naddress = \"h\"\n[[devices.registers]]\nfield = \"x\"\nkind = \"holding\"\naddress = 0\n";
    let (path, message) = first_error(&format!(
        "{base}[[devices.registers]]\nfield = \"y\"\nkind = \"holding\"\naddress = 1\n[[devices.registers]]\nfield = \"z\"\nkind = \"holding\"\naddress = 2\ntype = \"f64\"\n"
    ));
    assert_eq!(path, "devices.0.registers.2.type");
    assert!(
        message.contains("f64") && message.contains("f32"),
        "{message}"
    );
    let (path, message) = first_error(&base.replace("\"holding\"", "\"holdings\""));
    assert_eq!(path, "devices.0.registers.0.kind");
    assert!(message.contains("holdings"), "{message}");
    let (path, _) =
        first_error(&base.replace("address = 0", "address = 0\nword_order = \"middle\""));
    assert_eq!(path, "devices.0.registers.0.word_order");
    let (path, _) = first_error(&format!("{base}colour = \"red\"\n"));
    assert_eq!(path, "devices.0.registers.0.colour");
}

#[test]
fn register_entries_are_checked() {
    let entry = |extra: &str| {
        format!(
            "[[devices]]\nid = \"a\"\naddress = \"h\"\n[[devices.registers]]\nfield = \"x\"\n{extra}\n"
        )
    };
    let cases = [
        (
            "kind = \"coil\"\naddress = 0\ntype = \"f32\"",
            "type",
            "needs 2 register(s), but a coil is a single bit",
        ),
        (
            "kind = \"holding\"\naddress = 65535\ntype = \"f32\"",
            "address",
            "register out of range",
        ),
        (
            "kind = \"input\"\naddress = 70000",
            "address",
            "register out of range",
        ),
        (
            "kind = \"holding\"\naddress = 0\ntype = \"u16\"\nword_order = \"little\"",
            "word_order",
            "32-bit types",
        ),
        (
            "kind = \"holding\"\naddress = 0\ntype = \"bool\"\nbit = 16",
            "bit",
            "bits 0 to 15",
        ),
        (
            "kind = \"holding\"\naddress = 0\ntype = \"u16\"\nbit = 3",
            "bit",
            "type = \\\"bool\\\"",
        ),
        (
            "kind = \"coil\"\naddress = 0\nscale = 2.0",
            "scale",
            "not to bool",
        ),
        (
            "kind = \"holding\"\naddress = 0\nscale = nan",
            "scale",
            "not a finite number",
        ),
    ];
    for (extra, key, wanted) in cases {
        let (path, message) = first_error(&entry(extra));
        assert_eq!(path, format!("devices.0.registers.0.{key}"), "{extra}");
        let wanted = wanted.replace("\\\"", "\"");
        assert!(message.contains(&wanted), "{extra}: {message}");
    }
    // Overlapping entries are fine: a u32 and its low word as a u16.
    let overlap = format!(
        "{}[[devices.registers]]\nfield = \"low\"\nkind = \"holding\"\naddress = 1\n",
        entry("kind = \"holding\"\naddress = 0\ntype = \"u32\"")
    );
    let plan = parse(&overlap).unwrap().plan().unwrap();
    assert_eq!(plan.devices[0].requests.len(), 1);
    assert_eq!(plan.devices[0].requests[0].count, 2);
}

#[test]
fn devices_maps_and_fields_are_checked() {
    let (path, message) = first_error("interval = \"1s\"");
    assert_eq!(path, "devices");
    assert!(message.contains("no devices"), "{message}");

    let reg = "[[devices.registers]]\nfield = \"x\"\nkind = \"holding\"\naddress = 0\n";
    let (path, message) = first_error(&format!(
        "[[devices]]\nid = \"a\"\naddress = \"h\"\n{reg}[[devices]]\nid = \"a\"\naddress = \"h\"\n{reg}"
    ));
    assert_eq!(path, "devices.1.id");
    assert!(message.contains("already used by devices.0"), "{message}");

    let (path, message) = first_error(&format!(
        "[[devices]]\nid = \"a\"\naddress = \"h:99999\"\n{reg}"
    ));
    assert_eq!(path, "devices.0.address");
    assert!(message.contains("'99999'"), "{message}");

    let map = "[maps.press]\nregisters = [{ field = \"x\", kind = \"holding\", address = 0 }]\n";
    let misspelt = errors(&format!(
        "{map}[[devices]]\nid = \"a\"\naddress = \"h\"\nmap = \"prss\"\n"
    ));
    assert_eq!(misspelt[0].path.join("."), "devices.0.map");
    assert_eq!(misspelt[0].hint.as_deref(), Some("did you mean 'press'?"));

    // A bad entry of a shared map is reported once, at the map, however many devices read
    // it, and also when no device names the map correctly.
    let bad_map = "[maps.press]\nregisters = [{ field = \"x\", kind = \"coil\", address = 0, type = \"f32\" }]\n";
    let two = format!(
        "{bad_map}[[devices]]\nid = \"a\"\naddress = \"h\"\nmap = \"press\"\n[[devices]]\nid = \"b\"\naddress = \"h\"\nmap = \"press\"\n"
    );
    let found = errors(&two);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path.join("."), "maps.press.registers.0.type");
    let found = errors(&format!(
        "{bad_map}[[devices]]\nid = \"a\"\naddress = \"h\"\nmap = \"pres\"\n"
    ));
    let paths: Vec<String> = found.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(paths, ["maps.press.registers.0.type", "devices.0.map"]);

    let (path, message) = first_error("[[devices]]\nid = \"a\"\naddress = \"h\"\n");
    assert_eq!(path, "devices.0");
    assert!(message.contains("reads nothing"), "{message}");

    // The same field twice in one device (once from the map, once of its own).
    let (path, message) = first_error(&format!(
        "{map}[[devices]]\nid = \"a\"\naddress = \"h\"\nmap = \"press\"\n{reg}"
    ));
    assert_eq!(path, "devices.0.registers.0.field");
    assert!(
        message.contains("already read by maps.press.registers.0"),
        "{message}"
    );

    // One name, two column types across devices.
    let (path, message) = first_error(&format!(
        "[[devices]]\nid = \"a\"\naddress = \"h\"\n{reg}[[devices]]\nid = \"b\"\naddress = \"h\"\n{}",
        reg.replace("address = 0", "address = 0\ntype = \"f32\"")
    ));
    assert_eq!(path, "devices.1.registers.0.type");
    assert!(message.contains("a column has one type"), "{message}");

    let (path, _) = first_error(&format!(
        "[[devices]]\nid = \"a\"\naddress = \"h\"\n{}",
        reg.replace("\"x\"", "\"timestamp\"")
    ));
    assert_eq!(path, "devices.0.registers.0.field");

    let (path, _) = first_error(&format!(
        "[[devices]]\nid = \"a\"\naddress = \"h\"\ntimeout = \"0s\"\n{reg}"
    ));
    assert_eq!(path, "devices.0.timeout");
    for (option, value) in [
        ("interval", "\"0s\""),
        ("timeout", "\"0ms\""),
        ("max_registers", "126"),
        ("max_coils", "0"),
        ("reconnect_max", "\"10ms\""),
    ] {
        let (path, _) = first_error(&format!(
            "{option} = {value}\n[[devices]]\nid = \"a\"\naddress = \"h\"\n{reg}"
        ));
        assert_eq!(path, option);
    }
}

/// A minimal Modbus TCP server: 200 holding and input registers, 64 coils and discrete
/// inputs; reads past them answer "illegal data address"; unit 9 never answers; holding
/// reads at 150 get one register too few.
async fn fake_server(holding: Vec<u16>, coils: Vec<bool>) -> std::net::SocketAddr {
    fake_server_on("127.0.0.1:0", holding, coils).await
}

/// [`fake_server`] on a given address.
async fn fake_server_on(
    address: &str,
    holding: Vec<u16>,
    coils: Vec<bool>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind(address).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (holding, coils) = (holding.clone(), coils.clone());
            tokio::spawn(async move {
                let mut header = [0u8; 7];
                while stream.read_exact(&mut header).await.is_ok() {
                    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
                    let mut pdu = vec![0u8; length - 1];
                    if stream.read_exact(&mut pdu).await.is_err() {
                        return;
                    }
                    if header[6] == 9 {
                        continue;
                    }
                    let function = pdu[0];
                    let start = usize::from(u16::from_be_bytes([pdu[1], pdu[2]]));
                    let count = usize::from(u16::from_be_bytes([pdu[3], pdu[4]]));
                    let mut answer = vec![function];
                    match function {
                        // A broken device: one register short at address 150.
                        3 if start == 150 => {
                            answer.push(((count - 1) * 2) as u8);
                            answer.extend(vec![0u8; (count - 1) * 2]);
                        }
                        3 | 4 if start + count <= holding.len() => {
                            answer.push((count * 2) as u8);
                            for word in &holding[start..start + count] {
                                answer.extend(word.to_be_bytes());
                            }
                        }
                        1 | 2 if start + count <= coils.len() => {
                            let bytes = count.div_ceil(8);
                            answer.push(bytes as u8);
                            let mut packed = vec![0u8; bytes];
                            for (i, bit) in coils[start..start + count].iter().enumerate() {
                                packed[i / 8] |= u8::from(*bit) << (i % 8);
                            }
                            answer.extend(packed);
                        }
                        _ => answer = vec![function | 0x80, 0x02],
                    }
                    let mut frame = header[..4].to_vec();
                    frame.extend(((answer.len() + 1) as u16).to_be_bytes());
                    frame.push(header[6]);
                    frame.extend(answer);
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn polls_decode_rows_and_count_failures_per_device() {
    let mut holding = vec![0u16; 200];
    let bits = 21.5f32.to_bits();
    holding[100] = (bits & 0xFFFF) as u16; // little: CD AB
    holding[101] = (bits >> 16) as u16;
    holding[102] = (-1234i16) as u16;
    holding[103] = 0x0001; // u32 big = 0x0001_86A0 = 100000
    holding[104] = 0x86A0;
    let coils = vec![true, false, true];
    let server = fake_server(holding, [coils, vec![false; 61]].concat()).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address = closed.local_addr().unwrap();
    drop(closed);
    let text = format!(
        r#"
interval = "100ms"
timeout = "200ms"
reconnect_min = "50ms"
reconnect_max = "100ms"
[maps.m]
registers = [
  {{ field = "temperature", kind = "holding", address = 100, type = "f32", word_order = "little" }},
  {{ field = "level", kind = "holding", address = 102, type = "i16", scale = 0.1 }},
  {{ field = "total", kind = "holding", address = 103, type = "u32" }},
  {{ field = "on", kind = "coil", address = 0 }},
  {{ field = "spare", kind = "coil", address = 2 }},
]
[[devices]]
id = "good"
address = "{server}"
map = "m"
[[devices]]
id = "dead"
address = "{closed_address}"
map = "m"
[[devices]]
id = "mute"
address = "{server}"
unit = 9
map = "m"
[[devices]]
id = "bad_address"
address = "{server}"
[[devices.registers]]
field = "missing"
kind = "holding"
address = 500
"#
    );
    let config = parse(&text).unwrap();
    let schema = config.schema().unwrap();
    let source = config.build().unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("plc", schema, 64);
    let metrics = ctx.metrics().clone();
    let running = tokio::spawn(source.run(ctx));
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    trigger.trigger();
    running.await.unwrap().unwrap();
    let mut rows = 0;
    while let Some(batch) = receiver.recv().await {
        let ids = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let temperature = column("temperature");
        let temperature = temperature.as_any().downcast_ref::<Float64Array>().unwrap();
        let level = column("level");
        let level = level.as_any().downcast_ref::<Float64Array>().unwrap();
        let total = column("total");
        let total = total.as_any().downcast_ref::<Int64Array>().unwrap();
        let on = column("on");
        let on = on.as_any().downcast_ref::<BooleanArray>().unwrap();
        let spare = column("spare");
        let spare = spare.as_any().downcast_ref::<BooleanArray>().unwrap();
        for row in 0..batch.num_rows() {
            assert_eq!(ids.value(row), "good", "only the good device answers");
            assert_eq!(temperature.value(row), 21.5);
            assert!((level.value(row) - (-123.4)).abs() < 1e-9);
            assert_eq!(total.value(row), 100_000);
            assert!(on.value(row) && spare.value(row));
            assert!(column("missing").is_null(row));
            rows += 1;
        }
    }
    let values = metrics.snapshot().values;
    let value = |key: &str| values.get(key).copied().unwrap_or(0);
    // 100 ms interval for ~1 s: about 11 polls (fewer only if this machine is very busy); the
    // poll rate against dead devices is checked through the binary in tests/modbus.rs.
    assert!((5..=12).contains(&rows), "{rows} rows; {values:?}");
    assert_eq!(value("good.polls"), rows as u64);
    assert!(value("dead.connect_failed") >= 3, "{values:?}");
    assert!(value("mute.timeout") >= 2, "{values:?}");
    assert_eq!(value("mute.polls"), 0);
    assert!(
        value("bad_address.exception:illegal_data_address") >= 5,
        "{values:?}"
    );
}

#[tokio::test]
async fn a_device_that_comes_up_later_is_reconnected_with_backoff() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        probe.local_addr().unwrap().port()
    };
    let text = format!(
        r#"
interval = "50ms"
timeout = "200ms"
reconnect_min = "20ms"
reconnect_max = "80ms"
[[devices]]
id = "late"
address = "127.0.0.1:{port}"
registers = [{{ field = "v", kind = "holding", address = 3 }}]
"#
    );
    let config = parse(&text).unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("plc", config.schema().unwrap(), 64);
    let metrics = ctx.metrics().clone();
    let running = tokio::spawn(config.build().unwrap().run(ctx));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let failed_before = metrics
        .snapshot()
        .values
        .get("late.connect_failed")
        .copied();
    let mut holding = vec![0u16; 8];
    holding[3] = 4242;
    fake_server_on(&format!("127.0.0.1:{port}"), holding, vec![false; 8]).await;
    let batch = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("a row once the device is up")
        .expect("a batch");
    let v = batch
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(v.value(0), 4242);
    trigger.trigger();
    running.await.unwrap().unwrap();
    // Backoff of 20 to 80 ms against 400 ms of refusals: a handful of attempts, not one per
    // millisecond, and none once connected.
    let failed_before = failed_before.expect("refusals counted before the device came up");
    assert!((3..=20).contains(&failed_before), "{failed_before}");
    let values = metrics.snapshot().values;
    // (One attempt may fall between the count above and the server's start.)
    assert!(
        values["late.connect_failed"] <= failed_before + 1,
        "{values:?}"
    );
    assert!(values["late.polls"] >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_answer_is_counted_and_never_stops_the_device_or_the_others() {
    let server = fake_server(vec![7u16; 200], vec![false; 64]).await;
    let text = format!(
        r#"
interval = "100ms"
timeout = "2s"
[[devices]]
id = "short"
address = "{server}"
registers = [{{ field = "short_u32", kind = "holding", address = 150, type = "u32" }}]
[[devices]]
id = "good"
address = "{server}"
registers = [{{ field = "v", kind = "holding", address = 3 }}]
"#
    );
    let config = parse(&text).unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("plc", config.schema().unwrap(), 64);
    let metrics = ctx.metrics().clone();
    let running = tokio::spawn(config.build().unwrap().run(ctx));
    // tokio-modbus checks the length of an answer with a debug assertion, which panics the
    // device task in debug builds (it is restarted after one interval, and the panic message
    // with its backtrace can take a while to print); in release builds our own check counts
    // `decode`. Either way the device goes on being polled.
    let failures = || {
        let values = metrics.snapshot().values;
        values.get("short.decode").copied().unwrap_or(0)
            + values.get("short.restarts").copied().unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while failures() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            metrics.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    trigger.trigger();
    running.await.unwrap().unwrap();
    let mut good = 0;
    while let Some(batch) = receiver.recv().await {
        let ids = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let v = batch
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for row in 0..batch.num_rows() {
            assert_eq!(ids.value(row), "good");
            assert_eq!(v.value(row), 7);
            good += 1;
        }
    }
    let values = metrics.snapshot().values;
    assert!(good >= 2, "{values:?}");
    assert_eq!(values.get("short.polls"), None);
}
