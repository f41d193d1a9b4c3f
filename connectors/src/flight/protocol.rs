//! The wire agreement between the `flight` sink (gateway) and `edgeflow collect` (cloud).
//!
//! One Arrow Flight `DoPut` carries one spool segment. Its descriptor is a `PATH` descriptor
//! `["edgeflow", <stream>, <segment id>]`:
//! - `stream` names the flow on the gateway, by default `<pipeline>.<sink>`; it may hold
//!   letters, digits, `.`, `_` and `-` only, so that it is safe as a file-name part;
//! - `segment id` is the segment's number as 20 decimal digits. Numbers strictly increase per
//!   (gateway, stream) for the life of the spool, across restarts of edgeflow, so the
//!   collector can recognise a segment sent twice.
//!
//! The gateway's identity is not in the message: the collector takes it from the subject of
//! the client certificate (mutual TLS).
//!
//! The collector answers with one `PutResult` whose `app_metadata` is a JSON [`SegmentAck`],
//! sent only after the segment's rows are durably on disk (or were already, from an earlier
//! send: `duplicate = true`). The sink deletes a segment from its spool only on that ack.

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The first element of every descriptor path.
pub const PATH_PREFIX: &str = "edgeflow";

/// A segment as addressed on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentRef {
    /// The flow on the gateway, such as `plant1.upstream`.
    pub stream: String,
    /// The segment's number in its stream.
    pub id: u64,
}

impl SegmentRef {
    /// The `DoPut` descriptor that carries this segment.
    pub fn descriptor(&self) -> FlightDescriptor {
        FlightDescriptor::new_path(vec![
            PATH_PREFIX.to_owned(),
            self.stream.clone(),
            format_segment_id(self.id),
        ])
    }

    /// Reads a segment reference from a `DoPut` descriptor.
    ///
    /// # Errors
    /// A [`ProtocolError`] saying what is wrong with the descriptor.
    pub fn from_descriptor(descriptor: &FlightDescriptor) -> Result<Self, ProtocolError> {
        if descriptor.r#type != DescriptorType::Path as i32 {
            return Err(ProtocolError::NotAPath);
        }
        match descriptor.path.as_slice() {
            [prefix, stream, id] if prefix == PATH_PREFIX => {
                check_stream_name(stream)?;
                let id = id
                    .parse::<u64>()
                    .map_err(|_| ProtocolError::BadSegmentId(id.clone()))?;
                Ok(Self {
                    stream: stream.clone(),
                    id,
                })
            }
            other => Err(ProtocolError::BadPath(other.join("/"))),
        }
    }
}

/// A segment number as it appears on the wire and in file names: 20 decimal digits.
pub fn format_segment_id(id: u64) -> String {
    format!("{id:020}")
}

/// Checks that a stream name is non-empty and holds only `[A-Za-z0-9._-]`.
///
/// # Errors
/// [`ProtocolError::BadStream`] naming the stream.
pub fn check_stream_name(stream: &str) -> Result<(), ProtocolError> {
    let valid = !stream.is_empty()
        && stream != "."
        && stream != ".."
        && stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ProtocolError::BadStream(stream.to_owned()))
    }
}

/// The collector's answer to one segment, carried in `PutResult.app_metadata` as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentAck {
    /// The stream of the acknowledged segment.
    pub stream: String,
    /// The acknowledged segment's number.
    pub segment_id: u64,
    /// Rows the collector holds for this segment.
    pub rows: u64,
    /// True when the segment had already been stored by an earlier send.
    #[serde(default)]
    pub duplicate: bool,
}

impl SegmentAck {
    /// The JSON bytes for `PutResult.app_metadata`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a SegmentAck always serialises")
    }

    /// Reads an ack from `PutResult.app_metadata`.
    ///
    /// # Errors
    /// [`ProtocolError::BadAck`] when the bytes are not a JSON ack.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::BadAck(e.to_string()))
    }
}

/// A message that does not follow the agreement.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The descriptor is a command, not a path.
    #[error("the flight descriptor must be a PATH descriptor [\"edgeflow\", stream, segment id]")]
    NotAPath,
    /// The path does not have the three expected parts.
    #[error("flight descriptor path `{0}` is not edgeflow/<stream>/<segment id>")]
    BadPath(String),
    /// The stream name holds characters outside `[A-Za-z0-9._-]`.
    #[error("stream name `{0}` may hold only letters, digits, `.`, `_` and `-`")]
    BadStream(String),
    /// The segment id is not a decimal number.
    #[error("segment id `{0}` is not a decimal number")]
    BadSegmentId(String),
    /// The ack is not the expected JSON.
    #[error("the collector's ack is not valid: {0}")]
    BadAck(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips() {
        let segment = SegmentRef {
            stream: "plant1.upstream".into(),
            id: 42,
        };
        let descriptor = segment.descriptor();
        assert_eq!(descriptor.path[2], "00000000000000000042");
        assert_eq!(SegmentRef::from_descriptor(&descriptor).unwrap(), segment);
    }

    #[test]
    fn rejects_foreign_descriptors() {
        let command = FlightDescriptor::new_cmd(b"SELECT 1".to_vec());
        assert_eq!(
            SegmentRef::from_descriptor(&command),
            Err(ProtocolError::NotAPath)
        );
        let short = FlightDescriptor::new_path(vec!["edgeflow".into(), "s".into()]);
        assert!(matches!(
            SegmentRef::from_descriptor(&short),
            Err(ProtocolError::BadPath(_))
        ));
        let escape = FlightDescriptor::new_path(vec!["edgeflow".into(), "../x".into(), "1".into()]);
        assert!(matches!(
            SegmentRef::from_descriptor(&escape),
            Err(ProtocolError::BadStream(_))
        ));
        let bad_id = FlightDescriptor::new_path(vec!["edgeflow".into(), "s".into(), "x1".into()]);
        assert!(matches!(
            SegmentRef::from_descriptor(&bad_id),
            Err(ProtocolError::BadSegmentId(_))
        ));
    }

    #[test]
    fn ack_round_trips() {
        let ack = SegmentAck {
            stream: "s".into(),
            segment_id: 7,
            rows: 100,
            duplicate: true,
        };
        assert_eq!(SegmentAck::from_bytes(&ack.to_bytes()).unwrap(), ack);
        assert!(SegmentAck::from_bytes(b"ok").is_err());
    }
}
