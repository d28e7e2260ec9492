//! The last good rule set read from S3, kept on local disk (`[rules]
//! cache`), so that a restart while S3 is unreachable starts with the rules
//! the fleet was running. Written after every set that loaded, atomically
//! (a temporary file, fsynced, renamed over the old one); read only at
//! start-up, and only for the same `s3://` source.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::{Fetched, FetchedFile, Listing};
use super::source::S3Source;
use crate::rules::RuleSet;

/// The cache file's format version; another is not read.
const FORMAT: u32 = 1;

/// The file on disk (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    /// The `s3://` prefix the set came from.
    source: String,
    /// The set's version when written: checked again on reading.
    version: String,
    written_at: DateTime<Utc>,
    files: Vec<CachedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedFile {
    key: String,
    etag: String,
    text: String,
}

/// Why the cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a reflex rules cache: {reason}")]
    Format { path: String, reason: String },
    #[error("{path} holds the rules of {cached}, not of {configured}")]
    OtherSource {
        path: String,
        cached: String,
        configured: String,
    },
    #[error("the rules in {path} no longer load ({problems} problem(s), first: {first})")]
    Invalid {
        path: String,
        problems: usize,
        first: String,
    },
}

/// Writes `fetched` (a set that loaded to `version`) to `path`.
pub fn write(
    path: &Path,
    source: &S3Source,
    fetched: &Fetched,
    version: &str,
) -> std::io::Result<()> {
    let file = CacheFile {
        format: FORMAT,
        source: source.url(),
        version: version.to_string(),
        written_at: Utc::now(),
        files: fetched
            .files
            .iter()
            .map(|f| CachedFile {
                key: f.key.clone(),
                etag: f.etag.clone(),
                text: f.text.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    // Beside the cache, so the rename is atomic (one file system); the
    // process id keeps two reflexes sharing a directory apart.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    Ok(())
}

/// Reads the cache at `path` for `source`: the set, loaded and checked
/// again, the listing it came from, and when it was written.
pub fn read(
    path: &Path,
    source: &S3Source,
) -> Result<(RuleSet, Listing, DateTime<Utc>), CacheError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| CacheError::Read {
        path: shown.clone(),
        source: e,
    })?;
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| CacheError::Format {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    if file.format != FORMAT {
        return Err(CacheError::Format {
            path: shown,
            reason: format!("format {} (this reflex reads {FORMAT})", file.format),
        });
    }
    if file.source != source.url() {
        return Err(CacheError::OtherSource {
            path: shown,
            cached: file.source,
            configured: source.url(),
        });
    }
    let fetched = Fetched {
        files: file
            .files
            .into_iter()
            .map(|f| FetchedFile {
                key: f.key,
                etag: f.etag,
                text: f.text,
            })
            .collect(),
        problems: Vec::new(),
    };
    let set = fetched
        .load(source)
        .map_err(|problems| CacheError::Invalid {
            path: shown.clone(),
            problems: problems.len(),
            first: problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
        })?;
    if set.version() != file.version {
        return Err(CacheError::Format {
            path: shown,
            reason: format!(
                "its files load to version {}, not the {} it was written with",
                set.version(),
                file.version
            ),
        });
    }
    Ok((set, fetched.listing(), file.written_at))
}
