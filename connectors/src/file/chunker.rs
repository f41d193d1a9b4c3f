//! Cuts a text file into chunks of whole records, remembering where each record starts and on
//! which line.
//!
//! A record is one line, except in CSV, where a quoted field may hold line breaks: a search
//! over the line's quote bytes (the same rules as the CSV parser: a quote opens a quoted field
//! only at the start of a field, `""` inside one is an escaped quote) tells when a line break
//! ends the record. A record that would run past [`MAX_RECORD_LINES`] lines, usually because
//! of a stray quote, is cut there so one bad line cannot swallow the rest of the file. Blank
//! lines are skipped. Every record in a chunk ends with `\n`, so decoders never wait for more
//! input.

use std::io::{self, BufRead};

/// Longest record, in lines, before the chunker cuts it.
pub(crate) const MAX_RECORD_LINES: usize = 1_000;

/// Whole records of one file, with their positions.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// The records' bytes, each ending with `\n`.
    pub data: Vec<u8>,
    /// Byte offset of each record's start, plus one past the end: `records() + 1` entries.
    pub starts: Vec<usize>,
    /// The 1-based line number each record starts on.
    pub lines: Vec<u64>,
}

impl Chunk {
    /// The number of records.
    pub(crate) fn records(&self) -> usize {
        self.lines.len()
    }

    /// The bytes of records `from..to`.
    pub(crate) fn bytes(&self, from: usize, to: usize) -> &[u8] {
        &self.data[self.starts[from]..self.starts[to]]
    }
}

/// Reads records from a buffered reader.
pub(crate) struct Chunker<R> {
    reader: R,
    /// CSV quoting (quote byte, delimiter), or `None` for one record per line.
    csv: Option<(u8, u8)>,
    /// Lines read so far.
    line: u64,
}

impl<R: BufRead> Chunker<R> {
    /// One record per line (JSON lines).
    pub(crate) fn lines(reader: R) -> Self {
        Self {
            reader,
            csv: None,
            line: 0,
        }
    }

    /// CSV records: quoted fields may span lines.
    pub(crate) fn csv(reader: R, quote: u8, delimiter: u8) -> Self {
        Self {
            reader,
            csv: Some((quote, delimiter)),
            line: 0,
        }
    }

    /// Appends the next record to `out` (ending with `\n`) and returns its first line number,
    /// or `None` at the end of the input.
    pub(crate) fn next_record(&mut self, out: &mut Vec<u8>) -> io::Result<Option<u64>> {
        let start = out.len();
        let mut in_quotes = false;
        let mut first_line = None;
        let mut lines_in_record = 0;
        loop {
            let line_start = out.len();
            let read = self.reader.read_until(b'\n', out)?;
            if read == 0 {
                // End of input; a record cut short by it keeps what it has.
                return Ok(first_line.inspect(|_| {
                    if out.last() != Some(&b'\n') {
                        out.push(b'\n');
                    }
                }));
            }
            self.line += 1;
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            if first_line.is_none() && out[line_start..].iter().all(u8::is_ascii_whitespace) {
                out.truncate(start);
                continue;
            }
            first_line.get_or_insert(self.line);
            lines_in_record += 1;
            let Some((quote, delimiter)) = self.csv else {
                return Ok(first_line);
            };
            let line = &out[line_start..];
            if in_quotes || line.contains(&quote) {
                in_quotes = ends_quoted(line, in_quotes, quote, delimiter);
            }
            if !in_quotes || lines_in_record >= MAX_RECORD_LINES {
                return Ok(first_line);
            }
        }
    }

    /// Reads up to `max_records` records; `None` at the end of the input.
    pub(crate) fn next_chunk(&mut self, max_records: usize) -> io::Result<Option<Chunk>> {
        let mut chunk = Chunk {
            data: Vec::with_capacity(max_records * 64),
            starts: Vec::with_capacity(max_records + 1),
            lines: Vec::with_capacity(max_records),
        };
        while chunk.lines.len() < max_records {
            self.take_whole_lines(&mut chunk, max_records)?;
            if chunk.lines.len() >= max_records {
                break;
            }
            // The buffer ends inside a line, or a quoted field runs past the line: one record
            // the careful way.
            let start = chunk.data.len();
            match self.next_record(&mut chunk.data)? {
                Some(line) => {
                    chunk.starts.push(start);
                    chunk.lines.push(line);
                }
                None => break,
            }
        }
        if chunk.lines.is_empty() {
            return Ok(None);
        }
        chunk.starts.push(chunk.data.len());
        Ok(Some(chunk))
    }

