//! Rules from an S3 prefix. Every poll lists the prefix (`ListObjectsV2`);
//! only when the set of `*.toml` keys or one of their ETags changed does
//! reflex fetch them all (`GetObject`) and load them as one set, exactly
//! like a local reload: a valid set replaces the live one atomically, an
//! invalid one is reported once (logged with `s3://bucket/key:line:col`,
//! counted, optionally published to a topic) and the live set stays. S3
//! unreachable or access denied: the live set stays, the failed poll is
//! counted, and the next poll tries again.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cache;
use super::files::{Fetched, FetchedFile, Listing};
use super::source::{S3Source, MAX_OBJECT_BYTES};
use super::{reject, replace, Reloaded};
use crate::aws::{AwsError, Notifier, ObjectStore};
use crate::rules::source::SourceError;
use crate::rules::RuleSet;
use crate::telemetry::events::{
    RulesCacheNotWritten, RulesPollFailed, RulesPolled, RulesReloadRejected,
};

/// Lists the rule files under the prefix, sorted by key.
pub async fn list(
    objects: &dyn ObjectStore,
    source: &S3Source,
) -> Result<Vec<crate::aws::ObjectEntry>, AwsError> {
    let mut entries: Vec<_> = objects
        .list(&source.bucket, &source.prefix)
        .await?
        .into_iter()
        .filter(|e| source.is_rule_file(&e.key))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Reads every listed rule file. An object too large or not UTF-8 is a
/// located problem of the set; an S3 error fails the whole fetch (the
/// next poll tries again).
pub async fn fetch(
    objects: &dyn ObjectStore,
    source: &S3Source,
    entries: &[crate::aws::ObjectEntry],
) -> Result<Fetched, AwsError> {
    let mut fetched = Fetched::default();
    for entry in entries {
        let problem = |message: String| SourceError {
            file: source.object_path(&entry.key),
            line: 1,
            column: 1,
            message,
        };
        if entry.size > MAX_OBJECT_BYTES {
            fetched.problems.push(problem(format!(
                "{} bytes: larger than a rule file may be ({MAX_OBJECT_BYTES})",
                entry.size
            )));
            continue;
        }
        let body = objects.get(&source.bucket, &entry.key).await?;
        match String::from_utf8(body.bytes) {
            Ok(text) => fetched.files.push(FetchedFile {
                key: entry.key.clone(),
                etag: if body.etag.is_empty() {
                    entry.etag.clone()
                } else {
                    body.etag
                },
                text,
            }),
            Err(e) => fetched.problems.push(problem(format!(
                "file is not UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ))),
        }
    }
    Ok(fetched)
}

/// Why the rules could not be read from S3 at start-up.
#[derive(Debug)]
pub enum StartError {
    /// S3 did not answer (or refused): nothing to load.
    Unreachable(AwsError),
    /// S3 answered with a set that does not load.
    Invalid(Vec<SourceError>),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Unreachable(e) => write!(f, "{e}"),
            StartError::Invalid(problems) => {
                write!(
                    f,
                    "the rule set there is invalid ({} problem(s))",
                    problems.len()
                )
            }
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// The listing is the live set's, or the set last rejected: nothing fetched.
    NoChange,
    /// The files were fetched and loaded (or rejected).
    Reloaded(Reloaded),
    /// S3 did not answer; the live set stays.
    Failed,
}

/// Follows one `s3://` prefix.
pub struct S3Rules {
    objects: Arc<dyn ObjectStore>,
    source: S3Source,
    notifier: Option<Arc<dyn Notifier>>,
    /// The listing of the live set.
    live: Option<Listing>,
    /// The listing of the set last rejected: not fetched, logged or
    /// counted again until something changes.
    rejected: Option<Listing>,
}

impl S3Rules {
    /// `notifier` publishes rejections to `source.rejected_topic_arn`.
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        source: S3Source,
        notifier: Option<Arc<dyn Notifier>>,
    ) -> Self {
        S3Rules {
            objects,
            source,
            notifier,
            live: None,
            rejected: None,
        }
    }

    pub fn source(&self) -> &S3Source {
        &self.source
    }

    /// The set to start with: read from S3, and cached; or, when S3 gives
    /// no valid set, the cache (with the reason it was needed). With
    /// neither, the error says why S3 could not be used.
    pub async fn start(&mut self) -> Result<(RuleSet, Option<String>), StartError> {
        let fetched = match list(self.objects.as_ref(), &self.source).await {
            Ok(entries) => fetch(self.objects.as_ref(), &self.source, &entries).await,
            Err(e) => Err(e),
        };
        let error = match fetched {
            Ok(fetched) => match fetched.load(&self.source) {
                Ok(set) => {
                    RulesPolled.emit();
                    self.loaded(&fetched, &set);
                    return Ok((set, None));
                }
                Err(problems) => {
                    self.rejected = Some(fetched.listing());
                    StartError::Invalid(problems)
                }
            },
            Err(e) => StartError::Unreachable(e),
        };
        match &self.source.cache {
            Some(path) => match cache::read(path, &self.source) {
                Ok((set, listing, written_at)) => {
                    if let StartError::Invalid(problems) = &error {
                        RulesReloadRejected {
                            problems,
                            rules_version: set.version(),
                        }
                        .emit();
                        self.notify_rejected(problems, set.version()).await;
                    }
                    self.live = Some(listing);
                    Ok((
                        set,
                        Some(format!(
                            "{}: {error}; the cache was written at {written_at}",
                            self.source.url()
                        )),
                    ))
                }
                Err(cache_error) => {
                    tracing::warn!(error = %cache_error, "The rules cache cannot be used.");
                    Err(error)
                }
            },
            None => Err(error),
        }
    }

    /// Polls every `poll_interval` until `shutdown`.
    pub async fn follow(mut self, live: watch::Sender<Arc<RuleSet>>, shutdown: CancellationToken) {
        tracing::info!(
            source = %self.source.url(),
            interval_s = self.source.poll_interval.as_secs_f64(),
            "Polling the rules source for changes."
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.source.poll_interval) => {}
                () = shutdown.cancelled() => return,
            }
            self.poll(&live).await;
        }
    }

    /// One poll.
    pub async fn poll(&mut self, live: &watch::Sender<Arc<RuleSet>>) -> Polled {
        let failed = |error: &AwsError| {
            RulesPollFailed {
                source: &self.source.url(),
                error,
                rules_version: live.borrow().version(),
            }
            .emit();
            Polled::Failed
        };
        let entries = match list(self.objects.as_ref(), &self.source).await {
            Ok(entries) => entries,
            Err(e) => return failed(&e),
        };
        let listing = Listing(
            entries
                .iter()
                .map(|e| (e.key.clone(), e.etag.clone()))
                .collect(),
        );
        if self.live.as_ref() == Some(&listing) || self.rejected.as_ref() == Some(&listing) {
            RulesPolled.emit();
            return Polled::NoChange;
        }
        let fetched = match fetch(self.objects.as_ref(), &self.source, &entries).await {
            Ok(fetched) => fetched,
            Err(e) => return failed(&e),
        };
        RulesPolled.emit();
        let listing = fetched.listing();
        if self.rejected.as_ref() == Some(&listing) {
            return Polled::NoChange;
        }
        Polled::Reloaded(match fetched.load(&self.source) {
            Ok(set) => {
                self.loaded(&fetched, &set);
                replace(&self.source.url(), set, live)
            }
            Err(problems) => {
                self.rejected = Some(listing);
                let reloaded = reject(&problems, live);
                let live_version = live.borrow().version().to_string();
                self.notify_rejected(&problems, &live_version).await;
                reloaded
            }
        })
    }

    /// Remembers a set that loaded as the live listing, and caches it.
    fn loaded(&mut self, fetched: &Fetched, set: &RuleSet) {
        self.live = Some(fetched.listing());
        self.rejected = None;
        if let Some(path) = &self.source.cache {
            if let Err(error) = cache::write(path, &self.source, fetched, set.version()) {
                RulesCacheNotWritten {
                    cache: path,
                    error: &error,
                }
                .emit();
            }
        }
    }

    /// Publishes a rejection to the configured topic (best effort: a
    /// failure is logged; the rejection is logged and counted anyway).
    async fn notify_rejected(&self, problems: &[SourceError], live_version: &str) {
        let (Some(notifier), Some(topic)) = (&self.notifier, &self.source.rejected_topic_arn)
        else {
            return;
        };
        const SHOWN: usize = 50;
        let mut message = format!(
            "reflex rejected the rule set under {}: {} problem(s). Version {live_version} stays in force.\n\n",
            self.source.url(),
            problems.len()
        );
        for p in problems.iter().take(SHOWN) {
            message.push_str(&p.to_string());
            message.push('\n');
        }
        if problems.len() > SHOWN {
            message.push_str(&format!("... and {} more\n", problems.len() - SHOWN));
        }
        let subject = format!("reflex: rule set rejected ({})", self.source.url());
        if let Err(error) = notifier.publish(topic, &subject, &message).await {
            tracing::warn!(%error, topic, "Cannot publish the rule set rejection.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::aws::{ObjectBody, ObjectEntry};

    /// A bucket in memory: objects by key, an ETag per content, and a
    /// switch that makes every call fail as an unreachable S3 would.
    #[derive(Default)]
    struct Bucket {
        objects: Mutex<BTreeMap<String, Vec<u8>>>,
        down: AtomicBool,
        gets: AtomicUsize,
    }

    impl Bucket {
        fn put(&self, key: &str, text: &str) {
            self.objects
                .lock()
                .unwrap()
                .insert(key.to_string(), text.as_bytes().to_vec());
        }
        fn etag(bytes: &[u8]) -> String {
            use sha2::{Digest, Sha256};
            format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..8]))
        }
        fn check(&self, op: &'static str) -> Result<(), AwsError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(AwsError::transient("s3", op, "connection refused"));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl ObjectStore for Bucket {
        async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectEntry>, AwsError> {
            self.check("ListObjectsV2")?;
            assert_eq!(bucket, "bkt");
            Ok(self
                .objects
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| ObjectEntry {
                    key: k.clone(),
                    etag: Bucket::etag(v),
                    size: v.len() as u64,
                })
                .collect())
        }
        async fn get(&self, _bucket: &str, key: &str) -> Result<ObjectBody, AwsError> {
            self.check("GetObject")?;
            self.gets.fetch_add(1, Ordering::SeqCst);
            let bytes = self.objects.lock().unwrap().get(key).cloned();
            let bytes = bytes.ok_or_else(|| AwsError::permanent("s3", "GetObject", "NoSuchKey"))?;
            Ok(ObjectBody {
                etag: Bucket::etag(&bytes),
                bytes,
            })
        }
    }

    fn rule(name: &str, topic: &str) -> String {
        format!("[[rule]]\nname = \"{name}\"\nmatch.alarm_name = \"a\"\nactions = [{{ type = \"notify\", topic_arn = \"{topic}\" }}]\n")
    }

    fn source(cache: Option<PathBuf>) -> S3Source {
        S3Source {
            cache,
            ..S3Source::parse("s3://bkt/rules/").unwrap()
        }
    }

    #[tokio::test]
    async fn a_changed_object_is_fetched_and_an_unchanged_listing_is_not() {
        let bucket = Arc::new(Bucket::default());
        bucket.put("rules/web.toml", &rule("one", "t1"));
        bucket.put("rules/README.md", "not a rule file");
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("rules-cache.json");
        let mut s3 = S3Rules::new(bucket.clone(), source(Some(cache.clone())), None);
        let (set, from_cache) = s3.start().await.unwrap();
        assert_eq!(from_cache, None);
        assert_eq!(set.source(), Some("s3://bkt/rules/"));
        assert_eq!(
            bucket.gets.load(Ordering::SeqCst),
            1,
            "only the .toml is read"
        );
        let v1 = set.version().to_string();
        let (tx, rx) = watch::channel(Arc::new(set));

        assert_eq!(s3.poll(&tx).await, Polled::NoChange);
        assert_eq!(bucket.gets.load(Ordering::SeqCst), 1, "nothing fetched");

        bucket.put("rules/web.toml", &rule("two", "t2"));
        assert!(matches!(
            s3.poll(&tx).await,
            Polled::Reloaded(Reloaded::Changed { ref from, .. }) if *from == v1
        ));
        assert!(rx.borrow().get("two").is_some());
        let v2 = rx.borrow().version().to_string();

        // The cache holds version 2, and reads back to the same version.
        let (cached, _, _) = cache::read(&cache, s3.source()).unwrap();
        assert_eq!(cached.version(), v2);
    }

    #[tokio::test]
    async fn a_broken_set_keeps_the_live_one_and_is_reported_once() {
        let bucket = Arc::new(Bucket::default());
        bucket.put("rules/web.toml", &rule("one", "t1"));
        let mut s3 = S3Rules::new(bucket.clone(), source(None), None);
        let (set, _) = s3.start().await.unwrap();
        let v1 = set.version().to_string();
        let (tx, rx) = watch::channel(Arc::new(set));
        let failures = || crate::telemetry::metrics().rule_reload_failures.get();

        bucket.put("rules/db.toml", "[[rule]]\nname = \"db\"\nbogus = 1\n");
        let before = failures();
        let gets = bucket.gets.load(Ordering::SeqCst);
        assert!(matches!(
            s3.poll(&tx).await,
            Polled::Reloaded(Reloaded::Rejected { problems }) if problems >= 1
        ));
        assert_eq!(rx.borrow().version(), v1, "version 1 stays live");
        assert!(failures() > before, "the rejection is counted");
        // The same broken files again: not fetched, so not logged or
        // counted again (the counter is shared with other tests running
        // at once; NoChange is what says nothing was reported).
        assert_eq!(s3.poll(&tx).await, Polled::NoChange);
        assert_eq!(bucket.gets.load(Ordering::SeqCst), gets + 2);

        // Fixed: the next version takes over.
        bucket.put("rules/db.toml", &rule("db", "t3"));
        assert!(matches!(
            s3.poll(&tx).await,
            Polled::Reloaded(Reloaded::Changed { .. })
        ));
        assert!(rx.borrow().get("db").is_some());

        // An emptied prefix is a rejected set, not an empty rule set.
        bucket.objects.lock().unwrap().clear();
        assert!(matches!(
            s3.poll(&tx).await,
            Polled::Reloaded(Reloaded::Rejected { .. })
        ));
        assert!(rx.borrow().get("db").is_some());
    }

    /// A notifier that records what it publishes.
    #[derive(Default)]
    struct Published(Mutex<Vec<(String, String, String)>>);

    #[async_trait]
    impl Notifier for Published {
        async fn publish(
            &self,
            topic_arn: &str,
            subject: &str,
            message: &str,
        ) -> Result<Option<String>, AwsError> {
            self.0.lock().unwrap().push((
                topic_arn.to_string(),
                subject.to_string(),
                message.to_string(),
            ));
            Ok(Some("msg-1".into()))
        }
    }

    #[tokio::test]
    async fn a_rejected_set_is_published_to_the_topic_once() {
        let bucket = Arc::new(Bucket::default());
        bucket.put("rules/web.toml", &rule("one", "t1"));
        let published = Arc::new(Published::default());
        let topic = "arn:aws:sns:eu-west-1:123456789012:oncall";
        let source = S3Source {
            rejected_topic_arn: Some(topic.to_string()),
            ..source(None)
        };
        let mut s3 = S3Rules::new(bucket.clone(), source, Some(published.clone()));
        let (set, _) = s3.start().await.unwrap();
        let v1 = set.version().to_string();
        let (tx, _rx) = watch::channel(Arc::new(set));
        bucket.put("rules/web.toml", "[[rule]]\nname = \"x\"\nbogus = 1\n");
        s3.poll(&tx).await;
        s3.poll(&tx).await;
        let sent = published.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "once per rejected version: {sent:?}");
        let (to, subject, message) = &sent[0];
        assert_eq!(to, topic);
        assert!(subject.contains("s3://bkt/rules/"), "{subject}");
        assert!(
            message.contains(&format!("Version {v1} stays in force")),
            "{message}"
        );
        assert!(
            message.contains("s3://bkt/rules/web.toml:3:1: "),
            "{message}"
        );
    }

    #[tokio::test]
    async fn problems_name_the_s3_key_line_and_column() {
        let bucket = Arc::new(Bucket::default());
        bucket.put("rules/web.toml", "[[rule]]\nname = \"x\"\n\nbogus = 1\n");
        let mut s3 = S3Rules::new(bucket, source(None), None);
        let Err(StartError::Invalid(problems)) = s3.start().await else {
            panic!("an invalid set must not start");
        };
        let shown = problems[0].to_string();
        assert!(
            shown.starts_with("s3://bkt/rules/web.toml:4:1: "),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn s3_down_keeps_the_rules_and_a_restart_needs_the_cache() {
        let bucket = Arc::new(Bucket::default());
        bucket.put("rules/web.toml", &rule("one", "t1"));
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache.json");
        let mut s3 = S3Rules::new(bucket.clone(), source(Some(cache.clone())), None);
        let (set, _) = s3.start().await.unwrap();
        let v1 = set.version().to_string();
        let (tx, rx) = watch::channel(Arc::new(set));

        bucket.down.store(true, Ordering::SeqCst);
        let failed = crate::telemetry::metrics().rules_source_poll_failures.get();
        assert_eq!(s3.poll(&tx).await, Polled::Failed);
        assert_eq!(rx.borrow().version(), v1);
        assert!(crate::telemetry::metrics().rules_source_poll_failures.get() > failed);

        // A restart while S3 is down: from the cache, at the same version.
        let mut again = S3Rules::new(bucket.clone(), source(Some(cache.clone())), None);
        let (set, reason) = again.start().await.unwrap();
        assert_eq!(set.version(), v1);
        assert!(reason.unwrap().contains("connection refused"));
        // ... and without a cache, no start.
        let mut bare = S3Rules::new(bucket.clone(), source(None), None);
        assert!(matches!(
            bare.start().await,
            Err(StartError::Unreachable(_))
        ));
        // A cache of another source is not used.
        let other = S3Source {
            cache: Some(cache),
            ..S3Source::parse("s3://bkt/other/").unwrap()
        };
        let mut wrong = S3Rules::new(bucket.clone(), other, None);
        assert!(matches!(
            wrong.start().await,
            Err(StartError::Unreachable(_))
        ));

        // Back up, and unchanged: the restarted one fetches nothing.
        bucket.down.store(false, Ordering::SeqCst);
        let gets = bucket.gets.load(Ordering::SeqCst);
        let (tx2, _rx2) = watch::channel(Arc::new(set));
        assert_eq!(again.poll(&tx2).await, Polled::NoChange);
        assert_eq!(bucket.gets.load(Ordering::SeqCst), gets);
    }
}
