//! The I2C bus as the sensor drivers see it: an `embedded_hal::i2c::I2c` that keeps a repeated
//! start between a write and the read that follows it, shared by every sensor on the bus.
//!
//! # Why a wrapper around rppal
//!
//! rppal 0.22's `embedded_hal::i2c::I2c::transaction` sends each operation as its own
//! `read(2)`/`write(2)` on `/dev/i2c-N`, so every operation ends with a STOP (rppal issue
//! 171). embedded-hal 1.0 wants consecutive operations of one transaction joined by repeated
//! starts, and some chips lose the register pointer on a STOP. rppal's inherent
//! `I2c::write_read` does the right thing (one `I2C_RDWR` ioctl with two messages: START,
//! write, repeated START, read, STOP).
//!
//! [`RepeatedStartI2c`] therefore implements the embedded-hal trait itself on top of the
//! four primitive calls of [`RawI2c`] (which rppal's `I2c` provides, see `hw.rs`):
//!
//! * adjacent operations of the same kind are merged into one (embedded-hal allows it:
//!   consecutive writes or reads within a transaction are contiguous on the wire);
//! * a write followed by a read becomes one `write_read` (repeated start);
//! * anything else (a lone write, a lone read, a read followed by a write) is sent on its own,
//!   which ends with a STOP. No driver we use needs more than `[Write, Read]`.
//!
//! A read that returns fewer bytes than asked for is an error, not a short buffer silently
//! half-filled (rppal's own trait implementation ignores the count).
//!
//! `linux-embedded-hal` is the maintained alternative to rppal for any Linux board; its
//! `I2cdev` implements the trait with one `I2C_RDWR` per transaction. Moving to it means
//! replacing the adapter in `hw.rs` only.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

/// An I2C bus error in words, with the embedded-hal category drivers act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct I2cBusError {
    /// The embedded-hal category.
    pub kind: ErrorKind,
    /// What happened, in words.
    pub message: String,
}

impl I2cBusError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An error from the operating system, classified by its errno: `ENXIO` and
    /// `EREMOTEIO` (no device answered) become [`ErrorKind::NoAcknowledge`], `EAGAIN`
    /// (lost arbitration) [`ErrorKind::ArbitrationLoss`], anything else
    /// [`ErrorKind::Other`].
    pub fn from_io(error: &std::io::Error) -> Self {
        let kind = match error.raw_os_error() {
            Some(6 | 121) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            Some(11) => ErrorKind::ArbitrationLoss,
            _ => ErrorKind::Other,
        };
        Self::new(kind, crate::error::io_reason(error))
    }
}

impl embedded_hal::i2c::Error for I2cBusError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// The primitive calls of a Linux I2C character device, each addressed to the current slave.
pub trait RawI2c {
    /// Selects the 7-bit slave address of the following calls.
    ///
    /// # Errors
    /// The address is invalid or the device refused it.
    fn set_address(&mut self, address: u8) -> Result<(), I2cBusError>;
    /// START, address + write, `bytes`, STOP. Returns the bytes written.
    ///
    /// # Errors
    /// The transfer failed.
    fn write(&mut self, bytes: &[u8]) -> Result<usize, I2cBusError>;
    /// START, address + read, fills `buffer`, STOP. Returns the bytes read.
    ///
    /// # Errors
    /// The transfer failed.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, I2cBusError>;
    /// START, address + write, `bytes`, repeated START, address + read, fills `buffer`, STOP.
    ///
    /// # Errors
    /// The transfer failed.
    fn write_read(&mut self, bytes: &[u8], buffer: &mut [u8]) -> Result<(), I2cBusError>;
}

/// An embedded-hal I2C bus over a [`RawI2c`] that keeps repeated starts (see the module docs).
#[derive(Debug)]
pub struct RepeatedStartI2c<B> {
    raw: B,
    /// The slave address last selected, so a poll does not repeat the ioctl for each call.
    address: Option<u8>,
}

impl<B: RawI2c> RepeatedStartI2c<B> {
    /// Wraps a raw bus.
    pub fn new(raw: B) -> Self {
        Self { raw, address: None }
    }

    /// The raw bus (tests look at what it was asked to do).
    pub fn raw(&self) -> &B {
        &self.raw
    }

