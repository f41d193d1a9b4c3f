//! The `stdout` sink: every row as one JSON object per line on standard output.
//!
//! Use it to watch a pipeline while writing a query, or to pipe rows into `jq`. Timestamps
//! print as RFC 3339 UTC (`"2024-01-01T00:00:00.250Z"`); null values are left out of the
//! object. It has no options:
//!
//! ```toml
//! [sinks.console]
//! type = "stdout"
//! inputs = ["alerts"]
//! ```
//!
//! If standard output is closed (`edgeflow run q.toml | head`), the sink ends quietly at the
//! first broken-pipe error instead of failing the pipeline, and asks the pipeline to stop
//! gracefully (an unbounded source would otherwise run on with nobody reading); rows sent to
//! it after that are counted by the engine as dropped (`sink_stopped`).

use std::io::{self, Write};

use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::arrow::json::LineDelimitedWriter;
use edgeflow_engine::{
    BoxError, BoxFuture, OptionError, Sink, SinkEvent, SinkInput, SinkSummary, parse_options,
};
use serde::Deserialize;
use tracing::debug;

use crate::error::{ConnectorError, io_reason};
use crate::timestamps::with_offset_labels;
use crate::{SinkConfig, SinkKind};

/// The `stdout` sink kind.
pub const KIND: SinkKind = SinkKind {
    name: "stdout",
    summary: "Prints rows to standard output as JSON lines",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn SinkConfig>, OptionError> {
    parse_options::<StdoutConfig>(table).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

/// Options of the `stdout` sink (there are none).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl SinkConfig for StdoutConfig {
    fn check(&self, _input: &SchemaRef) -> Vec<OptionError> {
        Vec::new()
    }

    fn build(&self, _input: &SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(StdoutSink))
    }
}

/// The running `stdout` sink.
#[derive(Debug)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn run(
        self: Box<Self>,
        mut input: SinkInput,
    ) -> BoxFuture<'static, Result<SinkSummary, BoxError>> {
        Box::pin(async move {
            // Writing to a terminal or pipe blocks: do it on a blocking thread.
            let printing =
                tokio::task::spawn_blocking(move || print_all(&mut input, &mut io::stdout()));
            match printing.await {
                Ok(result) => result.map_err(BoxError::from),
                Err(join) => {
                    Err(ConnectorError::Internal(format!("stdout writer stopped: {join}")).into())
                }
            }
        })
    }
}

/// Writes every batch of `input` to `out` as JSON lines, flushing after each batch.
fn print_all(input: &mut SinkInput, out: &mut impl Write) -> Result<SinkSummary, ConnectorError> {
    let mut summary = SinkSummary::default();
    let mut buffer = Vec::with_capacity(64 << 10);
    while let Some(event) = input.blocking_recv() {
        let SinkEvent::Rows(rows) = event else {
            continue;
        };
        buffer.clear();
        let printable = with_offset_labels(&rows);
        let mut writer = LineDelimitedWriter::new(&mut buffer);
        writer
            .write(&printable)
            .and_then(|()| writer.finish())
            .map_err(|error| {
                ConnectorError::Stdout(format!("cannot encode rows as JSON: {error}"))
            })?;
        match out.write_all(&buffer).and_then(|()| out.flush()) {
            Ok(()) => summary.rows += rows.num_rows() as u64,
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                // Whoever read our output has gone (`| head`): that is how such a reader says
                // it has seen enough, not a failure of the pipeline.
                debug!(sink = %input.name(), "Standard output is closed; the pipeline stops");
                input.request_shutdown();
                return Ok(summary);
            }
            Err(error) => return Err(ConnectorError::Stdout(io_reason(&error))),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeflow_engine::arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray};
    use edgeflow_engine::arrow::datatypes::{DataType, Field};
    use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = schema_with_event_time(
            [
                Field::new("ts", timestamp_type(), true),
                Field::new("t", DataType::Float64, true),
            ],
            Some("ts"),
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_704_067_200_250, 1_704_067_201_000])
                        .with_timezone(UTC),
                ),
                Arc::new(Float64Array::from(vec![Some(21.5), None])),
            ],
        )
        .unwrap()
    }

    /// Feeds `batches` to `print_all` on a blocking thread writing into `out`.
    async fn print<W: Write + Send + 'static>(
        batches: Vec<RecordBatch>,
        mut out: W,
    ) -> (Result<SinkSummary, ConnectorError>, W) {
        let (mut input, sender) = SinkInput::for_test("console", batches[0].schema(), 8);
        for rows in batches {
            sender.send(SinkEvent::Rows(rows)).await.unwrap();
        }
        sender.send(SinkEvent::Watermark(5)).await.unwrap();
        drop(sender);
        tokio::task::spawn_blocking(move || {
            let result = print_all(&mut input, &mut out);
            (result, out)
        })
        .await
        .unwrap()
    }

    #[test]
    fn the_default_form_parses_and_builds() {
        let config: StdoutConfig = parse_options(toml::Table::new()).unwrap();
        assert!(config.check(&batch().schema()).is_empty());
        config.build(&batch().schema()).unwrap();
        let error = parse_options::<StdoutConfig>("pretty = true".parse().unwrap()).unwrap_err();
        assert!(error.message.contains("pretty"), "{error}");
    }

    #[tokio::test]
    async fn rows_print_as_json_lines_with_rfc3339_times() {
        let (result, out) = print(vec![batch(), batch()], Vec::new()).await;
        assert_eq!(result.unwrap(), SinkSummary { rows: 4, files: 0 });
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], r#"{"ts":"2024-01-01T00:00:00.250Z","t":21.5}"#);
        assert_eq!(lines[1], r#"{"ts":"2024-01-01T00:00:01Z"}"#);
    }

    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_closed_pipe_ends_the_sink_quietly() {
        let (result, _) = print(vec![batch()], Failing(io::ErrorKind::BrokenPipe)).await;
        assert_eq!(result.unwrap(), SinkSummary::default());
        let (result, _) = print(vec![batch()], Failing(io::ErrorKind::PermissionDenied)).await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "cannot write to standard output: permission denied"
        );
    }
}
