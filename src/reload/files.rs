//! The rule files of one version of an `s3://` prefix: which objects
//! (keys and ETags), and their text once read. The poller (`s3`) makes
//! them, the cache (`cache`) keeps them, and both load them as one set.

use std::path::PathBuf;

use super::source::S3Source;
use crate::rules::source::SourceError;
use crate::rules::{load_sources, RuleSet};

/// The rule files of a prefix at one moment: `(key, ETag)`, sorted by key.
/// Two equal listings are the same files; a poll that lists what is live
/// (or what was last rejected) fetches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing(pub Vec<(String, String)>);

/// One rule file read from S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    pub key: String,
    /// The ETag of the version read (`GetObject`'s, which wins over the
    /// listing's if the object changed in between).
    pub etag: String,
    pub text: String,
}

/// The rule files of one listing, read.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub files: Vec<FetchedFile>,
    /// Objects that cannot be rule files (too large, not UTF-8), located.
    pub problems: Vec<SourceError>,
}

impl Fetched {
    /// The listing these files are: the next poll compares against it.
    pub fn listing(&self) -> Listing {
        Listing(
            self.files
                .iter()
                .map(|f| (f.key.clone(), f.etag.clone()))
                .collect(),
        )
    }

    /// Loads the files as one set, named `s3://bucket/key` (in errors and
    /// in the version hash, so every replica reading the same objects has
    /// the same version). No rule file at all is a problem too: an emptied
    /// prefix must not empty the live rules.
    pub fn load(&self, source: &S3Source) -> Result<RuleSet, Vec<SourceError>> {
        let mut problems = self.problems.clone();
        if self.files.is_empty() && problems.is_empty() {
            problems.push(SourceError {
                file: PathBuf::from(source.url()),
                line: 1,
                column: 1,
                message: format!("no rule files (*.toml) under {}", source.url()),
            });
        }
        let sources = self
            .files
            .iter()
            .map(|f| (source.object_path(&f.key), f.text.clone()))
            .collect();
        match load_sources(sources) {
            Ok(set) if problems.is_empty() => Ok(set.with_source(source.url())),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                problems.sort();
                Err(problems)
            }
        }
    }
}