    fn select(&mut self, address: u8) -> Result<(), I2cBusError> {
        if self.address != Some(address) {
            // Forget the old address first: if selecting fails, the next call must retry.
            self.address = None;
            self.raw.set_address(address)?;
            self.address = Some(address);
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), I2cBusError> {
        let written = self.raw.write(bytes)?;
        if written != bytes.len() {
            return Err(I2cBusError::new(
                ErrorKind::Other,
                format!("short write: {written} of {} bytes", bytes.len()),
            ));
        }
        Ok(())
    }

    fn read_all(&mut self, buffer: &mut [u8]) -> Result<(), I2cBusError> {
        let read = self.raw.read(buffer)?;
        if read != buffer.len() {
            return Err(I2cBusError::new(
                ErrorKind::Other,
                format!("short read: {read} of {} bytes", buffer.len()),
            ));
        }
        Ok(())
    }
}

/// One run of adjacent operations of the same kind: `operations[start..end]`.
#[derive(Clone, Copy)]
struct Segment {
    write: bool,
    start: usize,
    end: usize,
}

/// Splits the operations into runs of the same kind.
fn segments(operations: &[Operation<'_>]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        let write = matches!(operation, Operation::Write(_));
        match segments.last_mut() {
            Some(last) if last.write == write => last.end = index + 1,
            _ => segments.push(Segment {
                write,
                start: index,
                end: index + 1,
            }),
        }
    }
    segments
}

/// The bytes of the write operations of `segment`, joined.
fn joined_writes(operations: &[Operation<'_>], segment: Segment) -> Vec<u8> {
    let mut bytes = Vec::new();
    for operation in &operations[segment.start..segment.end] {
        if let Operation::Write(part) = operation {
            bytes.extend_from_slice(part);
        }
    }
    bytes
}

/// The total length of the read operations of `segment`.
fn read_length(operations: &[Operation<'_>], segment: Segment) -> usize {
    operations[segment.start..segment.end]
        .iter()
        .map(|operation| match operation {
            Operation::Read(buffer) => buffer.len(),
            Operation::Write(_) => 0,
        })
        .sum()
}

/// Copies `bytes` into the read operations of `segment`, in order.
fn scatter(operations: &mut [Operation<'_>], segment: Segment, bytes: &[u8]) {
    let mut offset = 0;
    for operation in &mut operations[segment.start..segment.end] {
        if let Operation::Read(buffer) = operation {
            let length = buffer.len();
            buffer.copy_from_slice(&bytes[offset..offset + length]);
            offset += length;
        }
    }
}

impl<B> ErrorType for RepeatedStartI2c<B> {
    type Error = I2cBusError;
}

impl<B: RawI2c> I2c for RepeatedStartI2c<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.select(address)?;
        let segments = segments(operations);
        let mut index = 0;
        while index < segments.len() {
            let segment = segments[index];
            match (segment.write, segments.get(index + 1)) {
                (true, Some(&next)) => {
                    // A write and the read after it: one transfer with a repeated start.
                    let bytes = joined_writes(operations, segment);
                    let mut buffer = vec![0; read_length(operations, next)];
                    self.raw.write_read(&bytes, &mut buffer)?;
                    scatter(operations, next, &buffer);
                    index += 2;
                }
                (true, None) => {
                    let bytes = joined_writes(operations, segment);
                    self.write_all(&bytes)?;
                    index += 1;
                }
                (false, _) => {
                    let mut buffer = vec![0; read_length(operations, segment)];
                    self.read_all(&mut buffer)?;
                    scatter(operations, segment, &buffer);
                    index += 1;
                }
            }
        }
        Ok(())
    }
}

/// One I2C bus shared by several sensor drivers, each of which wants to own its bus.
///
/// Cloning gives another handle on the same bus; each transaction holds the lock, so
/// transactions of different sensors never interleave.
#[derive(Debug)]
pub struct SharedBus<B> {
    bus: Arc<Mutex<B>>,
}

impl<B> SharedBus<B> {
    /// Shares `bus`.
    pub fn new(bus: B) -> Self {
        Self {
            bus: Arc::new(Mutex::new(bus)),
        }
    }
}

impl<B> Clone for SharedBus<B> {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
        }
    }
}

impl<B: ErrorType> ErrorType for SharedBus<B> {
    type Error = B::Error;
}

