//! Live rule reload. Wherever the rules come from, a new set is loaded
//! and validated as a whole, and only then made the live one; an invalid
//! set leaves the old rules running, its problems logged with file (or S3
//! key), line and column, and counted. A message being processed keeps the
//! rules it started with (the worker takes a snapshot per message).
//!
//! - [`source`]: where the rules come from (`[rules]` in `reflex.toml`): a
//!   local directory or an `s3://` prefix.
//! - this module: a local directory, watched with `notify`, and SIGHUP;
//! - [`s3`]: an S3 prefix, polled (`ListObjectsV2`; files fetched only
//!   when a key or an ETag changed);
//! - [`files`]: the rule files of one version of a prefix (keys, ETags,
//!   text), loaded as one set;
//! - [`cache`]: the last good set from S3, on local disk, for a restart
//!   while S3 is unreachable.

pub mod cache;
pub mod files;
pub mod s3;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::rules::source::SourceError;
use crate::rules::{load_paths, RuleSet};
use crate::telemetry::events::{RulesReloadRejected, RulesReloaded};

pub use source::{RulesSource, S3Source};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version is live.
    Changed { from: String, to: String },
    /// The files load to the version already live.
    Unchanged,
    /// The new files are invalid; the old version stays.
    Rejected { problems: usize },
}

/// Loads the rules at `path` and, if valid and different, makes them live.
pub fn reload(path: &Path, live: &watch::Sender<Arc<RuleSet>>) -> Reloaded {
    let source = path.display().to_string();
    match load_paths(&[path.to_path_buf()]) {
        Ok(set) => replace(&source, set, live),
        Err(problems) => reject(&problems, live),
    }
}

/// Makes a valid `set` the live one, unless it is the version already live.
pub fn replace(source: &str, set: RuleSet, live: &watch::Sender<Arc<RuleSet>>) -> Reloaded {
    let current = live.borrow().version().to_string();
    if set.version() == current {
        return Reloaded::Unchanged;
    }
    let to = set.version().to_string();
    RulesReloaded {
        source,
        from_version: &current,
        rules_version: &to,
        rules: set.rules().len(),
    }
    .emit();
    live.send_replace(Arc::new(set));
    Reloaded::Changed { from: current, to }
}

/// Reports an invalid set: the live one stays.
pub fn reject(problems: &[SourceError], live: &watch::Sender<Arc<RuleSet>>) -> Reloaded {
    let current = live.borrow().version().to_string();
    RulesReloadRejected {
        problems,
        rules_version: &current,
    }
    .emit();
    Reloaded::Rejected {
        problems: problems.len(),
    }
}

/// Watches `path` and reloads on changes and on SIGHUP, until `shutdown`.
pub async fn watch_rules(
    path: PathBuf,
    live: watch::Sender<Arc<RuleSet>>,
    shutdown: CancellationToken,
) {
    let (tx, mut changes) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    });
    // A single rule file is watched through its directory: editors replace
    // files by renaming, which ends a watch on the file itself.
    let (target, mode) = if path.is_dir() {
        (path.clone(), RecursiveMode::Recursive)
    } else {
        (
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            RecursiveMode::NonRecursive,
        )
    };
    let _watcher = match watcher.and_then(|mut w| w.watch(&target, mode).map(|()| w)) {
        Ok(w) => {
            info!(path = %target.display(), "Watching the rules for changes (SIGHUP also reloads).");
            Some(w)
        }
        Err(error) => {
            warn!(%error, path = %target.display(), "Cannot watch the rules; only SIGHUP will reload them.");
            None
        }
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<()>();
        tokio::select! {
            Some(()) = changes.recv() => {
                // Editors write in several steps: wait for the burst to end.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while changes.try_recv().is_ok() {}
            }
            () = sighup => info!("SIGHUP: reloading the rules."),
            () = shutdown.cancelled() => return,
        }
        reload(&path, &live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "[[rule]]\nname = \"NAME\"\nmatch.alarm_name = \"a\"\nactions = [{ type = \"notify\", topic_arn = \"t\" }]\n";

    #[test]
    fn good_edits_replace_bad_edits_keep_the_old_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(&file, RULE.replace("NAME", "one")).unwrap();
        let set = load_paths(&[dir.path().to_path_buf()]).unwrap();
        let (tx, rx) = watch::channel(Arc::new(set));
        assert_eq!(reload(dir.path(), &tx), Reloaded::Unchanged);

        std::fs::write(&file, RULE.replace("NAME", "two")).unwrap();
        assert!(matches!(reload(dir.path(), &tx), Reloaded::Changed { .. }));
        assert!(rx.borrow().get("two").is_some());

        std::fs::write(&file, "[[rule]]\nname = \"three\"\nbogus = 1\n").unwrap();
        assert!(
            matches!(reload(dir.path(), &tx), Reloaded::Rejected { problems } if problems >= 1)
        );
        assert!(
            rx.borrow().get("two").is_some(),
            "the old rules stay in force"
        );
    }
}