    /// The fast path of [`Self::next_chunk`]: takes the records that are each one whole line
    /// of the reader's current buffer, skipping blank lines, until `max_records` or until a
    /// line that is not complete in the buffer or opens a quoted field that runs past it.
    /// Line breaks and quotes are found with `memchr`, and the lines are copied in one go.
    fn take_whole_lines(&mut self, chunk: &mut Chunk, max_records: usize) -> io::Result<()> {
        let buffer = self.reader.fill_buf()?;
        let taken = match self.csv {
            Some((quote, delimiter)) => take_lines(
                buffer,
                memchr::memchr2_iter(b'\n', quote, buffer),
                Some((quote, delimiter)),
                &mut self.line,
                chunk,
                max_records,
            ),
            None => take_lines(
                buffer,
                memchr::memchr_iter(b'\n', buffer),
                None,
                &mut self.line,
                chunk,
                max_records,
            ),
        };
        self.reader.consume(taken);
        Ok(())
    }
}

/// [`Chunker::take_whole_lines`] over `buffer`, given the positions of its line breaks (and,
/// in CSV, quotes) in order; counts lines into `line` and returns how many bytes it took.
/// The quote rules are those of [`ends_quoted`], applied as the quotes go by.
fn take_lines(
    buffer: &[u8],
    events: impl Iterator<Item = usize>,
    csv: Option<(u8, u8)>,
    line: &mut u64,
    chunk: &mut Chunk,
    max_records: usize,
) -> usize {
    // `buffer[copied..line_start]` is taken but not yet copied into the chunk.
    let (mut line_start, mut copied) = (0, 0);
    let mut in_quotes = false;
    // The second quote of an escaped `""`, which is not seen on its own.
    let mut escaped = usize::MAX;
    for at in events {
        if buffer[at] != b'\n' {
            let (quote, delimiter) = csv.expect("quotes are only searched in CSV");
            if at == escaped {
                continue;
            }
            if in_quotes {
                if buffer.get(at + 1) == Some(&quote) {
                    escaped = at + 1;
                } else {
                    in_quotes = false;
                }
            } else if at == line_start || buffer[at - 1] == delimiter {
                in_quotes = true;
            }
            continue;
        }
        // A quoted field runs past this line (left to `next_record`), or the chunk is full.
        if in_quotes || chunk.lines.len() >= max_records {
            break;
        }
        *line += 1;
        let text = &buffer[line_start..=at];
        if text[0].is_ascii_whitespace() && text.iter().all(u8::is_ascii_whitespace) {
            chunk.data.extend_from_slice(&buffer[copied..line_start]);
            copied = at + 1;
        } else {
            chunk.starts.push(chunk.data.len() + line_start - copied);
            chunk.lines.push(*line);
        }
        line_start = at + 1;
    }
    chunk.data.extend_from_slice(&buffer[copied..line_start]);
    line_start
}

