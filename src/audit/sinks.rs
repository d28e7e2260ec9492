//! Where the audit trail goes: stdout, an append-only file, or nowhere.
//!
//! Writing is synchronous and unbuffered: a record is on disk (the file sink
//! syncs each line) before the worker carries on. A failed write is logged
//! once per run of failures and never changes what happens to the message —
//! the logs still say everything the record would have.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::{error, info};

use super::AuditRecord;

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    /// Writes one record. Never fails the caller: a sink reports its own
    /// write errors.
    fn record(&self, rec: &AuditRecord);
}

/// Drops every record (`[audit] sink = "off"`, and the worker's default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _: &AuditRecord) {}
}

/// Reports write failures once per run of failures, and the recovery with
/// the number of records lost.
#[derive(Debug, Default)]
struct Failures {
    failing: AtomicBool,
    lost: AtomicU64,
}

impl Failures {
    fn note(&self, sink: &str, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    info!(sink, lost, "Audit records are being written again.");
                }
            }
            Err(error) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    error!(%error, sink, "Cannot write an audit record; messages are still handled, and further failures are not logged until writing recovers.");
                }
            }
        }
    }
}

/// JSON lines on stdout (logs go to stderr, so stdout is the trail's own).
#[derive(Debug, Default)]
pub struct StdoutSink {
    failures: Failures,
}

impl AuditSink for StdoutSink {
    fn record(&self, rec: &AuditRecord) {
        let line = rec.to_line();
        let mut out = std::io::stdout().lock();
        let result = out.write_all(&line).and_then(|()| out.flush());
        self.failures.note("stdout", result);
    }
}

/// An append-only JSON-lines file. Each record is one `write` of a whole
/// line (so concurrent messages never interleave within a line), synced
/// to disk before the worker goes on.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
    failures: Failures,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending. The directory must
    /// exist: a missing one is a configuration error, found at start-up.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failures: Failures::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn record(&self, rec: &AuditRecord) {
        let line = rec.to_line();
        let result = {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line).and_then(|()| file.sync_data())
        };
        self.failures.note("file", result);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::outcome::Outcome;
    use serde_json::Value;

    #[test]
    fn the_file_sink_appends_whole_lines_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let e = event();
        let r = report(Outcome::Done);
        for id in ["a", "b"] {
            let sink = FileSink::open(&path).expect("opens");
            sink.record(&AuditRecord::action(time(), id, &e, "v1", false, &r));
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["sqs_message_id"].to_string())
            .collect();
        assert_eq!(ids, vec!["\"a\"", "\"b\""], "appended, not truncated");
    }

    #[test]
    fn an_unopenable_file_is_an_error_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir").join("audit.jsonl");
        assert!(FileSink::open(&missing).is_err());
    }

    #[test]
    fn write_failures_are_reported_once_per_burst() {
        let f = Failures::default();
        let err = || Err(std::io::Error::other("disk full"));
        f.note("file", err());
        f.note("file", err());
        assert!(f.failing.load(Ordering::Relaxed));
        assert_eq!(f.lost.load(Ordering::Relaxed), 2);
        f.note("file", Ok(()));
        assert!(!f.failing.load(Ordering::Relaxed));
        assert_eq!(f.lost.load(Ordering::Relaxed), 0, "reset on recovery");
    }
}
