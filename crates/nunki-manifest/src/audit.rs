//! The audit log: one record per accepted or refused `SetManifest` and `Recover`, kept by the
//! Coordinator beside the manifest history and printed by `nunki verify --log`.
//!
//! Records are JSON ([`AuditRecord`], strict: unknown fields are errors) and form a hash chain:
//! each names the SHA-256 of the exact bytes of the record before it (`Previous`, 64 zeros for
//! the first) and carries its position (`Index`, from 0). The Coordinator signs the newest
//! record's hash with its history key when it has that key, so a reader who trusts the
//! Coordinator's history key (`nunki verify` receives it over attested TLS) can tell that no
//! record up to the signed head was altered, dropped or reordered. Records written while the
//! Coordinator is in recovery mode (no key in memory) are chained but not signed until the next
//! signed record follows them.
//!
//! Times are the Coordinator's clock (host-provided, so informative only).

use serde::{Deserialize, Serialize};

use crate::sha256;

/// Longest audit log a reader follows.
pub const MAX_AUDIT_LEN: usize = 1_000_000;
/// Largest accepted record (a refusal reason is capped well below this by the Coordinator).
pub const MAX_AUDIT_RECORD_LEN: usize = 64 * 1024;

/// Which operation a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOperation {
    /// `SetManifest` on the user API.
    SetManifest,
    /// `Recover` on the user API.
    Recover,
}

/// How the operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// Done.
    Accepted,
    /// Refused (see `Reason`).
    Refused,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub index: u64,
    /// Lower-case hex SHA-256 of the previous record's bytes (64 zeros for the first).
    pub previous: String,
    /// RFC 3339 time on the Coordinator's clock.
    pub time: String,
    /// The operation.
    pub operation: AuditOperation,
    /// Lower-case hex SHA-256 of the client key (SubjectPublicKeyInfo for workload owner keys,
    /// PKCS#1 for seed-share owner keys, as the manifest lists them); None without a client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_digest: Option<String>,
    /// The outcome.
    pub outcome: AuditOutcome,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hash of the manifest that was set (or, for a recovery, the latest manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The new latest transition (or, for a recovery, the recovered one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// For a recovery from a peer replica: the peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Refusals not recorded individually since the previous record (rate limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed_refusals: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `Previous` of the first record.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// Why an audit log does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A record is not valid JSON of the expected shape.
    #[error("audit record {position}: {reason}")]
    Malformed {
        /// Position in the list (0 = oldest).
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record does not link to the one before it.
    #[error(
        "audit record {position}: the chain is broken ({reason}); the log was altered or \
         records were removed"
    )]
    Broken {
        /// Position in the list.
        position: usize,
        /// What does not match.
        reason: String,
    },
    /// The newest record's hash is not the head the Coordinator named.
    #[error(
        "the newest audit record hashes to {actual}, but the log's head is {expected}; the \
         log is incomplete or was altered"
    )]
    WrongHead {
        /// The head named by the Coordinator.
        expected: String,
        /// The hash of the last record received.
        actual: String,
    },
}

impl AuditRecord {
    /// The record's canonical bytes (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses one record, refusing unknown fields and oversized input.
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<AuditRecord, String> {
        if bytes.len() > MAX_AUDIT_RECORD_LEN {
            return Err(format!(
                "{} bytes, more than the {MAX_AUDIT_RECORD_LEN} allowed",
                bytes.len()
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Checks a log received oldest first: every record parses, indexes count from 0, each
/// `Previous` is the hash of the record before. Returns the records with their hashes.
///
/// # Errors
/// [`AuditError`] naming the first bad record.
pub fn check_audit_chain(records: &[Vec<u8>]) -> Result<Vec<([u8; 32], AuditRecord)>, AuditError> {
    let mut out = Vec::with_capacity(records.len());
    let mut previous = AUDIT_GENESIS;
    for (position, bytes) in records.iter().enumerate() {
        let record = AuditRecord::parse(bytes)
            .map_err(|reason| AuditError::Malformed { position, reason })?;
        if record.index != position as u64 {
            return Err(AuditError::Broken {
                position,
                reason: format!("its Index is {}, expected {position}", record.index),
            });
        }
        if !record.previous.eq_ignore_ascii_case(&hex::encode(previous)) {
            return Err(AuditError::Broken {
                position,
                reason: format!(
                    "its Previous is {}, but the record before hashes to {}",
                    record.previous,
                    hex::encode(previous)
                ),
            });
        }
        previous = sha256(bytes);
        out.push((previous, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, previous: [u8; 32]) -> AuditRecord {
        AuditRecord {
            index,
            previous: hex::encode(previous),
            time: "2026-11-27T10:00:00Z".into(),
            operation: AuditOperation::SetManifest,
            client_key_digest: None,
            outcome: AuditOutcome::Accepted,
            reason: None,
            manifest: Some("ab".repeat(32)),
            transition: Some("cd".repeat(32)),
            peer: None,
            suppressed_refusals: 0,
        }
    }

    fn log(n: u64) -> Vec<Vec<u8>> {
        let mut prev = AUDIT_GENESIS;
        let mut out = Vec::new();
        for i in 0..n {
            let b = record(i, prev).to_bytes();
            prev = sha256(&b);
            out.push(b);
        }
        out
    }

    #[test]
    fn chain_checks() {
        let l = log(4);
        let checked = check_audit_chain(&l).unwrap();
        assert_eq!(checked.len(), 4);
        assert_eq!(checked[3].0, sha256(&l[3]));
        // Round trip.
        assert_eq!(AuditRecord::parse(&l[2]).unwrap(), checked[2].1);
    }

    #[test]
    fn tampering_is_named() {
        let l = log(4);
        // Dropped record.
        let mut dropped = l.clone();
        dropped.remove(1);
        assert!(matches!(
            check_audit_chain(&dropped),
            Err(AuditError::Broken { position: 1, .. })
        ));
        // Altered record: the next link breaks.
        let mut altered = l.clone();
        let mut r = AuditRecord::parse(&altered[1]).unwrap();
        r.outcome = AuditOutcome::Refused;
        altered[1] = r.to_bytes();
        assert!(matches!(
            check_audit_chain(&altered),
            Err(AuditError::Broken { position: 2, .. })
        ));
        // Unknown field.
        let mut extra = l.clone();
        let mut v: serde_json::Value = serde_json::from_slice(&extra[0]).unwrap();
        v["Extra"] = 1.into();
        extra[0] = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            check_audit_chain(&extra),
            Err(AuditError::Malformed { position: 0, .. })
        ));
        // Garbage.
        assert!(check_audit_chain(&[b"\xff".to_vec()]).is_err());
        assert!(check_audit_chain(&[vec![b' '; MAX_AUDIT_RECORD_LEN + 1]]).is_err());
    }
}
