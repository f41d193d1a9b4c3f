//! The collector's counters: segments stored and acked as duplicates, rows and bytes
//! received, requests rejected and TLS connections refused, each by reason.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the service, the accept loop and the summary logger.
#[derive(Debug, Default)]
pub struct CollectorStats {
    segments: AtomicU64,
    duplicates: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Segments written (not counting duplicates).
    pub segments: u64,
    /// Segments acked as duplicates of earlier sends.
    pub duplicates: u64,
    /// Rows written.
    pub rows: u64,
    /// Arrow IPC bytes received in `DoPut` bodies (duplicates included).
    pub bytes: u64,
    /// Requests answered with an error, by reason (`bad descriptor`, `bad data`, ...).
    pub rejected: BTreeMap<&'static str, u64>,
    /// TLS connections refused, by reason (`no client certificate`, ...).
    pub refused: BTreeMap<&'static str, u64>,
}

impl CollectorStats {
    /// Counts a segment written with `rows` rows.
    pub fn count_stored(&self, rows: u64) {
        self.segments.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// Counts a segment acked as a duplicate.
    pub fn count_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts received bytes.
    pub fn count_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a rejected request; returns the total for that reason.
    pub fn count_rejected(&self, reason: &'static str) -> u64 {
        bump(&self.rejected, reason)
    }

    /// Counts a refused TLS connection; returns the total for that reason.
    pub fn count_refusal(&self, reason: &'static str) -> u64 {
        bump(&self.refused, reason)
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            segments: self.segments.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            refused: self
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, reason: &'static str) -> u64 {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let count = map.entry(reason).or_default();
    *count += 1;
    *count
}

impl StatsSnapshot {
    /// `reason=count` pairs, or `none`.
    pub fn format_reasons(reasons: &BTreeMap<&'static str, u64>) -> String {
        if reasons.is_empty() {
            return "none".to_owned();
        }
        let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}={n}")).collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let stats = CollectorStats::default();
        stats.count_stored(10);
        stats.count_duplicate();
        assert_eq!(stats.count_refusal("expired certificate"), 1);
        assert_eq!(stats.count_refusal("expired certificate"), 2);
        let snapshot = stats.snapshot();
        assert_eq!(
            (snapshot.segments, snapshot.rows, snapshot.duplicates),
            (1, 10, 1)
        );
        assert_eq!(
            StatsSnapshot::format_reasons(&snapshot.refused),
            "expired certificate=2"
        );
        assert_eq!(StatsSnapshot::format_reasons(&snapshot.rejected), "none");
    }
}