/// Whether a CSV record is still inside a quoted field at the end of `line` (which ends with
/// `\n`), starting inside one if `in_quotes`. The CSV parser's rules: a quote opens a quoted
/// field only at the start of a field (line start or after a delimiter outside quotes); inside,
/// `""` is an escaped quote and a single quote closes the field; any other quote is literal.
/// Only quote bytes are visited, so unquoted text costs one fast search.
fn ends_quoted(line: &[u8], mut in_quotes: bool, quote: u8, delimiter: u8) -> bool {
    let find = |from: usize| memchr::memchr(quote, &line[from..]).map(|at| from + at);
    let mut from = 0;
    while let Some(at) = find(from) {
        if in_quotes {
            if line.get(at + 1) == Some(&quote) {
                from = at + 2;
            } else {
                in_quotes = false;
                from = at + 1;
            }
        } else {
            if at == 0 || line[at - 1] == delimiter {
                in_quotes = true;
            }
            from = at + 1;
        }
    }
    in_quotes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Scan {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
    }

    /// The CSV parser's quote handling, byte by byte: the oracle for [`ends_quoted`].
    fn scan_quotes(line: &[u8], mut state: Scan, quote: u8, delimiter: u8) -> Scan {
        for &byte in line {
            state = match state {
                Scan::FieldStart | Scan::Unquoted | Scan::AfterQuote if byte == delimiter => {
                    Scan::FieldStart
                }
                Scan::FieldStart | Scan::Unquoted | Scan::AfterQuote if byte == b'\n' => {
                    Scan::FieldStart
                }
                Scan::FieldStart if byte == quote => Scan::Quoted,
                Scan::FieldStart | Scan::Unquoted => Scan::Unquoted,
                Scan::Quoted if byte == quote => Scan::AfterQuote,
                Scan::Quoted => Scan::Quoted,
                Scan::AfterQuote if byte == quote => Scan::Quoted,
                Scan::AfterQuote => Scan::Unquoted,
            };
        }
        state
    }

    #[test]
    fn the_quote_search_agrees_with_the_state_machine() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let alphabet = [b'a', b',', b'"', b'"', b' '];
        for _ in 0..20_000 {
            let length = rng.random_range(0..12);
            let line: Vec<u8> = (0..length)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .chain([b'\n'])
                .collect();
            for start in [Scan::FieldStart, Scan::Quoted] {
                let expected = scan_quotes(&line, start, b'"', b',') == Scan::Quoted;
                let got = ends_quoted(&line, start == Scan::Quoted, b'"', b',');
                assert_eq!(
                    got,
                    expected,
                    "{:?} from {start:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }

    fn records(text: &str, csv: bool) -> Vec<(u64, String)> {
        let reader = io::Cursor::new(text.as_bytes().to_vec());
        let mut chunker = if csv {
            Chunker::csv(reader, b'"', b',')
        } else {
            Chunker::lines(reader)
        };
        let mut out = Vec::new();
        while let Some(chunk) = chunker.next_chunk(2).unwrap() {
            for i in 0..chunk.records() {
                let text = String::from_utf8(chunk.bytes(i, i + 1).to_vec()).unwrap();
                out.push((chunk.lines[i], text));
            }
        }
        out
    }

    #[test]
    fn lines_become_records_with_line_numbers() {
        let got = records("a\n\nb\r\n  \nc", false);
        assert_eq!(
            got,
            [(1, "a\n".into()), (3, "b\r\n".into()), (5, "c\n".into())]
        );
    }

    #[test]
    fn quoted_line_breaks_stay_in_one_csv_record() {
        let got = records(
            "x,\"two\nlines\",1\ny,\"say \"\"hi\"\"\",2\nz,a\"b,3\n",
            true,
        );
        assert_eq!(
            got,
            [
                (1, "x,\"two\nlines\",1\n".into()),
                (3, "y,\"say \"\"hi\"\"\",2\n".into()),
                (4, "z,a\"b,3\n".into()),
            ]
        );
    }

    #[test]
    fn a_stray_quote_is_cut_after_the_line_limit() {
        let mut text = String::from("a,\"open\n");
        for i in 0..(MAX_RECORD_LINES + 5) {
            text.push_str(&format!("{i},x\n"));
        }
        let got = records(&text, true);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1.matches('\n').count(), MAX_RECORD_LINES);
        assert_eq!(got[1].0, MAX_RECORD_LINES as u64 + 1);
        assert_eq!(got.len(), 7);
    }

    /// The fast path (whole lines of the buffer) cuts the same records as the careful one
    /// (record by record), whatever the buffer size and the chunk size.
    #[test]
    fn chunks_agree_with_record_by_record_reading() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let alphabet: &[&str] = &[
            "a", "7", ",", "\"", "\"\"", " ", "\n", "\r\n", "\n\n", "x,y",
        ];
        for round in 0..2_000 {
            let length = rng.random_range(0..40);
            let text: String = (0..length)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            for csv in [true, false] {
                let make = |reader| {
                    if csv {
                        Chunker::csv(reader, b'"', b',')
                    } else {
                        Chunker::lines(reader)
                    }
                };
                let mut careful = make(io::BufReader::with_capacity(
                    64,
                    io::Cursor::new(text.as_bytes().to_vec()),
                ));
                let mut expected = Vec::new();
                let mut record = Vec::new();
                while let Some(line) = careful.next_record(&mut record).unwrap() {
                    expected.push((line, std::mem::take(&mut record)));
                }
                let capacity = rng.random_range(1..16);
                let max_records = rng.random_range(1..5);
                let mut fast = make(io::BufReader::with_capacity(
                    capacity,
                    io::Cursor::new(text.as_bytes().to_vec()),
                ));
                let mut got = Vec::new();
                while let Some(chunk) = fast.next_chunk(max_records).unwrap() {
                    assert!(chunk.records() <= max_records);
                    for i in 0..chunk.records() {
                        got.push((chunk.lines[i], chunk.bytes(i, i + 1).to_vec()));
                    }
                }
                assert_eq!(got, expected, "round {round}, csv {csv}: {text:?}");
            }
        }
    }
}