impl<B: I2c> I2c for SharedBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        // A driver that panicked mid-transaction left the bus in no worse a state than a
        // failed transfer: keep using it.
        let mut bus = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        bus.transaction(address, operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fake bus was asked to do.
    #[derive(Debug, PartialEq, Eq)]
    enum Call {
        Address(u8),
        Write(Vec<u8>),
        Read(usize),
        WriteRead(Vec<u8>, usize),
    }

    /// A raw bus that records calls and answers reads with 1, 2, 3, …
    #[derive(Debug, Default)]
    struct FakeRaw {
        calls: Vec<Call>,
        short_reads: bool,
        fail_address: bool,
    }

    impl FakeRaw {
        fn fill(buffer: &mut [u8]) {
            for (i, byte) in buffer.iter_mut().enumerate() {
                *byte = i as u8 + 1;
            }
        }
    }

    impl RawI2c for FakeRaw {
        fn set_address(&mut self, address: u8) -> Result<(), I2cBusError> {
            self.calls.push(Call::Address(address));
            if self.fail_address {
                return Err(I2cBusError::new(ErrorKind::Other, "Invalid argument"));
            }
            Ok(())
        }
        fn write(&mut self, bytes: &[u8]) -> Result<usize, I2cBusError> {
            self.calls.push(Call::Write(bytes.to_vec()));
            Ok(bytes.len())
        }
        fn read(&mut self, buffer: &mut [u8]) -> Result<usize, I2cBusError> {
            self.calls.push(Call::Read(buffer.len()));
            Self::fill(buffer);
            Ok(if self.short_reads {
                buffer.len() - 1
            } else {
                buffer.len()
            })
        }
        fn write_read(&mut self, bytes: &[u8], buffer: &mut [u8]) -> Result<(), I2cBusError> {
            self.calls
                .push(Call::WriteRead(bytes.to_vec(), buffer.len()));
            Self::fill(buffer);
            Ok(())
        }
    }

    #[test]
    fn write_then_read_is_one_repeated_start_transfer() {
        let mut bus = RepeatedStartI2c::new(FakeRaw::default());
        let mut data = [0u8; 3];
        bus.write_read(0x76, &[0xF7], &mut data).unwrap();
        assert_eq!(data, [1, 2, 3]);
        let mut status = [0u8; 2];
        bus.transaction(
            0x76,
            &mut [
                Operation::Write(&[0xF3, 0x2D]),
                Operation::Read(&mut status),
            ],
        )
        .unwrap();
        assert_eq!(status, [1, 2]);
        assert_eq!(
            bus.raw().calls,
            [
                Call::Address(0x76),
                Call::WriteRead(vec![0xF7], 3),
                Call::WriteRead(vec![0xF3, 0x2D], 2),
            ],
            "the address is selected once; both pairs keep a repeated start"
        );
    }

    #[test]
    fn adjacent_operations_merge_and_reads_are_split_back() {
        let mut bus = RepeatedStartI2c::new(FakeRaw::default());
        let (mut a, mut b, mut c) = ([0u8; 2], [0u8; 3], [0u8; 1]);
        bus.transaction(
            0x44,
            &mut [
                Operation::Write(&[1]),
                Operation::Write(&[2, 3]),
                Operation::Read(&mut a),
                Operation::Read(&mut b),
                Operation::Write(&[9]),
                Operation::Read(&mut c),
            ],
        )
        .unwrap();
        assert_eq!((a, b, c), ([1, 2], [3, 4, 5], [1]));
        assert_eq!(
            bus.raw().calls,
            [
                Call::Address(0x44),
                Call::WriteRead(vec![1, 2, 3], 5),
                Call::WriteRead(vec![9], 1),
            ]
        );
    }

    #[test]
    fn lone_writes_and_reads_go_alone() {
        let mut bus = RepeatedStartI2c::new(FakeRaw::default());
        bus.write(0x44, &[0x30, 0xA2]).unwrap();
        let mut data = [0u8; 2];
        bus.read(0x45, &mut data).unwrap();
        let mut tail = [0u8; 1];
        bus.transaction(
            0x45,
            &mut [Operation::Read(&mut tail), Operation::Write(&[7])],
        )
        .unwrap();
        assert_eq!(
            bus.raw().calls,
            [
                Call::Address(0x44),
                Call::Write(vec![0x30, 0xA2]),
                Call::Address(0x45),
                Call::Read(2),
                Call::Read(1),
                Call::Write(vec![7]),
            ]
        );
    }

    #[test]
    fn short_reads_and_address_failures_are_errors() {
        let mut bus = RepeatedStartI2c::new(FakeRaw {
            short_reads: true,
            ..FakeRaw::default()
        });
        let mut data = [0u8; 4];
        let error = bus.read(0x76, &mut data).unwrap_err();
        assert_eq!(error.to_string(), "short read: 3 of 4 bytes");

        let mut bus = RepeatedStartI2c::new(FakeRaw {
            fail_address: true,
            ..FakeRaw::default()
        });
        assert!(bus.write(0x76, &[1]).is_err());
        assert!(bus.write(0x76, &[1]).is_err());
        assert_eq!(
            bus.raw().calls,
            [Call::Address(0x76), Call::Address(0x76)],
            "a failed selection is retried, and nothing is sent to an unselected device"
        );
    }

    #[test]
    fn os_errors_are_classified() {
        let nack = I2cBusError::from_io(&std::io::Error::from_raw_os_error(121));
        assert_eq!(
            nack.kind,
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)
        );
        assert_eq!(nack.message, "Remote I/O error");
        let lost = I2cBusError::from_io(&std::io::Error::from_raw_os_error(11));
        assert_eq!(lost.kind, ErrorKind::ArbitrationLoss);
    }

    #[test]
    fn shared_handles_use_one_bus() {
        let shared = SharedBus::new(RepeatedStartI2c::new(FakeRaw::default()));
        let mut a = shared.clone();
        let mut b = shared.clone();
        a.write(0x76, &[1]).unwrap();
        b.write(0x44, &[2]).unwrap();
        let calls = &shared.bus.lock().unwrap().raw.calls;
        assert_eq!(calls.len(), 4);
    }
}
