//! [`MemoryBudget`]: the pipeline's limit on operator state (`[pipeline] memory_limit`), and
//! the running total that every stateful operator reports into.
//!
//! Operators estimate their own state (groups held × the bytes one group takes) and report
//! changes with [`MemoryBudget::adjust`]. When the total passes the limit, an operator that
//! sees [`MemoryBudget::exceeded`] sheds state by its documented policy (the `window` operator
//! emits its oldest window early) until the total is back under it. The estimate counts the
//! state operators hold, not the batches in flight or the allocator's overhead.

use std::sync::atomic::{AtomicU64, Ordering};

/// A pipeline-wide state budget in bytes, shared by every operator on every worker.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    limit: Option<u64>,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`None`: no limit, only accounting).
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The limit in bytes, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Estimated bytes of state held now, over every operator.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Records that an operator's state went from `before` to `after` bytes.
    pub fn adjust(&self, before: u64, after: u64) {
        if after >= before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Whether the state held is over the limit.
    pub fn exceeded(&self) -> bool {
        self.limit.is_some_and(|limit| self.used() > limit)
    }
}

/// Parses a byte size such as `"64MB"`, `"512 KiB"` or `"1GB"` (SI and binary units).
///
/// # Errors
/// A message quoting the text.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("invalid size '{text}' (try \"64MB\", \"512KiB\" or \"1GB\")"))
}

/// Formats a byte count for people, such as `"1.5 MiB"`.
pub fn format_bytes(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_tracks_and_limits() {
        let budget = MemoryBudget::new(Some(100));
        budget.adjust(0, 80);
        assert!(!budget.exceeded());
        budget.adjust(0, 30);
        assert!(budget.exceeded());
        budget.adjust(80, 50);
        assert_eq!(budget.used(), 80);
        assert!(!budget.exceeded());
        assert!(!MemoryBudget::new(None).exceeded());
    }

    #[test]
    fn sizes_parse_in_si_and_binary_units() {
        assert_eq!(parse_bytes("64MB"), Ok(64_000_000));
        assert_eq!(parse_bytes("64 MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("lots").unwrap_err().contains("'lots'"));
    }
}
