//! Request planning: the register map of one device → as few read requests as possible.
//!
//! Entries of the same table (coils, discrete inputs, holding or input registers) whose
//! addresses touch or overlap are read by one request, up to the protocol's limits (125
//! registers or 2000 bits per request, lower with `max_registers` / `max_coils` for devices
//! that accept less). With `max_gap = n`, up to `n` unmapped addresses between two entries are
//! read too rather than starting a new request; the default 0 never reads an address the map
//! does not name, because some devices answer "illegal data address" for holes.

use serde::Deserialize;

/// The four Modbus data tables (the `kind` of a register entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Read/write bits (function 1).
    #[serde(alias = "coils")]
    Coil,
    /// Read-only bits (function 2).
    #[serde(alias = "discrete_inputs", alias = "discrete")]
    DiscreteInput,
    /// Read/write registers (function 3).
    #[serde(alias = "holding_register", alias = "holding_registers")]
    Holding,
    /// Read-only registers (function 4).
    #[serde(alias = "input_register", alias = "input_registers")]
    Input,
}

impl Table {
    /// The name as written in a query file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Coil => "coil",
            Self::DiscreteInput => "discrete_input",
            Self::Holding => "holding",
            Self::Input => "input",
        }
    }

    /// True for the bit tables (coils, discrete inputs).
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coil | Self::DiscreteInput)
    }
}

/// The addresses one map entry reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Which table.
    pub table: Table,
    /// First address (0-based protocol address).
    pub address: u16,
    /// Registers or bits (1 or 2).
    pub count: u16,
}

impl Span {
    /// One past the last address, as u32 so that address 65535 + 1 does not overflow.
    fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.count)
    }
}

/// One read request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Which table.
    pub table: Table,
    /// First address.
    pub address: u16,
    /// Registers or bits to read.
    pub count: u16,
}

/// Where an entry's value lies: request index and position inside that request's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Index into the requests.
    pub request: usize,
    /// Offset of the entry's first register or bit in the response.
    pub offset: u16,
}

/// Request limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most registers in one request (protocol maximum 125).
    pub registers: u16,
    /// Most coils or discrete inputs in one request (protocol maximum 2000).
    pub bits: u16,
    /// Unmapped addresses a request may read to join two entries.
    pub gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            registers: 125,
            bits: 2000,
            gap: 0,
        }
    }
}

