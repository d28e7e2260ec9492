//! Where the rules come from: a local directory (or one file), or an S3
//! prefix. `[rules]` in `reflex.toml` (checked by `config`) builds one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How often an `s3://` source is polled, unless `[rules] poll_interval`
/// says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The largest rule file read from S3. A rule file is kilobytes; a bigger
/// object under the prefix is a mistake (a log, an archive), refused with
/// a located error rather than read into memory.
pub const MAX_OBJECT_BYTES: u64 = 4 * 1024 * 1024;

/// Where the rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// A directory (walked for `*.toml`) or one file: watched, and
    /// reloaded on SIGHUP.
    Local(PathBuf),
    /// Every `*.toml` object under an S3 prefix: polled.
    S3(S3Source),
}

impl RulesSource {
    /// A directory or file path, or an `s3://bucket/prefix/` URL (with the
    /// default poll interval, no cache and no rejection topic).
    pub fn parse(text: &str) -> Result<RulesSource, String> {
        if text.starts_with("s3://") {
            S3Source::parse(text).map(RulesSource::S3)
        } else if text.contains("://") {
            Err(format!(
                "rules source {text:?}: only a local path or an s3://bucket/prefix/ URL"
            ))
        } else if text.is_empty() {
            Err("the rules source is empty".to_string())
        } else {
            Ok(RulesSource::Local(PathBuf::from(text)))
        }
    }

    /// For logs and errors: the path, or the `s3://` URL.
    pub fn describe(&self) -> String {
        match self {
            RulesSource::Local(path) => path.display().to_string(),
            RulesSource::S3(s3) => s3.url(),
        }
    }
}

impl fmt::Display for RulesSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An S3 prefix of rule files, and how it is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Source {
    pub bucket: String,
    /// Empty (the whole bucket) or ending in `/`.
    pub prefix: String,
    pub poll_interval: Duration,
    /// Where the last good set is kept, for a restart while S3 is down.
    /// `None`: no cache, and reflex does not start without S3.
    pub cache: Option<PathBuf>,
    /// An SNS topic told about each rejected set (once per version).
    pub rejected_topic_arn: Option<String>,
}

impl S3Source {
    /// `s3://bucket/prefix/`. A prefix without a trailing `/` gets one, so
    /// that `s3://b/rules` does not also read `s3://b/rules-old/`.
    pub fn parse(url: &str) -> Result<S3Source, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!(
                "{url:?}: {bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' and '.')"
            ));
        }
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Source {
            bucket: bucket.to_string(),
            prefix,
            poll_interval: DEFAULT_POLL_INTERVAL,
            cache: None,
            rejected_topic_arn: None,
        })
    }

    /// `s3://bucket/prefix/`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// `s3://bucket/key`: how a rule file is named in errors, in the
    /// version hash and in the audit trail.
    pub fn object_path(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.bucket))
    }

    /// Whether `key` is a rule file: `*.toml`, and no path segment under
    /// the prefix hidden (`.`-prefixed), as for a local directory.
    pub fn is_rule_file(&self, key: &str) -> bool {
        let Some(relative) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        relative.ends_with(".toml")
            && relative
                .split('/')
                .all(|segment| !segment.is_empty() && !segment.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        let s3 = S3Source::parse("s3://my-bucket/reflex/rules").unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("my-bucket", "reflex/rules/")
        );
        assert_eq!(s3.url(), "s3://my-bucket/reflex/rules/");
        assert_eq!(
            s3.object_path("reflex/rules/web.toml"),
            PathBuf::from("s3://my-bucket/reflex/rules/web.toml")
        );
        assert_eq!(S3Source::parse("s3://b-1").unwrap().prefix, "");
        assert_eq!(S3Source::parse("s3://b-1/").unwrap().prefix, "");
        for bad in ["s3://", "s3://UPPER/x", "s3://ab/x", "http://b/x"] {
            assert!(S3Source::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RulesSource::parse("rules").unwrap(),
            RulesSource::Local(PathBuf::from("rules"))
        );
        assert!(matches!(
            RulesSource::parse("s3://bkt/p/"),
            Ok(RulesSource::S3(_))
        ));
        assert!(RulesSource::parse("https://example.com/rules").is_err());
    }

    #[test]
    fn which_keys_are_rule_files() {
        let s3 = S3Source::parse("s3://bkt/rules/").unwrap();
        assert!(s3.is_rule_file("rules/web.toml"));
        assert!(s3.is_rule_file("rules/team/db.toml"));
        assert!(!s3.is_rule_file("rules/README.md"));
        assert!(!s3.is_rule_file("rules/.web.toml.swp.toml"));
        assert!(!s3.is_rule_file("rules/.git/x.toml"));
        assert!(!s3.is_rule_file("other/web.toml"));
        assert!(!s3.is_rule_file("rules//web.toml"));
    }
}
