//! File descriptors for every connection the APIs may hold, arranged once at start.
//!
//! Two things would otherwise bite during the first rollout, when thousands of Initializers
//! connect within seconds:
//! - **The soft `RLIMIT_NOFILE`** is often 1024 (systemd's default), below what the two APIs
//!   accept at once ([`crate::server::MAX_CONNECTIONS`] each): accepts would fail with EMFILE.
//!   Like Go's runtime, the Coordinator raises the soft limit towards the hard one (never above
//!   it, never lower than it was).
//! - **Growing the descriptor table** of a multi-threaded process waits for an RCU grace period
//!   (`expand_files` calls `synchronize_rcu`), and every thread that opens or accepts a socket
//!   meanwhile waits with it. Linux grows the table to the next power of two that holds the new
//!   descriptor (64, 128, 256 ... entries), so a burst of connections stalls the whole
//!   Coordinator several times: measured 10-20 ms per growth on a 2-vCPU VM, both cores idle.
//!   The table never shrinks, so growing it once at start (a descriptor duplicated to the highest
//!   number needed, then closed) removes those stalls. The table then holds the next power of
//!   two (16384 entries for the 8448 descriptors both APIs may need).
//!
//! The raised soft limit is the process's: child processes started later inherit it.

use std::os::fd::AsFd;

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The soft descriptor limit before, `None` for unlimited.
    pub limit_before: Option<u64>,
    /// The soft descriptor limit now.
    pub limit: Option<u64>,
    /// Descriptors the table holds without growing (`FDSize` in `/proc/self/status`), if known.
    pub table: Option<u64>,
}

/// Why [`prepare`] could not do part of it; the Coordinator runs on regardless.
#[derive(Debug, thiserror::Error)]
pub enum FdError {
    #[error("raising the soft descriptor limit from {from} to {to}: {source}")]
    Limit {
        from: u64,
        to: u64,
        source: std::io::Error,
    },
    #[error("growing the descriptor table to {want} entries: {source}")]
    Table { want: u64, source: std::io::Error },
}

/// The soft limit to set so that `want` descriptors fit: `None` if the current one does.
/// Never above the hard limit, never below the current soft limit (`None` = unlimited).
pub fn soft_limit_for(want: u64, soft: Option<u64>, hard: Option<u64>) -> Option<u64> {
    let soft = soft?;
    if soft >= want {
        return None;
    }
    let target = hard.map_or(want, |h| want.min(h));
    (target > soft).then_some(target)
}

/// Raises the soft descriptor limit so that `want` descriptors fit (as far as the hard limit
/// allows), then grows the descriptor table to hold as many as the limit allows, using `probe`
/// (any open descriptor) to reach the highest number. Best effort: the result says what was
/// done, the errors what was not (a failed raise still grows the table to the old limit).
pub fn prepare(want: u64, probe: impl AsFd) -> (Prepared, Vec<FdError>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut errors = Vec::new();
    let before = getrlimit(Resource::Nofile);
    let mut limit = before.current;
    if let (Some(to), Some(from)) = (soft_limit_for(want, before.current, before.maximum), limit) {
        let raised = rustix::process::Rlimit {
            current: Some(to),
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = Some(to),
            Err(e) => errors.push(FdError::Limit {
                from,
                to,
                source: e.into(),
            }),
        }
    }
    // As many descriptors as the limit lets us need; a table that holds them already (an
    // earlier start in this process) is left alone.
    let needed = limit.map_or(want, |l| want.min(l));
    if table_size().is_none_or(|t| t < needed) {
        let min = i32::try_from(needed.saturating_sub(1)).unwrap_or(i32::MAX);
        match rustix::io::fcntl_dupfd_cloexec(probe, min) {
            Ok(dup) => drop(dup),
            Err(e) => errors.push(FdError::Table {
                want: needed,
                source: e.into(),
            }),
        }
    }
    let prepared = Prepared {
        limit_before: before.current,
        limit,
        table: table_size(),
    };
    (prepared, errors)
}

/// `FDSize` of `/proc/self/status`: how many descriptors the table holds now.
pub fn table_size() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_rises_towards_the_hard_limit_only() {
        // Enough already, or unlimited: nothing to do.
        assert_eq!(soft_limit_for(8448, Some(20000), Some(20000)), None);
        assert_eq!(soft_limit_for(8448, None, None), None);
        // systemd's 1024 with a high hard limit: raised to what is needed, not to the hard limit.
        assert_eq!(soft_limit_for(8448, Some(1024), Some(524288)), Some(8448));
        assert_eq!(soft_limit_for(8448, Some(1024), None), Some(8448));
        // A low hard limit caps it; at the hard limit already, nothing to do.
        assert_eq!(soft_limit_for(8448, Some(1024), Some(4096)), Some(4096));
        assert_eq!(soft_limit_for(8448, Some(4096), Some(4096)), None);
    }

    /// The table part (the limit part needs a process whose soft limit is low: its rule is
    /// `soft_limit_for`, tested above). Other tests of this binary may open descriptors
    /// meanwhile; the table only grows, so the checks hold regardless.
    #[test]
    fn the_table_is_grown_to_hold_what_the_limit_allows() {
        let probe = std::fs::File::open("/proc/self/status").unwrap();
        let want = table_size().unwrap() * 4 + 100;
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let want = limit.map_or(want, |l| want.min(l));
        let (done, errors) = prepare(want, &probe);
        assert!(errors.is_empty(), "{errors:?}");
        let table = done.table.unwrap();
        assert!(table >= want, "table of {table} entries, wanted {want}");
        // The duplicate is closed again, the table keeps its size, and a second call has
        // nothing to do.
        assert!(table_size().unwrap() >= table);
        let (again, errors) = prepare(want, &probe);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(again.limit, done.limit);
    }
}