/// The requests reading every span, and each span's location, in the order of `spans`.
///
/// Requests come sorted by table and address. Every span must fit one request (`count` ≤ the
/// table's limit), which option checking guarantees.
pub fn coalesce(spans: &[Span], limits: Limits) -> (Vec<Request>, Vec<Location>) {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].table, spans[i].address, spans[i].count));
    let mut requests: Vec<Request> = Vec::new();
    let mut locations = vec![
        Location {
            request: 0,
            offset: 0
        };
        spans.len()
    ];
    // The request being grown: its table, first address and end (exclusive).
    let mut current: Option<(Table, u16, u32)> = None;
    for index in order {
        let span = spans[index];
        let limit = u32::from(if span.table.is_bits() {
            limits.bits
        } else {
            limits.registers
        });
        let joins = match current {
            Some((table, start, end)) => {
                table == span.table
                    && u32::from(span.address) <= end + u32::from(limits.gap)
                    && span.end().max(end) - u32::from(start) <= limit
            }
            None => false,
        };
        if joins {
            let (table, start, end) = current.expect("joins only with a current request");
            let end = end.max(span.end());
            current = Some((table, start, end));
            let last = requests.last_mut().expect("a current request was pushed");
            last.count = (end - u32::from(start)) as u16;
            locations[index] = Location {
                request: requests.len() - 1,
                offset: span.address - start,
            };
        } else {
            requests.push(Request {
                table: span.table,
                address: span.address,
                count: span.count,
            });
            current = Some((span.table, span.address, span.end()));
            locations[index] = Location {
                request: requests.len() - 1,
                offset: 0,
            };
        }
    }
    (requests, locations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(table: Table, address: u16, count: u16) -> Span {
        Span {
            table,
            address,
            count,
        }
    }

    fn request(table: Table, address: u16, count: u16) -> Request {
        Request {
            table,
            address,
            count,
        }
    }

    #[test]
    fn contiguous_and_overlapping_entries_share_a_request() {
        use Table::Holding;
        // f32 at 100, u16 at 102, u32 at 103; an i16 at 101 overlaps the f32.
        let spans = [
            span(Holding, 103, 2),
            span(Holding, 100, 2),
            span(Holding, 102, 1),
            span(Holding, 101, 1),
        ];
        let (requests, locations) = coalesce(&spans, Limits::default());
        assert_eq!(requests, [request(Holding, 100, 5)]);
        let offsets: Vec<u16> = locations.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, [3, 0, 2, 1]);
        assert!(locations.iter().all(|l| l.request == 0));
    }

    #[test]
    fn gaps_and_tables_split_requests() {
        use Table::{Coil, Holding, Input};
        let spans = [
            span(Holding, 0, 1),
            span(Holding, 2, 1),
            span(Input, 1, 1),
            span(Coil, 0, 1),
            span(Coil, 1, 1),
        ];
        let (requests, locations) = coalesce(&spans, Limits::default());
        assert_eq!(
            requests,
            [
                request(Coil, 0, 2),
                request(Holding, 0, 1),
                request(Holding, 2, 1),
                request(Input, 1, 1),
            ]
        );
        assert_eq!(
            locations[1],
            Location {
                request: 2,
                offset: 0
            }
        );
        assert_eq!(
            locations[4],
            Location {
                request: 0,
                offset: 1
            }
        );

        // max_gap = 1 reads the hole at 1 to join them.
        let with_gap = Limits {
            gap: 1,
            ..Limits::default()
        };
        let (requests, locations) = coalesce(&spans[..2], with_gap);
        assert_eq!(requests, [request(Holding, 0, 3)]);
        assert_eq!(
            locations[1],
            Location {
                request: 0,
                offset: 2
            }
        );
    }

    #[test]
    fn requests_respect_the_register_and_coil_limits() {
        // 300 contiguous u16 registers: 125 + 125 + 50.
        let spans: Vec<Span> = (0..300).map(|a| span(Table::Input, a, 1)).collect();
        let (requests, locations) = coalesce(&spans, Limits::default());
        assert_eq!(
            requests,
            [
                request(Table::Input, 0, 125),
                request(Table::Input, 125, 125),
                request(Table::Input, 250, 50),
            ]
        );
        assert_eq!(
            locations[130],
            Location {
                request: 1,
                offset: 5
            }
        );

        // A two-register value never straddles a request boundary.
        let spans: Vec<Span> = (0..63).map(|i| span(Table::Holding, i * 2, 2)).collect();
        let (requests, _) = coalesce(&spans, Limits::default());
        assert_eq!(
            requests,
            [
                request(Table::Holding, 0, 124),
                request(Table::Holding, 124, 2)
            ]
        );

        let coils: Vec<Span> = (0..4500).map(|a| span(Table::Coil, a, 1)).collect();
        let (requests, _) = coalesce(&coils, Limits::default());
        let counts: Vec<u16> = requests.iter().map(|r| r.count).collect();
        assert_eq!(counts, [2000, 2000, 500]);

        let small = Limits {
            registers: 4,
            ..Limits::default()
        };
        let spans: Vec<Span> = (0..10).map(|a| span(Table::Holding, a, 1)).collect();
        let (requests, _) = coalesce(&spans, small);
        let counts: Vec<u16> = requests.iter().map(|r| r.count).collect();
        assert_eq!(counts, [4, 4, 2]);
    }

    #[test]
    fn the_last_address_does_not_overflow() {
        let spans = [
            span(Table::Holding, 65534, 2),
            span(Table::Holding, 65535, 1),
        ];
        let (requests, locations) = coalesce(&spans, Limits::default());
        assert_eq!(requests, [request(Table::Holding, 65534, 2)]);
        assert_eq!(locations[1].offset, 1);
        assert!(coalesce(&[], Limits::default()).0.is_empty());
    }
}
